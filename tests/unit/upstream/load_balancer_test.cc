// Load balancers: rotation, weights, least request, random, avoid-host, health, panic, priorities.
#include "skiff/upstream/load_balancer.h"

#include <gtest/gtest.h>

#include <map>

#include "test_util.h"

namespace skiff::upstream {
namespace {

HostSharedPtr host(const std::string& address, uint32_t weight = 1, uint32_t priority = 0,
                   envoy::config::core::v3::HealthStatus status = envoy::config::core::v3::HEALTHY) {
  // The label goes in `hostname` (the balancers never read it); each host gets an endpoint of its own.
  static uint32_t next = 1;
  auto h = std::make_shared<Host>();
  h->hostname = address;
  h->endpoint = {asio::ip::address_v4(0x0a000000u + next++), 1};
  h->weight = weight;
  h->priority = priority;
  h->health_status = status;
  h->healthy = healthStatusIsUsable(status);
  return h;
}

class LoadBalancerTest : public ::testing::Test {
 protected:
  std::shared_ptr<ClusterInfo> info(const std::string& extra = "") {
    return std::make_shared<ClusterInfo>(test::clusterFromJson(R"({"name": "lb")" + extra + "}"), store_,
                                         false, "");
  }
  static HostSetConstSharedPtr set(std::vector<HostSharedPtr> hosts) {
    auto s = std::make_shared<HostSet>();
    s->hosts = std::move(hosts);
    return s;
  }
  static std::map<std::string, int> count(LoadBalancer& lb, int n, const Host* avoid = nullptr) {
    std::map<std::string, int> out;
    for (int i = 0; i < n; ++i) {
      auto h = lb.chooseHost({0, false, avoid});
      out[h ? h->hostname.str() : "null"]++;
    }
    return out;
  }
  stats::Store store_{1};
};

TEST_F(LoadBalancerTest, RoundRobinRotatesStrictly) {
  auto ci = info();
  auto hosts = set({host("a:1"), host("b:1"), host("c:1")});
  auto lb = createLoadBalancer(*ci, hosts, 7);
  auto previous = lb->chooseHost({});
  auto index = [&](const HostSharedPtr& h) {
    return std::find(hosts->hosts.begin(), hosts->hosts.end(), h) - hosts->hosts.begin();
  };
  for (int i = 0; i < 30; ++i) {
    auto next = lb->chooseHost({});
    EXPECT_EQ(index(next), (index(previous) + 1) % 3);
    previous = next;
  }
}

TEST_F(LoadBalancerTest, WeightedRoundRobinFollowsWeights) {
  auto ci = info();
  auto lb = createLoadBalancer(*ci, set({host("a:1", 1), host("b:1", 2), host("c:1", 3)}), 7);
  auto counts = count(*lb, 600);
  EXPECT_NEAR(counts["a:1"], 100, 1);
  EXPECT_NEAR(counts["b:1"], 200, 1);
  EXPECT_NEAR(counts["c:1"], 300, 1);
  // Interleaved, not in runs: the heaviest host never gets more than 2 picks in a row here.
  int run = 0, max_run = 0;
  for (int i = 0; i < 60; ++i) {
    run = lb->chooseHost({})->hostname == "c:1" ? run + 1 : 0;
    max_run = std::max(max_run, run);
  }
  EXPECT_LE(max_run, 2);
}

TEST_F(LoadBalancerTest, LeastRequestPrefersIdleHosts) {
  auto ci = info(R"(, "lb_policy": "LEAST_REQUEST")");
  auto busy = host("busy:1");
  busy->stats().rq_active = 10;
  auto lb = createLoadBalancer(*ci, set({busy, host("idle:1")}), 7);
  auto counts = count(*lb, 1000);
  // Two choices out of two hosts: the busy host wins only when drawn twice (~25%).
  EXPECT_GT(counts["idle:1"], 650);
  EXPECT_LT(counts["busy:1"], 350);

  auto ci5 = info(R"(, "lb_policy": "LEAST_REQUEST", "least_request_lb_config": {"choice_count": 6})");
  auto lb5 = createLoadBalancer(*ci5, set({busy, host("idle:1")}), 7);
  EXPECT_GT(count(*lb5, 1000)["idle:1"], 950);
}

TEST_F(LoadBalancerTest, RandomCoversAllHosts) {
  auto ci = info(R"(, "lb_policy": "RANDOM")");
  auto lb =
      createLoadBalancer(*ci, set({host("a:1"), host("b:1"), host("c:1"), host("d:1"), host("e:1")}), 7);
  auto counts = count(*lb, 1000);
  ASSERT_EQ(counts.size(), 5u);
  for (const auto& [address, n] : counts) EXPECT_GT(n, 120) << address;
}

TEST_F(LoadBalancerTest, AvoidsPreviousHostWhenPossible) {
  for (const char* policy : {"ROUND_ROBIN", "LEAST_REQUEST", "RANDOM"}) {
    auto ci = info(std::string(R"(, "lb_policy": ")") + policy + "\"");
    auto a = host("a:1"), b = host("b:1", 5), c = host("c:1");
    auto lb = createLoadBalancer(*ci, set({a, b, c}), 7);
    auto counts = count(*lb, 300, b.get());
    EXPECT_EQ(counts.count("b:1"), 0u) << policy;
    EXPECT_GT(counts["a:1"], 0) << policy;
    EXPECT_GT(counts["c:1"], 0) << policy;
    // A single host is returned even when it is the one to avoid.
    auto single = createLoadBalancer(*ci, set({a}), 7);
    EXPECT_EQ(single->chooseHost({0, false, a.get()}), a) << policy;
  }
}

TEST_F(LoadBalancerTest, SkipsUnhealthyHosts) {
  auto ci = info();
  auto lb = createLoadBalancer(
      *ci, set({host("a:1"), host("b:1"), host("c:1", 1, 0, envoy::config::core::v3::UNHEALTHY)}), 7);
  auto counts = count(*lb, 100);
  EXPECT_EQ(counts.count("c:1"), 0u);
  EXPECT_EQ(counts["a:1"], 50);
}

TEST_F(LoadBalancerTest, PanicModeUsesAllHosts) {
  auto ci = info();
  auto lb = createLoadBalancer(*ci,
                               set({host("a:1"), host("b:1", 1, 0, envoy::config::core::v3::UNHEALTHY),
                                    host("c:1", 1, 0, envoy::config::core::v3::DRAINING)}),
                               7);
  auto counts = count(*lb, 90);
  EXPECT_EQ(counts["a:1"], 30);
  EXPECT_EQ(counts["b:1"], 30);
  EXPECT_EQ(counts["c:1"], 30);
  EXPECT_EQ(store_.counter("cluster.lb.lb_healthy_panic").value(), 90u);
}

TEST_F(LoadBalancerTest, NoHealthyHostWithoutPanic) {
  auto ci = info(R"(, "common_lb_config": {"healthy_panic_threshold": {"value": 0}})");
  auto lb = createLoadBalancer(*ci, set({host("a:1", 1, 0, envoy::config::core::v3::UNHEALTHY)}), 7);
  EXPECT_EQ(lb->chooseHost({}), nullptr);
  auto empty = createLoadBalancer(*info(), set({}), 7);
  EXPECT_EQ(empty->chooseHost({}), nullptr);
  EXPECT_EQ(createLoadBalancer(*info(), nullptr, 7)->chooseHost({}), nullptr);
}

TEST_F(LoadBalancerTest, LowestHealthyPriorityWins) {
  auto ci = info();
  auto lb = createLoadBalancer(*ci, set({host("p1:1", 1, 1), host("p0:1", 1, 0), host("p0b:1", 1, 0)}), 7);
  auto counts = count(*lb, 50);
  EXPECT_EQ(counts.count("p1:1"), 0u);
}

}  // namespace
}  // namespace skiff::upstream
