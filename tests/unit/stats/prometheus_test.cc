// Prometheus exposition: Envoy's tag extraction, sanitizing, prefixes, TYPE lines and histogram series.
#include <gtest/gtest.h>

#include <map>
#include <sstream>

#include "skiff/stats/stats.h"
#include "stats/render_util.h"

namespace skiff::stats {
namespace {

struct Sample {
  std::string metric;
  std::map<std::string, std::string> labels;
  std::string value;
};

// Parses `name{a="b",c="d"} value` lines (enough of the format for these tests, with \" escapes).
std::vector<Sample> parse(const std::string& text, std::map<std::string, std::string>* types) {
  std::vector<Sample> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# TYPE ", 0) == 0) {
      std::string rest = line.substr(7);
      auto sp = rest.find(' ');
      EXPECT_EQ(types->count(rest.substr(0, sp)), 0u) << "duplicate TYPE for " << rest;
      (*types)[rest.substr(0, sp)] = rest.substr(sp + 1);
      continue;
    }
    Sample s;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') s.metric += line[i++];
    if (line[i] == '{') {
      ++i;
      while (line[i] != '}') {
        std::string k, v;
        while (line[i] != '=') k += line[i++];
        i += 2;  // ="
        while (line[i] != '"') {
          if (line[i] == '\\') ++i;
          v += line[i++];
        }
        ++i;
        if (line[i] == ',') ++i;
        s.labels[k] = v;
      }
      ++i;
    }
    s.value = line.substr(i + 1);
    out.push_back(std::move(s));
  }
  return out;
}

const Sample* findSample(const std::vector<Sample>& v, const std::string& metric,
                         const std::map<std::string, std::string>& labels) {
  for (const auto& s : v) {
    if (s.metric == metric && s.labels == labels) return &s;
  }
  return nullptr;
}

TEST(StatsPrometheus, TagExtractionExamples) {
  auto check = [](std::string_view stat, std::string_view name, std::map<std::string, std::string> tags) {
    ExtractedName n = extractTags(stat);
    EXPECT_EQ(n.name, name) << stat;
    std::map<std::string, std::string> got(n.tags.begin(), n.tags.end());
    EXPECT_EQ(got, tags) << stat;
  };
  check("cluster.foo.upstream_rq_total", "cluster.upstream_rq_total", {{"envoy_cluster_name", "foo"}});
  check("cluster.foo.upstream_rq_200", "cluster.upstream_rq",
        {{"envoy_cluster_name", "foo"}, {"envoy_response_code", "200"}});
  check("cluster.foo.upstream_rq_2xx", "cluster.upstream_rq_xx",
        {{"envoy_cluster_name", "foo"}, {"envoy_response_code_class", "2"}});
  check("http.ingress.downstream_rq_5xx", "http.downstream_rq_xx",
        {{"envoy_http_conn_manager_prefix", "ingress"}, {"envoy_response_code_class", "5"}});
  check("listener.0.0.0.0_15001.downstream_cx_total", "listener.downstream_cx_total",
        {{"envoy_listener_address", "0.0.0.0_15001"}});
  check("listener.0.0.0.0_15006.http.inbound.downstream_rq_2xx", "listener.http.downstream_rq_xx",
        {{"envoy_listener_address", "0.0.0.0_15006"},
         {"envoy_http_conn_manager_prefix", "inbound"},
         {"envoy_response_code_class", "2"}});
  // Envoy's lazy prefix regex stops at the first dot of a dotted stat_prefix (why Istio overrides it).
  check("http.inbound_0.0.0.0_8080.downstream_rq_total", "http.0.0.0_8080.downstream_rq_total",
        {{"envoy_http_conn_manager_prefix", "inbound_0"}});
  check("listener.admin.downstream_cx_total", "listener.admin.downstream_cx_total", {});
  check("http.ingress.rds.local_route.update_success", "http.rds.update_success",
        {{"envoy_http_conn_manager_prefix", "ingress"}, {"envoy_rds_route_config", "local_route"}});
  check("tcp.inbound_tcp.downstream_cx_total", "tcp.downstream_cx_total",
        {{"envoy_tcp_prefix", "inbound_tcp"}});
  check("listener_manager.worker_3.downstream_cx_total", "listener_manager.downstream_cx_total",
        {{"envoy_worker_id", "worker_3"}});
  check("vhost.vh1.vcluster.vc1.upstream_rq_time", "vhost.vcluster.upstream_rq_time",
        {{"envoy_virtual_host", "vh1"}, {"envoy_virtual_cluster", "vc1"}});
  check("server.live", "server.live", {});
}

