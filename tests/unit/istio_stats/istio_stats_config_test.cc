// stats.PluginConfig as istiod writes it (native and Wasm null-VM JSON): reporter, host fallback,
// overrides, and what is skipped with a warning.
#include <gtest/gtest.h>

#include "filters/istio/stats_config.h"

namespace skiff::filters::istio {
namespace {

TEST(IstioStatsConfig, DefaultsFollowTheListenerDirection) {
  std::vector<std::string> warnings;
  auto c = parseStatsConfig({}, Reporter::kDestination, &warnings);
  EXPECT_EQ(c.reporter, Reporter::kDestination);
  EXPECT_FALSE(c.disable_host_header_fallback);
  EXPECT_EQ(c.tcp_reporting_duration.count(), 5000);
  EXPECT_FALSE(c.has_overrides);
  EXPECT_TRUE(warnings.empty());
  EXPECT_EQ(reporterFromStatPrefix("http.inbound_0.0.0.0_9080."), Reporter::kDestination);
  EXPECT_EQ(reporterFromStatPrefix("http.outbound_0.0.0.0_80."), Reporter::kSource);
  EXPECT_EQ(reporterFromStatPrefix("http.ingress_http."), Reporter::kSource);
}

TEST(IstioStatsConfig, NativeFieldsFromJson) {
  auto proto = pluginConfigFromJson(
      R"({"disable_host_header_fallback": true, "reporter": "SERVER_GATEWAY", "tcp_reporting_duration": "15s"})");
  std::vector<std::string> warnings;
  auto c = parseStatsConfig(proto, Reporter::kSource, &warnings);
  EXPECT_TRUE(c.disable_host_header_fallback);
  EXPECT_EQ(c.reporter, Reporter::kWaypoint);
  EXPECT_EQ(c.tcp_reporting_duration.count(), 15000);
}

TEST(IstioStatsConfig, WasmPluginJsonOfIstio110) {
  // Verbatim shape of the 1.10 fixture's stats_inbound configuration.
  auto proto = pluginConfigFromJson(R"({
    "debug": "false", "stat_prefix": "istio",
    "metrics": [{"dimensions": {"destination_cluster": "node.metadata['CLUSTER_ID']",
                                "source_cluster": "downstream_peer.cluster_id"}}]})");
  std::vector<std::string> warnings;
  auto c = parseStatsConfig(proto, Reporter::kDestination, &warnings);
  EXPECT_TRUE(warnings.empty()) << warnings[0];
  ASSERT_TRUE(c.has_overrides);
  for (size_t m = 0; m < kMetricCount; ++m) {
    ASSERT_EQ(c.overrides[m].dimensions.size(), 2u);
    EXPECT_EQ(c.overrides[m].dimensions[0].first, kDestinationCluster);  // sorted by tag
    EXPECT_EQ(c.overrides[m].dimensions[0].second.kind, ValueSource::Kind::kLiteral);
    EXPECT_EQ(c.overrides[m].dimensions[1].first, kSourceCluster);
    EXPECT_EQ(c.overrides[m].dimensions[1].second.kind, ValueSource::Kind::kPeerClusterId);
    EXPECT_FALSE(c.overrides[m].dimensions[1].second.upstream_peer);
  }
  EXPECT_THROW(pluginConfigFromJson("{not json"), std::invalid_argument);
  EXPECT_NO_THROW(pluginConfigFromJson("{}\n"));
  EXPECT_NO_THROW(pluginConfigFromJson(""));
}

TEST(IstioStatsConfig, DropRemoveAndWhatIsSkipped) {
  auto proto = pluginConfigFromJson(R"({
    "metrics": [
      {"name": "request_bytes", "drop": true},
      {"name": "requests_total", "tags_to_remove": ["source_principal", "no_such_tag"],
       "dimensions": {"request_host": "request.host", "destination_version": "request.headers['x']",
                      "source_app": "'fixed'"}},
      {"name": "no_such_metric", "drop": true}],
    "definitions": [{"name": "custom_count", "value": "1"}]})");
  std::vector<std::string> warnings;
  auto c = parseStatsConfig(proto, Reporter::kSource, &warnings);
  EXPECT_TRUE(c.overrides[kRequestBytes].drop);
  EXPECT_FALSE(c.overrides[kResponseBytes].active());
  const auto& rt = c.overrides[kRequestsTotal];
  ASSERT_EQ(rt.remove.size(), 1u);
  EXPECT_EQ(rt.remove[0], kSourcePrincipal);
  ASSERT_EQ(rt.dimensions.size(), 1u);  // only the literal is understood
  EXPECT_EQ(rt.dimensions[0].first, kSourceApp);
  EXPECT_EQ(rt.dimensions[0].second.literal, "fixed");
  // Each skipped piece is named: unknown tag, new tag, unsupported expression, metric, definition.
  std::string all;
  for (const auto& w : warnings) all += w + "\n";
  EXPECT_NE(all.find("no_such_tag"), std::string::npos) << all;
  EXPECT_NE(all.find("request_host"), std::string::npos) << all;
  EXPECT_NE(all.find("request.headers['x']"), std::string::npos) << all;
  EXPECT_NE(all.find("no_such_metric"), std::string::npos) << all;
  EXPECT_NE(all.find("custom_count"), std::string::npos) << all;
}

}  // namespace
}  // namespace skiff::filters::istio
