// /stats and /stats/prometheus: filtering (regex, used-only, type) and the choice of renderer.
#include <re2/re2.h>

#include <optional>

#include "admin/handlers.h"
#include "skiff/stats/stats.h"

namespace skiff::server::admin {

namespace {
// Envoy's ?type= values; false for anything else. "All" (or empty) leaves *out unset.
bool parseType(std::string_view type, std::optional<stats::StatType>* out) {
  if (type.empty() || type == "All") return true;
  if (type == "Counters") {
    *out = stats::StatType::kCounter;
  } else if (type == "Gauges") {
    *out = stats::StatType::kGauge;
  } else if (type == "Histograms") {
    *out = stats::StatType::kHistogram;
  } else if (type == "TextReadouts") {
    *out = stats::StatType::kTextReadout;
  } else {
    return false;
  }
  return true;
}
}  // namespace

Response handleStats(stats::Store& store, const Query& query, bool prometheus_path) {
  std::string format = prometheus_path ? "prometheus" : "text";
  if (const std::string* f = query.get("format"); f != nullptr && !prometheus_path) format = *f;
  if (format != "text" && format != "json" && format != "prometheus" && format != "html") {
    return text(400, "usage: /stats?format=(json|prometheus|text)\n");
  }

  std::optional<stats::StatType> type;
  if (const std::string* t = query.get("type"); t != nullptr) {
    if (!parseType(*t, &type)) return text(400, "invalid &type= param: " + *t + "\n");
  }

  std::unique_ptr<re2::RE2> regex;
  if (const std::string* f = query.get("filter"); f != nullptr && !f->empty()) {
    re2::RE2::Options options;
    options.set_log_errors(false);
    regex = std::make_unique<re2::RE2>(*f, options);
    if (!regex->ok()) return text(400, "Invalid re2 regex\n");
  }
  const bool used_only = query.has("usedonly");

  std::vector<stats::StatValue> snapshot =
      store.snapshot(regex ? std::function<bool(std::string_view)>(
                                 [&](std::string_view name) { return re2::RE2::PartialMatch(name, *regex); })
                           : nullptr);
  std::erase_if(snapshot, [&](const stats::StatValue& s) {
    return (used_only && !s.used) || (type && s.type != *type);
  });

  if (format == "json") return json(200, stats::renderJson(snapshot));
  if (format == "prometheus") return text(200, stats::renderPrometheus(snapshot));
  return text(200, stats::renderText(snapshot));
}

}  // namespace skiff::server::admin
