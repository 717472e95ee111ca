// Text and JSON renderers in Envoy's shapes.
#include <gtest/gtest.h>

#include "skiff/stats/stats.h"

namespace skiff::stats {
namespace {

std::vector<StatValue> sample() {
  Store store(1);
  store.counter("cluster.foo.upstream_rq_total").inc(3);
  store.gauge("server.live").set(1);
  // A version gauge holds a 64-bit hash: Envoy renders gauges unsigned.
  store.gauge("cluster_manager.cds.version").set(static_cast<int64_t>(17241709254077376921ULL));
  store.setText("control_plane.identifier", "istiod-\"x\"");
  store.histogram("cluster.foo.upstream_rq_time");
  Histogram h = store.histogram("http.ingress.downstream_rq_time");
  for (int i = 0; i < 4; ++i) h.record(7);
  return store.snapshot();
}

TEST(StatsRender, Text) {
  std::string text = renderText(sample());
  EXPECT_EQ(text,
            "cluster.foo.upstream_rq_total: 3\n"
            "cluster_manager.cds.version: 17241709254077376921\n"
            "control_plane.identifier: \"istiod-\\\"x\\\"\"\n"
            "server.live: 1\n"
            "cluster.foo.upstream_rq_time: No recorded values\n"
            "http.ingress.downstream_rq_time: P0(5,5) P25(6.25,6.25) P50(7.5,7.5) P75(8.75,8.75) "
            "P90(9.5,9.5) P95(9.75,9.75) P99(9.95,9.95) P99.5(9.975,9.975) P99.9(9.995,9.995) "
            "P100(10,10)\n");
}

TEST(StatsRender, Json) {
  std::string json = renderJson(sample());
  EXPECT_EQ(json.rfind("{\"stats\":[{\"name\":\"cluster.foo.upstream_rq_total\",\"value\":3},", 0), 0u)
      << json;
  EXPECT_NE(json.find("{\"name\":\"control_plane.identifier\",\"value\":\"istiod-\\\"x\\\"\"}"),
            std::string::npos);
  EXPECT_NE(json.find("{\"name\":\"cluster_manager.cds.version\",\"value\":17241709254077376921}"),
            std::string::npos)
      << json;
  EXPECT_NE(json.find("{\"histograms\":{\"supported_quantiles\":[0,25,50,75,90,95,99,99.5,99.9,100],"
                      "\"computed_quantiles\":[{\"name\":\"cluster.foo.upstream_rq_time\",\"values\":"
                      "[{\"interval\":null,\"cumulative\":null},"),
            std::string::npos)
      << json;
  EXPECT_NE(
      json.find("{\"name\":\"http.ingress.downstream_rq_time\",\"values\":[{\"interval\":5,\"cumulative\":5},"
                "{\"interval\":6.25,\"cumulative\":6.25}"),
      std::string::npos)
      << json;
  EXPECT_EQ(json.back(), '}');
  EXPECT_EQ(json.substr(json.size() - 6), "}]}}]}");
}

TEST(StatsRender, JsonWithoutHistograms) {
  Store store(1);
  store.counter("a").inc();
  EXPECT_EQ(renderJson(store.snapshot()), "{\"stats\":[{\"name\":\"a\",\"value\":1}]}");
  EXPECT_EQ(renderJson({}), "{\"stats\":[]}");
}

}  // namespace
}  // namespace skiff::stats
