// Envoy-compatible command-line parsing.
#include "server/options.h"

#include <charconv>
#include <string_view>
#include <thread>

namespace skiff::server {

std::string usage() {
  return "Usage: skiff [options]\n"
         "  -c, --config-path <file>      Envoy v3 bootstrap (YAML or JSON)\n"
         "      --config-yaml <yaml>      bootstrap YAML, merged over --config-path\n"
         "  -l, --log-level <level>       trace|debug|info|warning|error|critical|off (default info)\n"
         "      --component-log-level <c:l,...>  per-component levels, e.g. upstream:debug,connection:trace\n"
         "      --concurrency <n>         worker threads (default: number of cores)\n"
         "      --mode serve|validate     validate: check the config and exit\n"
         "      --service-node <id>       node id\n"
         "      --service-cluster <name>  node cluster\n"
         "      --service-zone <zone>     node locality zone\n"
         "      --drain-time-s <s>        how long in-flight requests may take after SIGTERM (default 600)\n"
         "      --parent-shutdown-time-s <s>, --drain-strategy <s>, --base-id <n>  accepted for "
         "compatibility\n"
         "      --envoy-filters <paths>   Istio EnvoyFilter manifests (files or directories, "
         "comma-separated);\n"
         "                                re-read on change (bootstrap: runtime key skiff.envoy_filters)\n"
         "      --version                 print the version\n";
}

std::string parseOptions(int argc, char** argv, Options* out) {
  for (int i = 0; i < argc; ++i) {
    if (i) out->command_line += ' ';
    out->command_line += argv[i];
  }
  auto parseUint = [](std::string_view s, uint32_t* v) {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
    return ec == std::errc() && p == s.data() + s.size();
  };
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    std::string_view value;
    bool has_inline = false;
    if (arg.rfind("--", 0) == 0) {
      if (auto eq = arg.find('='); eq != std::string_view::npos) {
        value = arg.substr(eq + 1);
        arg = arg.substr(0, eq);
        has_inline = true;
      }
    }
    auto next = [&](std::string_view name, std::string* error) -> std::optional<std::string_view> {
      if (has_inline) return value;
      if (i + 1 >= argc) {
        *error = "missing value for " + std::string(name);
        return std::nullopt;
      }
      return std::string_view(argv[++i]);
    };
    std::string error;
    if (arg == "-h" || arg == "--help") {
      return "help";
    } else if (arg == "--version") {
      out->show_version = true;
    } else if (arg == "-c" || arg == "--config-path") {
      auto v = next(arg, &error);
      if (!v) return error;
      out->config_path = *v;
    } else if (arg == "--config-yaml") {
      auto v = next(arg, &error);
      if (!v) return error;
      out->config_yaml = *v;
    } else if (arg == "-l" || arg == "--log-level") {
      auto v = next(arg, &error);
      if (!v) return error;
      out->log_level = *v;
    } else if (arg == "--component-log-level") {
      auto v = next(arg, &error);
      if (!v) return error;
      out->component_log_level = *v;
    } else if (arg == "--concurrency") {
      auto v = next(arg, &error);
      if (!v) return error;
      if (!parseUint(*v, &out->concurrency)) return "--concurrency: not a number: " + std::string(*v);
    } else if (arg == "--mode") {
      auto v = next(arg, &error);
      if (!v) return error;
      if (*v == "serve") {
        out->mode = Options::Mode::kServe;
      } else if (*v == "validate") {
        out->mode = Options::Mode::kValidate;
      } else {
        return "--mode: expected serve or validate, got " + std::string(*v);
      }
    } else if (arg == "--service-node") {
      auto v = next(arg, &error);
      if (!v) return error;
      out->service_node = *v;
    } else if (arg == "--service-cluster") {
      auto v = next(arg, &error);
      if (!v) return error;
      out->service_cluster = *v;
    } else if (arg == "--service-zone") {
      auto v = next(arg, &error);
      if (!v) return error;
      out->service_zone = *v;
    } else if (arg == "--envoy-filters") {
      auto v = next(arg, &error);
      if (!v) return error;
      out->envoy_filters = *v;
    } else if (arg == "--drain-time-s") {
      auto v = next(arg, &error);
      if (!v) return error;
      if (!parseUint(*v, &out->drain_time_s)) return "--drain-time-s: not a number: " + std::string(*v);
    } else if (arg == "--parent-shutdown-time-s") {
      auto v = next(arg, &error);
      if (!v) return error;
      if (!parseUint(*v, &out->parent_shutdown_time_s)) return "--parent-shutdown-time-s: not a number";
    } else if (arg == "--drain-strategy") {
      auto v = next(arg, &error);
      if (!v) return error;
      out->drain_strategy = *v;
    } else if (arg == "--base-id" || arg == "--restart-epoch" || arg == "--local-address-ip-version" ||
               arg == "--log-format" || arg == "--log-path") {
      auto v = next(arg, &error);  // accepted for compatibility
      if (!v) return error;
    } else if (arg == "--disable-hot-restart" || arg == "--use-dynamic-base-id" ||
               arg == "--allow-unknown-static-fields" || arg == "--reject-unknown-dynamic-fields" ||
               arg == "--ignore-unknown-dynamic-fields") {
      // accepted for compatibility
    } else {
      return "unknown option: " + std::string(arg) + "\n" + usage();
    }
  }
  if (out->concurrency == 0) out->concurrency = std::max(1u, std::thread::hardware_concurrency());
  if (!out->show_version && out->config_path.empty() && out->config_yaml.empty()) {
    return "one of --config-path or --config-yaml is required\n" + usage();
  }
  return {};
}

}  // namespace skiff::server
