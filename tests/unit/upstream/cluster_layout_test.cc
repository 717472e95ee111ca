// ClusterInfo's memory layout: traffic stats and circuit breakers made on first use, names listed from the
// start; the config kept as bytes; one copy of the name; hosts' packed layout (address text on demand,
// counters on first use); worker tables keyed by a view of the cluster's own name.
#include <gtest/gtest.h>

#include <set>
#include <thread>
#include <vector>

#include "skiff/upstream/cluster_info.h"
#include "skiff/upstream/conn_pool.h"
#include "skiff/upstream/host.h"
#include "skiff/upstream/thread_local_cluster.h"
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

TEST(ClusterLayoutTest, HostAddressIsFormattedFromTheSocketAddress) {
  Host v4;
  v4.endpoint = {asio::ip::make_address("10.0.12.34"), 8080};
  EXPECT_EQ(v4.address(), "10.0.12.34:8080");
  Host v6;
  v6.endpoint = {asio::ip::make_address("fd00::1"), 443};
  EXPECT_EQ(v6.address(), "[fd00::1]:443");
  std::string reused = "something longer than the address";
  formatEndpoint(v4.endpoint, reused);
  EXPECT_EQ(reused, "10.0.12.34:8080");
  // Equal endpoints hash alike; the pool key of the default source is the endpoint alone.
  EXPECT_EQ(EndpointHash()(v4.endpoint), EndpointHash()({asio::ip::make_address("10.0.12.34"), 8080}));
  EXPECT_NE(EndpointHash()(v4.endpoint), EndpointHash()({asio::ip::make_address("10.0.12.34"), 8081}));
  EXPECT_EQ((PoolKey{v4.endpoint, ""}), (PoolKey{{asio::ip::make_address("10.0.12.34"), 8080}, ""}));
  EXPECT_FALSE((PoolKey{v4.endpoint, ""}) == (PoolKey{v4.endpoint, "127.0.0.6"}));
}

TEST(ClusterLayoutTest, HostCountersAreAllocatedOnFirstWriteOnce) {
  Host host;
  EXPECT_FALSE(host.hasStats());
  EXPECT_EQ(host.peekStats().rq_total.load(), 0u);  // reading allocates nothing
  EXPECT_FALSE(host.hasStats());
  std::vector<const HostStats*> seen(8);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < seen.size(); ++i) {
    threads.emplace_back([&, i] {
      seen[i] = &host.stats();
      host.stats().rq_total.fetch_add(1, std::memory_order_relaxed);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(std::set<const HostStats*>(seen.begin(), seen.end()).size(), 1u);
  EXPECT_TRUE(host.hasStats());
  EXPECT_EQ(host.peekStats().rq_total.load(), 8u);
}

TEST(ClusterLayoutTest, HostFieldsArePacked) {
  Host host;
  host.priority = kMaxHostPriority;
  host.health_status = envoy::config::core::v3::DRAINING;
  host.weight = 0xffffffffu;
  EXPECT_EQ(host.priority, kMaxHostPriority);
  EXPECT_EQ(host.health_status, envoy::config::core::v3::DRAINING);
  EXPECT_EQ(host.weight, 0xffffffffu);
#if defined(__x86_64__) && defined(__GLIBCXX__)
  EXPECT_LE(sizeof(Host), 88u);
#endif
}

TEST(ClusterLayoutTest, NamesAreOneCopyUnlessTheyDiffer) {
  stats::Store store(1);
  ClusterInfo plain(clusterFromJson(R"({"name": "outbound|80||web.default.svc.cluster.local"})"), store,
                    false, "");
  EXPECT_EQ(&plain.observability_name, &plain.name);
  EXPECT_EQ(&plain.stat_name, &plain.name);
  ClusterInfo alt(clusterFromJson(R"({"name": "a", "alt_stat_name": "alt:name"})"), store, false, "");
  EXPECT_EQ(alt.observability_name, "alt:name");
  EXPECT_EQ(alt.stat_name, "alt_name");
  ClusterInfo colon(clusterFromJson(R"({"name": "a:b"})"), store, false, "");
  EXPECT_EQ(colon.observability_name, "a:b");
  EXPECT_EQ(colon.stat_name, "a_b");
  // Versions are shared between clusters delivered with the same one.
  ClusterInfo v1(clusterFromJson(R"({"name": "v1"})"), store, true, "7");
  ClusterInfo v2(clusterFromJson(R"({"name": "v2"})"), store, true, "7");
  EXPECT_EQ(&v1.versionInfo(), &v2.versionInfo());
}

TEST(ClusterLayoutTest, WorkerTableFollowsANewClusterInfo) {
  stats::Store store(1);
  ThreadLocalClusterManager tlcm(1);
  auto first = std::make_shared<const ClusterInfo>(clusterFromJson(R"({"name": "c"})"), store, false, "");
  tlcm.update("c", first, nullptr);
  ThreadLocalCluster* cluster = tlcm.get("c");
  ASSERT_NE(cluster, nullptr);
  auto second = std::make_shared<const ClusterInfo>(
      clusterFromJson(R"({"name": "c", "connect_timeout": "3s"})"), store, false, "");
  tlcm.update("c", second, nullptr);
  first.reset();                      // the table's key must not view the old ClusterInfo's name any more
  EXPECT_EQ(tlcm.get("c"), cluster);  // the same entry (pointers stay valid)
  EXPECT_EQ(&tlcm.get("c")->info(), second.get());
  for (int i = 0; i < 100; ++i) {  // rehashes: the re-keyed entry is still found
    tlcm.update("x" + std::to_string(i),
                std::make_shared<const ClusterInfo>(
                    clusterFromJson(R"({"name": "x)" + std::to_string(i) + R"("})"), store, false, ""),
                nullptr);
  }
  EXPECT_EQ(tlcm.get("c"), cluster);
  tlcm.update("c", nullptr, nullptr);
  EXPECT_EQ(tlcm.get("c"), nullptr);
  EXPECT_EQ(tlcm.size(), 100u);
}

}  // namespace
}  // namespace skiff::upstream
