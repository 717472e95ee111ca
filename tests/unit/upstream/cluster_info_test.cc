// ClusterInfo: defaults, option parsing and config validation.
#include "skiff/upstream/cluster_info.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace skiff::upstream {
namespace {

using test::clusterFromJson;

TEST(ClusterInfoTest, Defaults) {
  stats::Store store(1);
  ClusterInfo info(clusterFromJson(R"({"name": "web", "type": "STATIC"})"), store, false, "");
  EXPECT_EQ(info.name, "web");
  EXPECT_EQ(info.stat_name, "web");
  EXPECT_EQ(info.connect_timeout.count(), 5000);
  EXPECT_EQ(info.per_connection_buffer_limit, 1024u * 1024u);
  EXPECT_EQ(info.max_requests_per_connection, 0u);
  EXPECT_EQ(info.idle_timeout.count(), 3600000);
  EXPECT_EQ(info.lb_policy, LbPolicy::kRoundRobin);
  EXPECT_EQ(info.dns_refresh_rate.count(), 5000);
  EXPECT_EQ(info.dns_lookup_family, DnsLookupFamily::kAuto);
  EXPECT_FALSE(info.source_address.has_value());
  EXPECT_EQ(info.resources.connections().max(), 1024u);
  EXPECT_EQ(info.resources.pendingRequests().max(), 1024u);
  EXPECT_EQ(info.resources.requests().max(), 1024u);
  EXPECT_EQ(info.resources.retries().max(), 3u);
  EXPECT_EQ(info.resources_high.retries().max(), 3u);
  EXPECT_EQ(info.healthy_panic_threshold, 50u);
}

TEST(ClusterInfoTest, ParsesOptions) {
  stats::Store store(1);
  ClusterInfo info(clusterFromJson(R"({
    "name": "outbound|80||a:b", "alt_stat_name": "alt:name", "type": "STRICT_DNS",
    "connect_timeout": "0.25s", "lb_policy": "LEAST_REQUEST",
    "least_request_lb_config": {"choice_count": 3},
    "per_connection_buffer_limit_bytes": 32768,
    "dns_lookup_family": "V4_ONLY", "dns_refresh_rate": "2s", "respect_dns_ttl": true,
    "dns_failure_refresh_rate": {"base_interval": "0.5s", "max_interval": "10s"},
    "upstream_bind_config": {"source_address": {"address": "127.0.0.1", "port_value": 0}},
    "common_lb_config": {"healthy_panic_threshold": {"value": 0}},
    "circuit_breakers": {"thresholds": [
      {"max_connections": 10, "max_pending_requests": 20, "max_requests": 30, "max_retries": 4},
      {"priority": "HIGH", "max_retries": 7}]},
    "typed_extension_protocol_options": {
      "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "common_http_protocol_options": {"idle_timeout": "30s", "max_requests_per_connection": 100},
        "explicit_http_config": {"http_protocol_options": {}}}}
  })"),
                   store, true, "v7");
  EXPECT_EQ(info.observability_name, "alt:name");
  EXPECT_EQ(info.stat_name, "alt_name");
  EXPECT_EQ(info.connect_timeout.count(), 250);
  EXPECT_EQ(info.lb_policy, LbPolicy::kLeastRequest);
  EXPECT_EQ(info.least_request_choice_count, 3u);
  EXPECT_EQ(info.per_connection_buffer_limit, 32768u);
  EXPECT_EQ(info.dns_lookup_family, DnsLookupFamily::kV4Only);
  EXPECT_EQ(info.dns_refresh_rate.count(), 2000);
  EXPECT_EQ(info.dns_failure_refresh_rate.count(), 500);
  EXPECT_TRUE(info.respect_dns_ttl);
  ASSERT_TRUE(info.source_address.has_value());
  EXPECT_EQ(info.source_address->to_string(), "127.0.0.1");
  EXPECT_EQ(info.healthy_panic_threshold, 0u);
  EXPECT_EQ(info.resources.connections().max(), 10u);
  EXPECT_EQ(info.resources.pendingRequests().max(), 20u);
  EXPECT_EQ(info.resources.requests().max(), 30u);
  EXPECT_EQ(info.resources.retries().max(), 4u);
  EXPECT_EQ(info.resources_high.retries().max(), 7u);
  EXPECT_EQ(info.resources_high.connections().max(), 1024u);
  EXPECT_EQ(info.idle_timeout.count(), 30000);
  EXPECT_EQ(info.max_requests_per_connection, 100u);
  EXPECT_TRUE(info.added_via_api);
  EXPECT_EQ(info.versionInfo(), "v7");
  // Stats use the sanitized observability name.
  info.trafficStats().upstream_rq_total.inc();
  EXPECT_EQ(store.counter("cluster.alt_name.upstream_rq_total").value(), 1u);
}

TEST(ClusterInfoTest, UnimplementedLbPoliciesFallBackToRoundRobin) {
  stats::Store store(1);
  for (const char* policy : {"RING_HASH", "MAGLEV"}) {
    ClusterInfo info(clusterFromJson(std::string(R"({"name": "c", "lb_policy": ")") + policy + "\"}"), store,
                     false, "");
    EXPECT_EQ(info.lb_policy, LbPolicy::kRoundRobin) << policy;
  }
  ClusterInfo random(clusterFromJson(R"({"name": "c", "lb_policy": "RANDOM"})"), store, false, "");
  EXPECT_EQ(random.lb_policy, LbPolicy::kRandom);
}

void expectInvalid(const std::string& json, const std::string& fragment) {
  stats::Store store(1);
  try {
    ClusterInfo info(clusterFromJson(json), store, false, "");
    FAIL() << "accepted: " << json;
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(ClusterInfoTest, RejectsBadConfigNamingTheField) {
  expectInvalid(R"({"type": "STATIC"})", "Cluster.name");
  expectInvalid(R"({"name": "s", "type": "STATIC", "load_assignment": {"endpoints": [{"lb_endpoints": [
      {"endpoint": {"address": {"socket_address": {"address": "example.com", "port_value": 80}}}}]}]}})",
                "load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.address");
  expectInvalid(R"({"name": "l", "type": "LOGICAL_DNS", "load_assignment": {"endpoints": [{"lb_endpoints": [
      {"endpoint": {"address": {"socket_address": {"address": "a.test", "port_value": 80}}}},
      {"endpoint": {"address": {"socket_address": {"address": "b.test", "port_value": 80}}}}]}]}})",
                "LOGICAL_DNS");
  expectInvalid(R"({"name": "t", "connect_timeout": "0s"})", "connect_timeout");
  expectInvalid(R"({"name": "b", "upstream_bind_config": {"source_address": {"address": "nope"}}})",
                "upstream_bind_config.source_address");
  expectInvalid(
      R"({"name": "p", "lb_policy": "LEAST_REQUEST", "least_request_lb_config": {"choice_count": 1}})",
      "choice_count");
  expectInvalid(
      R"({"name": "o", "type": "ORIGINAL_DST", "load_assignment": {"endpoints": [{"lb_endpoints": []}]}})",
      "ORIGINAL_DST");
}

TEST(ClusterInfoTest, RejectedConfigCreatesNoStats) {
  stats::Store store(1);
  EXPECT_THROW(ClusterInfo(clusterFromJson(R"({"name": "bad", "connect_timeout": "-1s"})"), store, false, ""),
               std::invalid_argument);
  for (const auto& stat : store.snapshot()) EXPECT_EQ(stat.name.find("cluster.bad."), std::string::npos);
}

}  // namespace
}  // namespace skiff::upstream
