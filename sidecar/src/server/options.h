// Command-line options, named as Envoy's so existing scripts and manifests carry over.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace skiff::server {

struct Options {
  enum class Mode { kServe, kValidate };
  std::string config_path;
  std::string config_yaml;
  std::string log_level = "info";
  std::string component_log_level;  // "upstream:debug,connection:trace"
  uint32_t concurrency = 0;         // 0 = number of cores
  Mode mode = Mode::kServe;
  std::string service_node;
  std::string service_cluster;
  std::string service_zone;
  uint32_t drain_time_s = 600;
  uint32_t parent_shutdown_time_s = 900;
  std::string drain_strategy = "gradual";
  bool show_version = false;
  std::string envoy_filters;  // --envoy-filters: EnvoyFilter files/directories, comma-separated
  std::string command_line;   // as given, for /server_info
};

// Parses argv; returns an error message (empty on success). --help prints usage and exits 0.
std::string parseOptions(int argc, char** argv, Options* out);
std::string usage();

}  // namespace skiff::server
