// Component loggers: one spdlog logger per component sharing one stderr sink.
#include "skiff/common/logging.h"

#include <spdlog/sinks/stdout_sinks.h>

#include <array>
#include <mutex>

namespace skiff::log {
namespace {

constexpr std::array<const char*, static_cast<size_t>(Component::kCount)> kNames = {
    "main", "config", "connection", "http", "router", "upstream", "pool",
    "dns",  "admin",  "filter",     "wasm", "lua",    "xds"};

std::array<std::shared_ptr<spdlog::logger>, static_cast<size_t>(Component::kCount)> g_loggers;
std::once_flag g_once;

void create(spdlog::level::level_enum level) {
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  for (size_t i = 0; i < kNames.size(); ++i) {
    auto logger = std::make_shared<spdlog::logger>(kNames[i], sink);
    // Envoy's default shape: [time][thread][level][component] message
    logger->set_pattern("[%Y-%m-%d %H:%M:%S.%e][%t][%l][%n] %v");
    logger->set_level(level);
    logger->flush_on(spdlog::level::warn);
    g_loggers[i] = std::move(logger);
  }
}

}  // namespace

void init(spdlog::level::level_enum level) {
  bool created = false;
  std::call_once(g_once, [&] {
    create(level);
    created = true;
  });
  if (!created) setAllLevels(level);
}

spdlog::logger& get(Component c) {
  std::call_once(g_once, [] { create(spdlog::level::info); });
  return *g_loggers[static_cast<size_t>(c)];
}

spdlog::logger* find(std::string_view name) {
  for (size_t i = 0; i < kNames.size(); ++i) {
    if (name == kNames[i]) return &get(static_cast<Component>(i));
  }
  return nullptr;
}

std::vector<spdlog::logger*> all() {
  std::vector<spdlog::logger*> out;
  for (size_t i = 0; i < kNames.size(); ++i) out.push_back(&get(static_cast<Component>(i)));
  return out;
}

bool parseLevel(std::string_view name, spdlog::level::level_enum* out) {
  static const std::pair<std::string_view, spdlog::level::level_enum> kLevels[] = {
      {"trace", spdlog::level::trace},       {"debug", spdlog::level::debug}, {"info", spdlog::level::info},
      {"warning", spdlog::level::warn},      {"warn", spdlog::level::warn},   {"error", spdlog::level::err},
      {"critical", spdlog::level::critical}, {"off", spdlog::level::off}};
  for (const auto& [n, l] : kLevels) {
    if (n == name) {
      *out = l;
      return true;
    }
  }
  return false;
}

void setAllLevels(spdlog::level::level_enum level) {
  for (auto* l : all()) l->set_level(level);
}

}  // namespace skiff::log
