// skiff: the sidecar proxy's entry point.
#include <csignal>
#include <cstdio>
#include <exception>
#include <iostream>

#include "server/options.h"
#include "server/server.h"
#include "skiff/common/logging.h"
#include "skiff/filters/http_filter_registry.h"

int main(int argc, char** argv) {
  // Every socket write already uses MSG_NOSIGNAL; this guards any future write(2) to a reset peer, whose
  // SIGPIPE would otherwise end the proxy silently.
  std::signal(SIGPIPE, SIG_IGN);
  using skiff::server::Options;
  Options options;
  const std::string error = skiff::server::parseOptions(argc, argv, &options);
  if (error == "help") {
    std::cout << skiff::server::usage();
    return 0;
  }
  if (options.show_version) {
    std::cout << "skiff version 0.1.0 (Envoy v3 API compatible)\n";
    return 0;
  }
  if (!error.empty()) {
    std::cerr << "skiff: " << error << "\n";
    return 1;
  }

  spdlog::level::level_enum level;
  if (!skiff::log::parseLevel(options.log_level, &level)) {
    std::cerr << "skiff: --log-level: unknown level '" << options.log_level << "'\n";
    return 1;
  }
  skiff::log::init(level);
  // --component-log-level upstream:debug,connection:trace
  std::string_view rest = options.component_log_level;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    const auto colon = item.find(':');
    spdlog::level::level_enum component_level;
    auto* logger = colon == std::string_view::npos ? nullptr : skiff::log::find(item.substr(0, colon));
    if (logger == nullptr || !skiff::log::parseLevel(item.substr(colon + 1), &component_level)) {
      std::cerr << "skiff: --component-log-level: bad entry '" << item << "'\n";
      return 1;
    }
    logger->set_level(component_level);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
  }

  skiff::filters::registerAllHttpFilters();
  const std::string config_name = options.config_path.empty() ? "--config-yaml" : options.config_path;
  try {
    auto bootstrap = skiff::server::loadConfig(options);
    if (options.mode == Options::Mode::kValidate) {
      skiff::server::validateConfig(options, bootstrap);
      std::cout << "configuration '" << config_name << "' OK\n";
      return 0;
    }
    skiff::server::Server server(std::move(options), std::move(bootstrap));
    return server.run();
  } catch (const std::exception& e) {
    std::cerr << "skiff: error initializing configuration '" << config_name << "': " << e.what() << "\n";
    return 1;
  }
}
