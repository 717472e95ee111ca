#pragma once

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace skiff::config::testing {

// ../shared/fixtures next to the repository (SKIFF_SOURCE_DIR is the repo root); empty if absent.
inline std::filesystem::path fixturesDir() {
  const char* env = std::getenv("SKIFF_SOURCE_DIR");
  std::filesystem::path root = env != nullptr ? env : SKIFF_SOURCE_DIR;
  std::filesystem::path dir = root / ".." / "shared" / "fixtures";
  return std::filesystem::is_directory(dir) ? dir : std::filesystem::path();
}

inline std::string readFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

}  // namespace skiff::config::testing
