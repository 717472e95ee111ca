// ClusterStats: Envoy stat names, per-code charging (incl. retry.*), name sanitizing.
#include "skiff/upstream/cluster_stats.h"

#include <gtest/gtest.h>

#include <thread>

namespace skiff::upstream {
namespace {

TEST(ClusterStatsTest, FixedNames) {
  stats::Store store(1);
  ClusterStats stats(store, "web");
  stats.upstream_rq_total.inc();
  stats.upstream_rq_active.inc();
  stats.upstream_cx_none_healthy.inc();
  stats.upstream_rq_retry_overflow.inc();
  stats.upstream_cx_connect_ms.record(3);
  EXPECT_EQ(store.counter("cluster.web.upstream_rq_total").value(), 1u);
  EXPECT_EQ(store.gauge("cluster.web.upstream_rq_active").value(), 1);
  EXPECT_EQ(store.counter("cluster.web.upstream_cx_none_healthy").value(), 1u);
  EXPECT_EQ(store.counter("cluster.web.upstream_rq_retry_overflow").value(), 1u);
  bool found_histogram = false;
  for (const auto& s : store.snapshot()) {
    if (s.name == "cluster.web.upstream_cx_connect_ms")
      found_histogram = s.type == stats::StatType::kHistogram;
    // Per-code stats do not exist before the first response.
    EXPECT_EQ(s.name.find("upstream_rq_2xx"), std::string::npos);
    EXPECT_EQ(s.name.find("upstream_rq_completed"), std::string::npos);
  }
  EXPECT_TRUE(found_histogram);
}

TEST(ClusterStatsTest, RetriedAttemptsChargeRetryNamesOnly) {
  // The seed scenario: GET /status/500 with num_retries 3 -> 3 retried attempts + 1 final 500.
  stats::Store store(1);
  ClusterStats stats(store, "httpbin");
  for (int i = 0; i < 3; ++i) {
    stats.upstream_rq_retry.inc();
    stats.recordResponse(500, /*is_retry_attempt_result=*/true);
  }
  stats.recordResponse(500, false);
  auto c = [&](const std::string& n) { return store.counter("cluster.httpbin." + n).value(); };
  EXPECT_EQ(c("upstream_rq_retry"), 3u);
  EXPECT_EQ(c("retry.upstream_rq_500"), 3u);
  EXPECT_EQ(c("retry.upstream_rq_5xx"), 3u);
  EXPECT_EQ(c("retry.upstream_rq_completed"), 3u);
  EXPECT_EQ(c("upstream_rq_500"), 1u);
  EXPECT_EQ(c("upstream_rq_5xx"), 1u);
  EXPECT_EQ(c("upstream_rq_completed"), 1u);
  EXPECT_EQ(c("external.upstream_rq_500"), 1u);
  EXPECT_EQ(c("external.upstream_rq_5xx"), 1u);
  EXPECT_EQ(c("external.upstream_rq_completed"), 1u);
}

TEST(ClusterStatsTest, CodesAndClasses) {
  stats::Store store(1);
  ClusterStats stats(store, "c");
  stats.recordResponse(200, false);
  stats.recordResponse(204, false, /*internal_request=*/true);
  stats.recordResponse(404, false);
  stats.recordResponse(503, false);
  stats.recordResponse(101, false);
  stats.recordResponse(42, false);  // bogus code: only upstream_rq_completed
  auto c = [&](const std::string& n) { return store.counter("cluster.c." + n).value(); };
  EXPECT_EQ(c("upstream_rq_200"), 1u);
  EXPECT_EQ(c("upstream_rq_204"), 1u);
  EXPECT_EQ(c("upstream_rq_2xx"), 2u);
  EXPECT_EQ(c("internal.upstream_rq_2xx"), 1u);
  EXPECT_EQ(c("external.upstream_rq_2xx"), 1u);
  EXPECT_EQ(c("upstream_rq_4xx"), 1u);
  EXPECT_EQ(c("upstream_rq_503"), 1u);
  EXPECT_EQ(c("upstream_rq_1xx"), 1u);
  EXPECT_EQ(c("upstream_rq_completed"), 6u);
}

TEST(ClusterStatsTest, ConcurrentFirstUseCreatesOneCounter) {
  stats::Store store(5);
  ClusterStats stats(store, "c");
  std::vector<std::thread> threads;
  for (uint32_t t = 1; t <= 4; ++t) {
    threads.emplace_back([&, t] {
      stats::setThreadSlab(t);
      for (int i = 0; i < 1000; ++i) stats.recordResponse(200, false);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(store.counter("cluster.c.upstream_rq_200").value(), 4000u);
}

TEST(ClusterStatsTest, ResponseTime) {
  stats::Store store(1);
  ClusterStats stats(store, "c");
  stats.recordResponseTime(12);
  int found = 0;
  for (const auto& s : store.snapshot()) {
    if (s.name == "cluster.c.upstream_rq_time" || s.name == "cluster.c.external.upstream_rq_time") {
      EXPECT_EQ(s.histogram.sample_count, 1u) << s.name;
      ++found;
    }
  }
  EXPECT_EQ(found, 2);
}

TEST(ClusterStatsTest, SanitizesColons) {
  EXPECT_EQ(sanitizeClusterStatName("outbound|80||svc:x"), "outbound|80||svc_x");
}

}  // namespace
}  // namespace skiff::upstream
