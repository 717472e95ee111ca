#pragma once
// The skiff-certs command line, callable from tests: runCli({"workload", "--ca-dir", ...}, out, err).
#include <chrono>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace skiff::certs {

inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;
inline constexpr int kExitUsage = 2;

// Runs one skiff-certs command (args exclude the program name); returns the process exit code.
int runCli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

std::string usage();

// "90s", "30m", "24h", "7d", "1h30m"; a bare number is seconds. nullopt when malformed.
std::optional<std::chrono::seconds> parseDuration(const std::string& text);

}  // namespace skiff::certs
