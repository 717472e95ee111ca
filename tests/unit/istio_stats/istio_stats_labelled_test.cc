// Labelled families over the Store, and istio.stats' recorder rendering Istio's series in /stats and
// /stats/prometheus.
#include <gtest/gtest.h>

#include <thread>

#include "filters/istio/istio.h"
#include "skiff/stats/labelled.h"

namespace skiff {
namespace {

using stats::LabelledMetrics;

TEST(LabelledMetrics, SameValuesSameSeriesAcrossThreads) {
  stats::Store store(3);
  LabelledMetrics m(store, "ns", {{"a_total", stats::StatType::kCounter}}, {"x", "y"});
  std::vector<std::string_view> v1 = {"1", "2"}, v2 = {"1", "3"};
  const auto* s1 = &m.series(v1);
  EXPECT_EQ(s1, &m.series(v1));
  EXPECT_NE(s1, &m.series(v2));
  s1->counters[0].inc();
  std::thread t([&] {
    stats::setThreadSlab(1);
    std::string owned1 = "1", owned2 = "2";  // different storage, same values
    std::vector<std::string_view> v = {owned1, owned2};
    EXPECT_EQ(&m.series(v), s1);
    m.series(v).counters[0].inc(2);
  });
  t.join();
  EXPECT_EQ(s1->counters[0].value(), 3u);
  EXPECT_EQ(m.seriesCount(), 2u);
  EXPECT_EQ(m.statName(0, v1), "ns.a_total.x.1.y.2");
  auto out = stats::renderPrometheus(store.snapshot());
  // Outside Istio's namespace the renderer applies Envoy's prefix.
  EXPECT_NE(out.find("# TYPE envoy_ns_a_total counter\n"), std::string::npos) << out;
  EXPECT_NE(out.find("envoy_ns_a_total{x=\"1\",y=\"2\"} 3\n"), std::string::npos) << out;
}

TEST(LabelledMetrics, CardinalityIsBounded) {
  stats::Store store(1);
  LabelledMetrics m(store, "", {{"b_total", stats::StatType::kCounter}}, {"k"}, 3);
  std::vector<std::string> values;
  for (int i = 0; i < 10; ++i) values.push_back(std::to_string(i));
  for (const auto& v : values) {
    std::vector<std::string_view> one = {v};
    m.series(one).counters[0].inc();
  }
  EXPECT_EQ(m.seriesCount(), 4u);  // 3 + the overflow series
  auto snap = store.snapshot([](std::string_view n) { return n == "b_total.k.overflow"; });
  ASSERT_EQ(snap.size(), 1u);
  EXPECT_EQ(snap[0].counter, 7u);
}

TEST(LabelledMetrics, OverflowLabelSetsDoNotGrowTheIndex) {
  stats::Store store(1);
  LabelledMetrics m(store, "", {{"c_total", stats::StatType::kCounter}}, {"k"}, 3);
  for (int i = 0; i < 5000; ++i) {
    const std::string v = "v" + std::to_string(i);
    std::vector<std::string_view> one = {v};
    m.series(one).counters[0].inc();
  }
  EXPECT_EQ(m.seriesCount(), 4u);
  // Only the 3 real series are indexed; the 4997 label sets folded into overflow add nothing.
  EXPECT_LE(m.lookupBucketCount(), 3u);
}

TEST(IstioStatsRecorder, RecordsIstioSeriesWithLabels) {
  stats::Store store(1);
  filters::istio::StatsConfig config;
  config.reporter = filters::istio::Reporter::kDestination;
  filters::istio::StatsRecorder recorder(config, store);
  filters::istio::WorkloadInfo peer;
  peer.workload_name = "client-v1";
  peer.namespace_name = "team-a";
  peer.app = "client";
  http::HeaderMap request, response;
  request.add(":authority", "server.team-b:8080");
  response.add(":status", "200");
  http::StreamInfo info;
  info.request_headers = &request;
  info.response_headers = &response;
  info.response_code = 200;
  info.bytes_received = 10;
  info.bytes_sent = 2000;
  for (int i = 0; i < 3; ++i) recorder.recordHttp(info, &peer, false);
  info.response_code = 503;
  info.setFlag(http::ResponseFlag::kUpstreamConnectionFailure);
  recorder.recordHttp(info, nullptr, false);

  const std::string prom = stats::renderPrometheus(store.snapshot());
  EXPECT_NE(prom.find("# TYPE istio_requests_total counter"), std::string::npos) << prom;
  EXPECT_NE(
      prom.find("istio_requests_total{reporter=\"destination\",source_workload=\"client-v1\","
                "source_canonical_service=\"client\",source_canonical_revision=\"latest\","
                "source_workload_namespace=\"team-a\",source_principal=\"unknown\",source_app=\"client\""),
      std::string::npos)
      << prom;
  EXPECT_NE(prom.find("destination_service=\"server.team-b:8080\""), std::string::npos) << prom;
  EXPECT_NE(prom.find("response_code=\"200\",grpc_response_status=\"\",response_flags=\"-\","
                      "connection_security_policy=\"none\"} 3\n"),
            std::string::npos)
      << prom;
  EXPECT_NE(prom.find("response_code=\"503\",grpc_response_status=\"\",response_flags=\"UF\","
                      "connection_security_policy=\"none\"} 1\n"),
            std::string::npos)
      << prom;
  EXPECT_NE(prom.find("# TYPE istio_request_duration_milliseconds histogram"), std::string::npos);
  EXPECT_NE(prom.find("istio_request_duration_milliseconds_bucket{reporter=\"destination\""),
            std::string::npos);
  EXPECT_NE(prom.find("istio_response_bytes_count{"), std::string::npos);
  // /stats names them as Envoy does for tagged stats.
  const std::string text = stats::renderText(store.snapshot());
  EXPECT_NE(text.find("istiocustom.istio_requests_total.reporter.destination.source_workload.client-v1."),
            std::string::npos)
      << text;
}

TEST(IstioStatsRecorder, OverridesDropAndRemove) {
  stats::Store store(1);
  std::vector<std::string> warnings;
  auto config = filters::istio::parseStatsConfig(
      filters::istio::pluginConfigFromJson(R"({"metrics": [{"name": "request_bytes", "drop": true},
          {"tags_to_remove": ["response_flags"], "dimensions": {"source_app": "'pinned'"}}]})"),
      filters::istio::Reporter::kSource, &warnings);
  filters::istio::StatsRecorder recorder(config, store);
  http::StreamInfo info;
  info.response_code = 204;
  recorder.recordHttp(info, nullptr, false);
  const std::string prom = stats::renderPrometheus(store.snapshot());
  EXPECT_EQ(prom.find("istio_request_bytes"), std::string::npos) << prom;
  EXPECT_NE(prom.find("source_app=\"pinned\""), std::string::npos) << prom;
  EXPECT_NE(prom.find("response_flags=\"\""), std::string::npos) << prom;
  EXPECT_NE(prom.find("istio_response_bytes_count{"), std::string::npos) << prom;
}

}  // namespace
}  // namespace skiff
