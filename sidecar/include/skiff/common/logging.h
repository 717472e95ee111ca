// Per-component loggers (spdlog), named as Envoy's components so /logging?<component>=<level> works.
#pragma once

#include <spdlog/spdlog.h>

#include <string>
#include <string_view>
#include <vector>

namespace skiff::log {

// Components with their own logger; the names are Envoy's where Envoy has the same component.
enum class Component {
  kMain,
  kConfig,
  kConnection,
  kHttp,
  kRouter,
  kUpstream,
  kPool,
  kDns,
  kAdmin,
  kFilter,
  kWasm,
  kLua,
  kXds,
  kCount
};

// Creates the loggers once (stderr sink, Envoy-like pattern). Safe to call more than once.
void init(spdlog::level::level_enum level = spdlog::level::info);
spdlog::logger& get(Component c);
// Component by Envoy's logger name ("http", "router", "upstream", ...); nullptr when unknown.
spdlog::logger* find(std::string_view name);
std::vector<spdlog::logger*> all();
// "trace", "debug", "info", "warning"/"warn", "error", "critical", "off".
bool parseLevel(std::string_view name, spdlog::level::level_enum* out);
void setAllLevels(spdlog::level::level_enum level);

}  // namespace skiff::log

// SKIFF_LOG(kUpstream, debug, "connect to {} failed", address)
#define SKIFF_LOG(component, lvl, ...)                                           \
  do {                                                                           \
    auto& skiff_logger_ = ::skiff::log::get(::skiff::log::Component::component); \
    if (skiff_logger_.should_log(spdlog::level::lvl)) {                          \
      skiff_logger_.log(spdlog::level::lvl, __VA_ARGS__);                        \
    }                                                                            \
  } while (0)