TEST(StatsPrometheus, RenderCountersGaugesHistograms) {
  Store store(1);
  store.counter("cluster.foo.upstream_rq_total").inc(5);
  store.counter("cluster.bar.upstream_rq_total").inc(2);
  store.counter("cluster.foo.upstream_rq_200").inc(4);
  store.counter("cluster.foo.upstream_rq_503").inc(1);
  store.counter("http.ingress.downstream_rq_5xx").inc(1);
  store.counter("listener.0.0.0.0_15001.downstream_cx_total").inc(9);
  store.gauge("server.live").set(1);
  store.counter("istiocustom.istio_requests_total").inc(6);
  store.setText("control_plane.identifier", "x");
  Histogram h = store.histogram("cluster.foo.upstream_rq_time");
  h.record(3);
  h.record(7);
  h.record(4000000);

  std::string text = renderPrometheus(store.snapshot());
  std::map<std::string, std::string> types;
  auto samples = parse(text, &types);

  EXPECT_EQ(types["envoy_cluster_upstream_rq_total"], "counter");
  EXPECT_EQ(types["envoy_cluster_upstream_rq"], "counter");
  EXPECT_EQ(types["envoy_http_downstream_rq_xx"], "counter");
  EXPECT_EQ(types["envoy_server_live"], "gauge");
  EXPECT_EQ(types["envoy_cluster_upstream_rq_time"], "histogram");
  EXPECT_EQ(types["istio_requests_total"], "counter");
  EXPECT_EQ(types.count("envoy_control_plane_identifier"), 0u);

  auto value = [&](const std::string& m, const std::map<std::string, std::string>& l) -> std::string {
    const Sample* s = findSample(samples, m, l);
    return s ? s->value : "<missing>";
  };
  EXPECT_EQ(value("envoy_cluster_upstream_rq_total", {{"envoy_cluster_name", "foo"}}), "5");
  EXPECT_EQ(value("envoy_cluster_upstream_rq_total", {{"envoy_cluster_name", "bar"}}), "2");
  EXPECT_EQ(
      value("envoy_cluster_upstream_rq", {{"envoy_cluster_name", "foo"}, {"envoy_response_code", "200"}}),
      "4");
  EXPECT_EQ(
      value("envoy_cluster_upstream_rq", {{"envoy_cluster_name", "foo"}, {"envoy_response_code", "503"}}),
      "1");
  EXPECT_EQ(value("envoy_http_downstream_rq_xx",
                  {{"envoy_response_code_class", "5"}, {"envoy_http_conn_manager_prefix", "ingress"}}),
            "1");
  EXPECT_EQ(value("envoy_listener_downstream_cx_total", {{"envoy_listener_address", "0.0.0.0_15001"}}), "9");
  EXPECT_EQ(value("envoy_server_live", {}), "1");
  EXPECT_EQ(value("istio_requests_total", {}), "6");

  std::map<std::string, std::string> foo = {{"envoy_cluster_name", "foo"}};
  auto le = [&](const std::string& bound) {
    auto l = foo;
    l["le"] = bound;
    return value("envoy_cluster_upstream_rq_time_bucket", l);
  };
  EXPECT_EQ(le("0.5"), "0");
  EXPECT_EQ(le("5"), "1");
  EXPECT_EQ(le("10"), "2");
  EXPECT_EQ(le("3600000"), "2");
  EXPECT_EQ(le("+Inf"), "3");
  EXPECT_EQ(value("envoy_cluster_upstream_rq_time_sum", foo), "4000010");
  EXPECT_EQ(value("envoy_cluster_upstream_rq_time_count", foo), "3");

  // Counters come first, then gauges, then histograms.
  EXPECT_LT(text.find("# TYPE envoy_cluster_upstream_rq_total counter"),
            text.find("# TYPE envoy_server_live"));
  EXPECT_LT(text.find("# TYPE envoy_server_live"),
            text.find("# TYPE envoy_cluster_upstream_rq_time histogram"));
}

TEST(StatsPrometheus, SanitizesNamesAndEscapesLabels) {
  Store store(1);
  store.counter("cluster.outbound|80||a-b.svc.upstream_cx_total").inc();
  store.counter("tcp.we\"ird\\x.downstream_cx_total").inc();
  std::string text = renderPrometheus(store.snapshot());
  std::map<std::string, std::string> types;
  auto samples = parse(text, &types);
  // [^.]+ stops at the first dot, as in Envoy's default (Istio overrides cluster_name's regex).
  EXPECT_NE(findSample(samples, "envoy_cluster_svc_upstream_cx_total",
                       {{"envoy_cluster_name", "outbound|80||a-b"}}),
            nullptr)
      << text;
  EXPECT_NE(text.find("envoy_tcp_prefix=\"we\\\"ird\\\\x\""), std::string::npos) << text;
}

}  // namespace
}  // namespace skiff::stats
