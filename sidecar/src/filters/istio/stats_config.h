// istio.stats configuration: stats.PluginConfig (native form) or the Wasm null-VM plugin's JSON, reduced to
// what Skiff applies per request.
#pragma once

#include <array>
#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "filters/istio/labels.h"
#include "filters/istio/plugin_config.pb.h"

namespace skiff::filters::istio {

// The standard metrics, HTTP first.
enum Metric : size_t {
  kRequestsTotal,
  kRequestDuration,
  kRequestBytes,
  kResponseBytes,
  kTcpConnectionsOpened,
  kTcpConnectionsClosed,
  kTcpSentBytes,
  kTcpReceivedBytes,
  kMetricCount,
};
// Istio's config name of a metric ("requests_total"), without the "istio_" prefix.
std::string_view metricConfigName(Metric m);

// A label value a `dimensions` expression gives. Only the expression shapes Istio's own configs use are
// understood: string literals, node.metadata['KEY'], and (downstream|upstream)_peer.<field>.
struct ValueSource {
  enum class Kind { kLiteral, kPeerClusterId, kPeerNamespace, kPeerWorkload, kPeerApp, kPeerVersion, kHost };
  Kind kind = Kind::kLiteral;
  std::string literal;
  bool upstream_peer = false;  // upstream_peer.* (outbound) rather than downstream_peer.* (inbound)
};

struct MetricOverride {
  bool drop = false;
  std::vector<size_t> remove;                              // labels emptied (absent in Prometheus)
  std::vector<std::pair<size_t, ValueSource>> dimensions;  // standard labels given a new value
  bool active() const { return drop || !remove.empty() || !dimensions.empty(); }
};

struct StatsConfig {
  Reporter reporter = Reporter::kSource;
  bool disable_host_header_fallback = false;
  std::chrono::milliseconds tcp_reporting_duration{5000};  // Istio's native default
  std::array<MetricOverride, kMetricCount> overrides;
  bool has_overrides = false;
};

// `default_reporter` is what the listener direction says (the filter has no reporter of its own unless
// SERVER_GATEWAY). Unsupported parts (custom definitions, new tags, unknown expressions) are skipped as
// Istio skips what it cannot parse, each with a line in `warnings`.
StatsConfig parseStatsConfig(const ::stats::PluginConfig& proto, Reporter default_reporter,
                             std::vector<std::string>* warnings);

// The Wasm null-VM form's configuration: a JSON PluginConfig. Throws std::invalid_argument when it is not
// JSON.
::stats::PluginConfig pluginConfigFromJson(std::string_view json);

// A listener's direction from its HCM stat prefix ("http.inbound_0.0.0.0_9080." → destination): istiod names
// inbound HCMs "inbound_*" and outbound ones "outbound_*".
Reporter reporterFromStatPrefix(std::string_view stat_prefix);

}  // namespace skiff::filters::istio
