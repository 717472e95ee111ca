// ClusterInfo's memory layout: traffic stats and circuit breakers made on first use, names listed from the
// start; the config kept as bytes; hosts' optional strings.
#include <gtest/gtest.h>

#include <set>
#include <thread>
#include <vector>

#include "skiff/upstream/cluster_info.h"
#include "skiff/upstream/host.h"
#include "test_util.h"

namespace skiff::upstream {
namespace {

using test::clusterFromJson;

bool listed(const stats::Store& store, const std::string& name) {
  for (const auto& s : store.snapshot()) {
    if (s.name == name) return true;
  }
  return false;
}

TEST(ClusterLayoutTest, TrafficStatsAreListedBeforeFirstUseAndMadeOnce) {
  stats::Store store(9);  // main + one slab per thread below (a slab has one writer)
  ClusterInfo info(clusterFromJson(R"({"name": "web", "type": "STATIC"})"), store, false, "");
  // /stats shows every name of a cluster that never carried traffic, as before.
  EXPECT_TRUE(listed(store, "cluster.web.upstream_rq_total"));
  EXPECT_TRUE(listed(store, "cluster.web.upstream_cx_connect_ms"));
  EXPECT_TRUE(listed(store, "cluster.web.circuit_breakers.default.cx_open"));
  EXPECT_TRUE(listed(store, "cluster.web.circuit_breakers.high.rq_retry_open"));
  EXPECT_TRUE(listed(store, "cluster.web.membership_total"));

  // Workers racing for the first use all get the same set.
  std::vector<const ClusterTrafficStats*> seen(8);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < seen.size(); ++i) {
    threads.emplace_back([&, i] {
      stats::setThreadSlab(static_cast<uint32_t>(i + 1));
      seen[i] = &info.trafficStats();
      info.trafficStats().upstream_rq_total.inc();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(std::set<const ClusterTrafficStats*>(seen.begin(), seen.end()).size(), 1u);
  EXPECT_EQ(store.counter("cluster.web.upstream_rq_total").value(), 8u);
  info.trafficStats().recordResponse(200, false);
  EXPECT_EQ(store.counter("cluster.web.upstream_rq_2xx").value(), 1u);
}

TEST(ClusterLayoutTest, CircuitBreakersAreMadeOnFirstUse) {
  stats::Store store(1);
  ClusterInfo info(clusterFromJson(R"({"name": "c", "circuit_breakers": {"thresholds": [
                       {"max_connections": 2}, {"priority": "HIGH", "max_retries": 9}]}})"),
                   store, false, "");
  EXPECT_FALSE(info.resources.created());
  EXPECT_FALSE(info.resources_high.created());
  // Limits are readable without making the manager (admin /clusters).
  EXPECT_EQ(info.resources.limits().max_connections, 2u);
  EXPECT_EQ(info.resources_high.limits().max_retries, 9u);
  EXPECT_EQ(info.resources.limits().max_requests, 1024u);
  EXPECT_FALSE(info.resources.created());

  EXPECT_TRUE(info.resources.tryAcquireConnection());
  EXPECT_TRUE(info.resources.tryAcquireConnection());
  EXPECT_FALSE(info.resources.tryAcquireConnection());
  EXPECT_TRUE(info.resources.created());
  EXPECT_EQ(store.gauge("cluster.c.circuit_breakers.default.cx_open").value(), 1);
  info.resources.releaseConnection();
  EXPECT_EQ(store.gauge("cluster.c.circuit_breakers.default.cx_open").value(), 0);
  EXPECT_EQ(&info.resourceManager(false), &info.resources.get());
  EXPECT_FALSE(info.resources_high.created());
}

TEST(ClusterLayoutTest, TrackedRemainingShowsTheMaximumBeforeTraffic) {
  stats::Store store(1);
  ClusterInfo info(clusterFromJson(R"({"name": "t", "circuit_breakers": {"thresholds": [
                       {"max_pending_requests": 7, "track_remaining": true}]}})"),
                   store, false, "");
  EXPECT_EQ(store.gauge("cluster.t.circuit_breakers.default.remaining_pending").value(), 7);
}

TEST(ClusterLayoutTest, ConfigIsKeptAsDeterministicBytes) {
  stats::Store store(1);
  const auto config = clusterFromJson(R"({"name": "b", "type": "EDS", "connect_timeout": "2s",
      "eds_cluster_config": {"service_name": "svc", "eds_config": {"ads": {}}},
      "typed_extension_protocol_options": {}})");
  ClusterInfo info(config, store, false, "");
  EXPECT_EQ(info.config().eds_cluster_config().service_name(), "svc");
  EXPECT_EQ(info.config().connect_timeout().seconds(), 2);
  EXPECT_EQ(info.configBytes(), clusterConfigBytes(config));
  auto changed = config;
  changed.mutable_connect_timeout()->set_seconds(3);
  EXPECT_NE(clusterConfigBytes(changed), info.configBytes());
}

TEST(ClusterLayoutTest, HostHostnameCostsAPointerWhenEmpty) {
  Host host;
  EXPECT_TRUE(host.hostname.empty());
  EXPECT_EQ(host.hostname, "");
  host.hostname = std::string("pod-1.svc");
  EXPECT_EQ(host.hostname, "pod-1.svc");
  EXPECT_EQ(std::string_view(host.hostname), "pod-1.svc");
  const std::string& as_string = host.hostname;
  EXPECT_EQ(as_string.size(), 9u);
  Host other;
  other.hostname = host.hostname;
  EXPECT_TRUE(other.hostname == host.hostname);
  host.hostname = "";
  EXPECT_TRUE(host.hostname.empty());
  static_assert(sizeof(OptionalString) == sizeof(void*));
}

}  // namespace
}  // namespace skiff::upstream
