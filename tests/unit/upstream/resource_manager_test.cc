// Circuit breakers: limits, open gauges, remaining gauges.
#include "skiff/upstream/resource_manager.h"

#include <gtest/gtest.h>

namespace skiff::upstream {
namespace {

TEST(ResourceManagerTest, LimitsAndOpenGauges) {
  stats::Store store(1);
  ResourceLimits limits;
  limits.max_connections = 2;
  limits.max_retries = 1;
  ResourceManager rm(store, "c", "default", limits);
  auto open = [&](const char* n) {
    return store.gauge(std::string("cluster.c.circuit_breakers.default.") + n).value();
  };
  EXPECT_TRUE(rm.tryAcquireConnection());
  EXPECT_EQ(open("cx_open"), 0);
  EXPECT_TRUE(rm.tryAcquireConnection());
  EXPECT_EQ(open("cx_open"), 1);
  EXPECT_FALSE(rm.tryAcquireConnection());
  EXPECT_EQ(rm.connections().count(), 2u);
  rm.releaseConnection();
  EXPECT_EQ(open("cx_open"), 0);
  EXPECT_TRUE(rm.tryAcquireConnection());

  EXPECT_TRUE(rm.tryAcquireRetry());
  EXPECT_EQ(open("rq_retry_open"), 1);
  EXPECT_FALSE(rm.tryAcquireRetry());
  rm.releaseRetry();
  EXPECT_EQ(open("rq_retry_open"), 0);

  for (int i = 0; i < 1024; ++i) ASSERT_TRUE(rm.tryAcquirePending());
  EXPECT_EQ(open("rq_pending_open"), 1);
  EXPECT_FALSE(rm.tryAcquirePending());
  for (int i = 0; i < 1024; ++i) ASSERT_TRUE(rm.tryAcquireRequest());
  EXPECT_EQ(open("rq_open"), 1);
  EXPECT_FALSE(rm.tryAcquireRequest());
  // Connection pools are unlimited by default.
  for (int i = 0; i < 5000; ++i) ASSERT_TRUE(rm.tryAcquireConnectionPool());
  EXPECT_EQ(open("cx_pool_open"), 0);
}

TEST(ResourceManagerTest, RemainingGaugesWhenTracked) {
  stats::Store store(1);
  ResourceLimits limits;
  limits.max_requests = 3;
  limits.track_remaining = true;
  ResourceManager rm(store, "c", "high", limits);
  auto g = [&](const char* n) {
    return store.gauge(std::string("cluster.c.circuit_breakers.high.") + n).value();
  };
  EXPECT_EQ(g("remaining_rq"), 3);
  EXPECT_EQ(g("remaining_retries"), 3);
  EXPECT_EQ(g("remaining_cx"), 1024);
  ASSERT_TRUE(rm.tryAcquireRequest());
  ASSERT_TRUE(rm.tryAcquireRequest());
  EXPECT_EQ(g("remaining_rq"), 1);
  rm.releaseRequest();
  EXPECT_EQ(g("remaining_rq"), 2);
}

// A pool's first connection to a host may go over max_connections (Envoy does the same); the gauges stay
// consistent: open while at or over the limit, remaining never below 0 nor above the maximum.
TEST(ResourceManagerTest, ConnectionOverTheLimitKeepsTheGaugesConsistent) {
  stats::Store store(1);
  ResourceLimits limits;
  limits.max_connections = 1;
  limits.track_remaining = true;
  ResourceManager rm(store, "c", "default", limits);
  auto g = [&](const char* n) {
    return store.gauge(std::string("cluster.c.circuit_breakers.default.") + n).value();
  };
  ASSERT_TRUE(rm.tryAcquireConnection());
  EXPECT_EQ(g("cx_open"), 1);
  EXPECT_EQ(g("remaining_cx"), 0);
  rm.acquireConnectionOverLimit();
  EXPECT_EQ(rm.connections().count(), 2u);
  EXPECT_EQ(g("cx_open"), 1);
  EXPECT_EQ(g("remaining_cx"), 0);
  EXPECT_FALSE(rm.tryAcquireConnection());
  rm.releaseConnection();
  EXPECT_EQ(g("cx_open"), 1);  // still at the limit
  EXPECT_EQ(g("remaining_cx"), 0);
  rm.releaseConnection();
  EXPECT_EQ(g("cx_open"), 0);
  EXPECT_EQ(g("remaining_cx"), 1);
  rm.acquireConnectionOverLimit();  // under the limit it is an ordinary acquire
  EXPECT_EQ(g("cx_open"), 1);
  EXPECT_EQ(g("remaining_cx"), 0);
  rm.releaseConnection();
  EXPECT_EQ(g("cx_open"), 0);
  EXPECT_EQ(g("remaining_cx"), 1);
}

TEST(ResourceManagerTest, NoRemainingGaugesByDefault) {
  stats::Store store(1);
  ResourceManager rm(store, "c", "default", ResourceLimits{});
  for (const auto& s : store.snapshot()) EXPECT_EQ(s.name.find("remaining_"), std::string::npos) << s.name;
}

}  // namespace
}  // namespace skiff::upstream
