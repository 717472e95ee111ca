// istio.stats configuration parsing: metric overrides and the small expression subset Skiff evaluates.
#include "filters/istio/stats_config.h"

#include <google/protobuf/util/json_util.h>

#include <map>
#include <stdexcept>

namespace skiff::filters::istio {
namespace {

constexpr std::array<std::string_view, kMetricCount> kConfigNames = {
    "requests_total",       "request_duration_milliseconds", "request_bytes",
    "response_bytes",       "tcp_connections_opened_total",  "tcp_connections_closed_total",
    "tcp_sent_bytes_total", "tcp_received_bytes_total"};

// Parses the expressions Skiff understands; false for anything else.
bool parseExpression(std::string_view expr, ValueSource* out) {
  while (!expr.empty() && expr.front() == ' ') expr.remove_prefix(1);
  while (!expr.empty() && expr.back() == ' ') expr.remove_suffix(1);
  if (expr.size() >= 2 && (expr.front() == '\'' || expr.front() == '"') && expr.back() == expr.front()) {
    out->kind = ValueSource::Kind::kLiteral;
    out->literal = std::string(expr.substr(1, expr.size() - 2));
    return out->literal.find(expr.front()) == std::string::npos;
  }
  constexpr std::string_view kNodeMeta = "node.metadata[";
  if (expr.starts_with(kNodeMeta) && expr.back() == ']') {
    std::string_view key = expr.substr(kNodeMeta.size(), expr.size() - kNodeMeta.size() - 1);
    if (key.size() < 2 || (key.front() != '\'' && key.front() != '"') || key.back() != key.front())
      return false;
    key = key.substr(1, key.size() - 2);
    const auto& md = localNode().metadata.fields();
    auto it = md.find(std::string(key));
    out->kind = ValueSource::Kind::kLiteral;
    out->literal = it != md.end() && it->second.kind_case() == google::protobuf::Value::kStringValue
                       ? it->second.string_value()
                       : "unknown";
    return true;
  }
  if (expr == "request.host") {
    out->kind = ValueSource::Kind::kHost;
    return true;
  }
  std::string_view field;
  if (expr.starts_with("downstream_peer.")) {
    field = expr.substr(16);
    out->upstream_peer = false;
  } else if (expr.starts_with("upstream_peer.")) {
    field = expr.substr(14);
    out->upstream_peer = true;
  } else {
    return false;
  }
  if (field == "cluster_id") {
    out->kind = ValueSource::Kind::kPeerClusterId;
  } else if (field == "namespace") {
    out->kind = ValueSource::Kind::kPeerNamespace;
  } else if (field == "workload_name") {
    out->kind = ValueSource::Kind::kPeerWorkload;
  } else if (field == "labels['app']" || field == "labels[\"app\"]") {
    out->kind = ValueSource::Kind::kPeerApp;
  } else if (field == "labels['version']" || field == "labels[\"version\"]") {
    out->kind = ValueSource::Kind::kPeerVersion;
  } else {
    return false;
  }
  return true;
}

}  // namespace

std::string_view metricConfigName(Metric m) {
  return kConfigNames[m];
}

Reporter reporterFromStatPrefix(std::string_view stat_prefix) {
  if (stat_prefix.starts_with("http.")) stat_prefix.remove_prefix(5);
  return stat_prefix.starts_with("inbound") ? Reporter::kDestination : Reporter::kSource;
}

::stats::PluginConfig pluginConfigFromJson(std::string_view json) {
  ::stats::PluginConfig proto;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;  // the Wasm plugin's debug, stat_prefix, field_separator...
  std::string text(json);
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) return proto;
  auto status = google::protobuf::util::JsonStringToMessage(text, &proto, options);
  if (!status.ok()) {
    throw std::invalid_argument("istio.stats: configuration is not a stats.PluginConfig JSON: " +
                                std::string(status.message()));
  }
  return proto;
}

StatsConfig parseStatsConfig(const ::stats::PluginConfig& proto, Reporter default_reporter,
                             std::vector<std::string>* warnings) {
  StatsConfig c;
  c.reporter = proto.reporter() == ::stats::SERVER_GATEWAY ? Reporter::kWaypoint : default_reporter;
  c.disable_host_header_fallback = proto.disable_host_header_fallback();
  if (proto.has_tcp_reporting_duration()) {
    const auto& d = proto.tcp_reporting_duration();
    c.tcp_reporting_duration = std::chrono::milliseconds(d.seconds() * 1000 + d.nanos() / 1000000);
  }
  for (const auto& d : proto.definitions()) {
    warnings->push_back("definitions: custom metric '" + d.name() + "' is not supported; ignored");
  }
  // The metrics an override names: one, or all when the name is empty.
  auto targets = [&](const std::string& name, std::vector<Metric>* out) {
    out->clear();
    for (size_t m = 0; m < kMetricCount; ++m) {
      if (name.empty() || name == kConfigNames[m]) out->push_back(static_cast<Metric>(m));
    }
    if (out->empty()) warnings->push_back("metrics: '" + name + "' is not a standard metric; ignored");
  };
  std::vector<Metric> ms;
  for (int i = 0; i < proto.metrics_size(); ++i) {
    const auto& mc = proto.metrics(i);
    const std::string path = "metrics[" + std::to_string(i) + "]";
    targets(mc.name(), &ms);
    if (mc.drop()) {
      for (Metric m : ms) c.overrides[m].drop = true;
      continue;
    }
    for (const auto& tag : mc.tags_to_remove()) {
      const size_t label = labelIndex(tag);
      if (label == kLabelCount) {
        warnings->push_back(path + ".tags_to_remove: '" + tag + "' is not a standard tag; ignored");
        continue;
      }
      for (Metric m : ms) c.overrides[m].remove.push_back(label);
    }
    // Sorted, as Istio applies them.
    std::map<std::string, std::string> dims(mc.dimensions().begin(), mc.dimensions().end());
    for (const auto& [tag, expr] : dims) {
      const size_t label = labelIndex(tag);
      if (label == kLabelCount) {
        warnings->push_back(path + ".dimensions: adding tag '" + tag + "' is not supported; ignored");
        continue;
      }
      ValueSource source;
      if (!parseExpression(expr, &source)) {
        warnings->push_back(path + ".dimensions['" + tag + "']: expression '" + expr +
                            "' is not supported; the standard value is kept");
        continue;
      }
      for (Metric m : ms) c.overrides[m].dimensions.emplace_back(label, source);
    }
    if (!mc.match().empty()) warnings->push_back(path + ".match: not implemented (nor in Istio); ignored");
  }
  for (const auto& o : c.overrides) c.has_overrides = c.has_overrides || o.active();
  return c;
}

}  // namespace skiff::filters::istio
