// /logging: lists the component loggers and changes their levels (all, one, or a `paths=` list).
#include <algorithm>
#include <optional>

#include "admin/handlers.h"
#include "skiff/common/logging.h"

namespace skiff::server::admin {

namespace {

constexpr std::string_view kLevelNames[] = {"trace", "debug", "info", "warning", "error", "critical", "off"};

std::string_view levelName(spdlog::level::level_enum level) {
  auto i = static_cast<size_t>(level);
  return i < std::size(kLevelNames) ? kLevelNames[i] : "unknown";
}

// Returns an error message, or nullopt once the change is applied. Nothing changes on error.
std::optional<std::string> changeLevels(const Query& query) {
  std::vector<std::pair<std::string, std::string>> params;
  for (const auto& p : query.params()) {
    // An HTML form sends `level=` and `paths=` even when unused.
    if ((p.first == "level" || p.first == "paths") && p.second.empty()) continue;
    params.push_back(p);
  }
  if (params.empty()) return std::nullopt;
  if (params.size() != 1) return "invalid number of parameters";
  const auto& [key, value] = params.front();

  spdlog::level::level_enum level;
  if (key == "level") {
    if (!log::parseLevel(value, &level)) return "unknown logger level";
    log::setAllLevels(level);
    return std::nullopt;
  }

  std::vector<std::pair<spdlog::logger*, spdlog::level::level_enum>> changes;
  auto add = [&](std::string_view name, std::string_view level_name) -> std::optional<std::string> {
    if (!log::parseLevel(level_name, &level)) return "unknown logger level";
    spdlog::logger* logger = log::find(name);
    if (logger == nullptr) return "unknown logger name";
    changes.emplace_back(logger, level);
    return std::nullopt;
  };
  if (key == "paths") {
    std::string_view rest = value;
    while (!rest.empty()) {
      size_t comma = rest.find(',');
      std::string_view pair = rest.substr(0, comma);
      rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
      if (pair.find_first_not_of(' ') == std::string_view::npos) continue;
      size_t colon = pair.find(':');
      if (colon == std::string_view::npos || colon == 0 || colon + 1 == pair.size()) {
        return "empty logger name or empty logger level";
      }
      if (auto err = add(pair.substr(0, colon), pair.substr(colon + 1))) return err;
    }
  } else if (auto err = add(key, value)) {
    return err;
  }
  for (auto& [logger, lvl] : changes) logger->set_level(lvl);
  return std::nullopt;
}

}  // namespace

Response handleLogging(const Query& query) {
  Response response = text(200, "");
  std::string& body = response.body;
  if (auto error = changeLevels(query)) {
    response.status = 400;
    body += "error: " + *error + "\n\n";
    body += "usage: /logging?<name>=<level> (change single level)\n";
    body += "usage: /logging?paths=name1:level1,name2:level2,... (change multiple levels)\n";
    body += "usage: /logging?level=<level> (change all levels)\n";
    body += "levels: ";
    for (std::string_view name : kLevelNames) {
      body += name;
      body += ' ';
    }
    body += "\n";
  }
  std::vector<spdlog::logger*> loggers = log::all();
  std::sort(loggers.begin(), loggers.end(),
            [](const spdlog::logger* a, const spdlog::logger* b) { return a->name() < b->name(); });
  body += "active loggers:\n";
  for (const spdlog::logger* logger : loggers) {
    body += "  " + logger->name() + ": " + std::string(levelName(logger->level())) + "\n";
  }
  body += "\n";
  return response;
}

}  // namespace skiff::server::admin
