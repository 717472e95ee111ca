// Route actions: cluster choice, rewrites, redirects, direct responses, timeouts, retries, mirrors.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>

#include "test_util.h"

namespace skiff::router {
namespace {

using testing::expectConfigError;
using testing::makeTable;
using testing::request;
using testing::tableWithRoutes;

const RouteEntry& only(const RouteTable& t, std::string_view path = "/") {
  const RouteEntry* e = t.route(request("host", path), 0);
  EXPECT_NE(e, nullptr);
  static const RouteEntry kNone;
  return e ? *e : kNone;
}

TEST(RouterClusterTest, WeightedDistributionIsDeterministic) {
  auto t = tableWithRoutes(R"([{"match":{"prefix":"/"},"route":{"weighted_clusters":{"clusters":[
      {"name":"a","weight":1},{"name":"b","weight":2},{"name":"c","weight":7}]}}}])");
  const RouteEntry& e = only(*t);
  EXPECT_EQ(e.total_weight, 10u);
  std::map<std::string, int> counts;
  for (uint64_t r = 0; r < 1000; ++r) counts[e.pickCluster(request("h", "/"), r)]++;
  EXPECT_EQ(counts["a"], 100);
  EXPECT_EQ(counts["b"], 200);
  EXPECT_EQ(counts["c"], 700);
  EXPECT_EQ(e.pickCluster(request("h", "/"), 0), "a");
  EXPECT_EQ(e.pickCluster(request("h", "/"), 1), "b");
  EXPECT_EQ(e.pickCluster(request("h", "/"), 2), "b");
  EXPECT_EQ(e.pickCluster(request("h", "/"), 3), "c");
  EXPECT_EQ(e.pickCluster(request("h", "/"), 19), "c");
}

TEST(RouterClusterTest, WeightedRandomFromHeaderAndClusterHeader) {
  auto t = tableWithRoutes(R"([{"match":{"prefix":"/"},"route":{"weighted_clusters":{"header_name":"x-rand",
      "clusters":[{"name":"a","weight":50},{"cluster_header":"x-target","weight":50}]}}}])");
  const RouteEntry& e = only(*t);
  EXPECT_EQ(e.pickCluster(request("h", "/", {{"x-rand", "10"}}), 99), "a");
  EXPECT_EQ(e.pickCluster(request("h", "/", {{"x-rand", "60"}, {"x-target", "dyn"}}), 0), "dyn");
  EXPECT_EQ(e.pickCluster(request("h", "/", {{"x-rand", "bad"}}), 70), "");  // header missing → ""
}

TEST(RouterClusterTest, ClusterHeaderAndErrors) {
  auto t = tableWithRoutes(
      R"([{"match":{"prefix":"/"},"route":{"cluster_header":"X-Cluster","cluster_not_found_response_code":"NOT_FOUND"}}])");
  EXPECT_EQ(only(*t).pickCluster(request("h", "/", {{"x-cluster", "east"}}), 0), "east");
  EXPECT_EQ(only(*t).cluster_not_found_response_code, 404u);
  EXPECT_EQ(only(*t).pickCluster(request("h", "/"), 0), "");
  expectConfigError(R"({"virtual_hosts":[{"domains":["*"],"routes":[{"match":{"prefix":"/"},"route":{
      "weighted_clusters":{"clusters":[{"name":"a","weight":0}]}}}]}]})",
                    "virtual_hosts[0].routes[0].route.weighted_clusters: sum of weights");
  expectConfigError(R"({"virtual_hosts":[{"domains":["*"],"routes":[{"match":{"prefix":"/"},"route":{
      "weighted_clusters":{"total_weight":100,"clusters":[{"name":"a","weight":10}]}}}]}]})",
                    "total_weight");
}

TEST(RouterRewriteTest, PrefixRewriteSetsOriginalPath) {
  auto t = tableWithRoutes(R"([
    {"name":"p","match":{"prefix":"/old/"},"route":{"cluster":"a","prefix_rewrite":"/new/"}},
    {"name":"ci","match":{"prefix":"/UP","case_sensitive":false},"route":{"cluster":"a","prefix_rewrite":"/down"}},
    {"name":"exact","match":{"path":"/x"},"route":{"cluster":"a","prefix_rewrite":"/y"}},
    {"name":"same","match":{"prefix":"/same"},"route":{"cluster":"a","prefix_rewrite":"/same"}}])");
  auto h = request("h", "/old/a/b?q=1");
  t->route(h, 0)->rewritePathAndHost(h);
  EXPECT_EQ(h.getOr(":path"), "/new/a/b?q=1");
  EXPECT_EQ(h.getOr("x-envoy-original-path"), "/old/a/b?q=1");

  h = request("h", "/up/z");
  t->route(h, 0)->rewritePathAndHost(h);
  EXPECT_EQ(h.getOr(":path"), "/down/z");

  h = request("h", "/x?k");
  t->route(h, 0)->rewritePathAndHost(h);
  EXPECT_EQ(h.getOr(":path"), "/y?k");

  h = request("h", "/same/1");
  t->route(h, 0)->rewritePathAndHost(h);
  EXPECT_EQ(h.getOr(":path"), "/same/1");
  EXPECT_EQ(h.get("x-envoy-original-path"), nullptr);  // unchanged path, no header
}

TEST(RouterRewriteTest, RegexRewriteOnPathWithoutQuery) {
  auto t = tableWithRoutes(R"([
    {"match":{"prefix":"/"},"route":{"cluster":"a",
      "regex_rewrite":{"pattern":{"regex":"^/service/([^/]+)(/.*)$"},"substitution":"\\2/instance/\\1"}}}])");
  auto h = request("h", "/service/foo/v1/api?x=/service/a/b");
  t->route(h, 0)->rewritePathAndHost(h);
  EXPECT_EQ(h.getOr(":path"), "/v1/api/instance/foo?x=/service/a/b");
  EXPECT_EQ(h.getOr("x-envoy-original-path"), "/service/foo/v1/api?x=/service/a/b");

  auto g = tableWithRoutes(R"([{"match":{"prefix":"/"},"route":{"cluster":"a",
      "regex_rewrite":{"pattern":{"regex":"o"},"substitution":"0"}}}])");
  h = request("h", "/foo/boo?o");
  g->route(h, 0)->rewritePathAndHost(h);
  EXPECT_EQ(h.getOr(":path"), "/f00/b00?o");  // global replace, query untouched
}

TEST(RouterRewriteTest, RegexMatchWithPrefixRewriteReplacesWholePath) {
  auto t = tableWithRoutes(
      R"([{"match":{"safe_regex":{"regex":"/a/.*"}},"route":{"cluster":"a","prefix_rewrite":"/z"}}])");
  auto h = request("h", "/a/b/c?q");
  t->route(h, 0)->rewritePathAndHost(h);
  EXPECT_EQ(h.getOr(":path"), "/z?q");
}

TEST(RouterRewriteTest, HostRewrites) {
  auto t = tableWithRoutes(R"([
    {"match":{"prefix":"/lit"},"route":{"cluster":"a","host_rewrite_literal":"new.host","append_x_forwarded_host":true}},
    {"match":{"prefix":"/hdr"},"route":{"cluster":"a","host_rewrite_header":"x-host"}},
    {"match":{"prefix":"/re"},"route":{"cluster":"a","host_rewrite_path_regex":{"pattern":{"regex":"^/re/([^/]+).*$"},"substitution":"\\1.svc"}}},
    {"match":{"prefix":"/auto"},"route":{"cluster":"a","auto_host_rewrite":true}}])");
  auto h = request("orig.host", "/lit");
  t->route(h, 0)->rewritePathAndHost(h);
  EXPECT_EQ(h.getOr(":authority"), "new.host");
  EXPECT_EQ(h.getOr("x-forwarded-host"), "orig.host");

  h = request("orig.host", "/hdr", {{"x-host", "from.header"}});
  t->route(h, 0)->rewritePathAndHost(h);
  EXPECT_EQ(h.getOr(":authority"), "from.header");
  EXPECT_EQ(h.get("x-forwarded-host"), nullptr);
  h = request("orig.host", "/hdr");
  t->route(h, 0)->rewritePathAndHost(h);
  EXPECT_EQ(h.getOr(":authority"), "orig.host");  // missing header: host kept

  h = request("orig.host", "/re/backend/x?y");
  t->route(h, 0)->rewritePathAndHost(h);
  EXPECT_EQ(h.getOr(":authority"), "backend.svc");

  h = request("orig.host", "/auto");
  EXPECT_TRUE(t->route(h, 0)->auto_host_rewrite);
}

TEST(RouterRedirectTest, LocationAndCodes) {
  auto t = tableWithRoutes(R"([
    {"name":"https","match":{"prefix":"/https"},"redirect":{"https_redirect":true}},
    {"name":"host","match":{"prefix":"/host"},"redirect":{"host_redirect":"other.com","response_code":"FOUND"}},
    {"name":"port","match":{"prefix":"/port"},"redirect":{"port_redirect":8443,"scheme_redirect":"https","response_code":"SEE_OTHER"}},
    {"name":"path","match":{"prefix":"/path"},"redirect":{"path_redirect":"/new","response_code":"TEMPORARY_REDIRECT"}},
    {"name":"pathq","match":{"prefix":"/pq"},"redirect":{"path_redirect":"/new?a=b","strip_query":true,"response_code":"PERMANENT_REDIRECT"}},
    {"name":"strip","match":{"prefix":"/strip"},"redirect":{"strip_query":true}},
    {"name":"prefix","match":{"prefix":"/pre/"},"redirect":{"prefix_rewrite":"/post/"}},
    {"name":"regex","match":{"prefix":"/rx"},"redirect":{"regex_rewrite":{"pattern":{"regex":"^/rx/(.*)$"},"substitution":"/r/\\1"}}}])");
  auto loc = [&](std::string_view authority, std::string_view path, std::string_view scheme = "http") {
    auto h = request(authority, path);
    const RouteEntry* e = t->route(h, 0);
    EXPECT_EQ(e->kind, RouteEntry::Kind::kRedirect);
    return std::make_pair(e->redirectLocation(h, scheme), e->redirect_code);
  };
  EXPECT_EQ(loc("a.com:80", "/https?x=1"), std::make_pair(std::string("https://a.com/https?x=1"), 301u));
  EXPECT_EQ(loc("a.com:8080", "/https").first, "https://a.com:8080/https");  // non-default port kept
  EXPECT_EQ(loc("a.com", "/host/x").first, "http://other.com/host/x");
  EXPECT_EQ(loc("a.com", "/host/x").second, 302u);
  EXPECT_EQ(loc("a.com:80", "/port"), std::make_pair(std::string("https://a.com:8443/port"), 303u));
  EXPECT_EQ(loc("a.com", "/path/1?q=2"), std::make_pair(std::string("http://a.com/new?q=2"), 307u));
  EXPECT_EQ(loc("a.com", "/pq?q=2"), std::make_pair(std::string("http://a.com/new?a=b"), 308u));
  EXPECT_EQ(loc("a.com", "/strip/x?q=2").first, "http://a.com/strip/x");
  EXPECT_EQ(loc("a.com", "/pre/a/b?c").first, "http://a.com/post/a/b?c");
  EXPECT_EQ(loc("a.com", "/rx/y?z").first, "http://a.com/r/y?z");
  EXPECT_EQ(loc("[::1]:443", "/https", "https").first, "https://[::1]:443/https");
}

TEST(RouterDirectResponseTest, InlineFileAndLimit) {
  const std::string file = ::testing::TempDir() + "/router_body.txt";
  {
    std::ofstream out(file);
    out << "from file";
  }
  auto t = tableWithRoutes(R"([
    {"name":"inline","match":{"path":"/i"},"direct_response":{"status":200,"body":{"inline_string":"hello"}}},
    {"name":"file","match":{"path":"/f"},"direct_response":{"status":503,"body":{"filename":")" +
                           file + R"("}}},
    {"name":"created","match":{"path":"/c"},"direct_response":{"status":201}},
    {"name":"nf","match":{"path":"/n"},"non_forwarding_action":{}}])");
  const RouteEntry* e = t->route(request("h", "/i"), 0);
  EXPECT_EQ(e->kind, RouteEntry::Kind::kDirectResponse);
  EXPECT_EQ(e->direct_response_status, 200u);
  EXPECT_EQ(e->direct_response_body, "hello");
  EXPECT_FALSE(e->addsLocationHeader());
  e = t->route(request("h", "/f"), 0);
  EXPECT_EQ(e->direct_response_status, 503u);
  EXPECT_EQ(e->direct_response_body, "from file");
  e = t->route(request("h", "/c"), 0);
  EXPECT_TRUE(e->addsLocationHeader());
  EXPECT_EQ(e->redirectLocation(request("h", "/c"), "http"), "http://h/c");
  EXPECT_EQ(t->route(request("h", "/n"), 0)->kind, RouteEntry::Kind::kNonForwarding);
  std::remove(file.c_str());

  const std::string big(5000, 'x');
  expectConfigError(R"({"virtual_hosts":[{"domains":["*"],"routes":[{"match":{"prefix":"/"},
      "direct_response":{"status":200,"body":{"inline_string":")" +
                        big + R"("}}}]}]})",
                    "maximum is 4096");
  EXPECT_NO_THROW(makeTable(R"({"max_direct_response_body_size_bytes":6000,"virtual_hosts":[{"domains":["*"],
      "routes":[{"match":{"prefix":"/"},"direct_response":{"status":200,"body":{"inline_string":")" +
                            big + R"("}}}]}]})"));
  expectConfigError(R"({"virtual_hosts":[{"domains":["*"],"routes":[{"match":{"prefix":"/"},
      "direct_response":{"status":200,"body":{"filename":"/nonexistent/x"}}}]}]})",
                    "direct_response.body.filename");
}

TEST(RouterTimeoutTest, DefaultsAndOverrides) {
  auto t = tableWithRoutes(R"([
    {"match":{"path":"/default"},"route":{"cluster":"a"}},
    {"match":{"path":"/off"},"route":{"cluster":"a","timeout":"0s"}},
    {"match":{"path":"/set"},"route":{"cluster":"a","timeout":"2.5s","idle_timeout":"30s",
      "max_stream_duration":{"max_stream_duration":"60s","grpc_timeout_header_max":"5s"}}}])");
  EXPECT_EQ(only(*t, "/default").timeout.count(), 15000);
  EXPECT_FALSE(only(*t, "/default").idle_timeout.has_value());
  EXPECT_EQ(only(*t, "/off").timeout.count(), 0);
  const RouteEntry& e = only(*t, "/set");
  EXPECT_EQ(e.timeout.count(), 2500);
  EXPECT_EQ(e.idle_timeout->count(), 30000);
  EXPECT_EQ(e.max_stream_duration->count(), 60000);
  EXPECT_EQ(e.max_grpc_timeout->count(), 5000);
}

TEST(RouterRetryPolicyTest, ParseAndStatus) {
  EXPECT_EQ(RetryPolicy::parseRetryOn("5xx, connect-failure,bogus,retriable-status-codes"),
            RetryPolicy::k5xx | RetryPolicy::kConnectFailure | RetryPolicy::kRetriableStatusCodes);
  EXPECT_EQ(RetryPolicy::parseRetryOn("cancelled,deadline-exceeded,resource-exhausted,unavailable,internal"),
            RetryPolicy::kGrpcCancelled | RetryPolicy::kGrpcDeadlineExceeded |
                RetryPolicy::kGrpcResourceExhausted | RetryPolicy::kGrpcUnavailable |
                RetryPolicy::kGrpcInternal);
  RetryPolicy p;
  p.retry_on = RetryPolicy::kGatewayError | RetryPolicy::kRetriable4xx;
  EXPECT_TRUE(p.shouldRetryStatus(503));
  EXPECT_FALSE(p.shouldRetryStatus(500));
  EXPECT_TRUE(p.shouldRetryStatus(409));
  p.retry_on = RetryPolicy::k5xx | RetryPolicy::kRetriableStatusCodes;
  p.retriable_status_codes = {418};
  EXPECT_TRUE(p.shouldRetryStatus(500));
  EXPECT_TRUE(p.shouldRetryStatus(418));
  EXPECT_FALSE(p.shouldRetryStatus(404));
}

TEST(RouterRetryPolicyTest, RouteOverridesVirtualHostEntirely) {
  auto t = makeTable(R"({"virtual_hosts":[{"name":"v","domains":["*"],
      "retry_policy":{"retry_on":"5xx","num_retries":5,"retry_back_off":{"base_interval":"0.1s"}},
      "routes":[
        {"match":{"path":"/vh"},"route":{"cluster":"a"}},
        {"match":{"path":"/route"},"route":{"cluster":"a","retry_policy":{"retry_on":"reset",
          "per_try_timeout":"0.25s","retriable_status_codes":[503],"host_selection_retry_max_attempts":3,
          "retry_host_predicate":[{"name":"envoy.retry_host_predicates.previous_hosts"}]}}}]}]})");
  const RouteEntry& vh = only(*t, "/vh");
  EXPECT_TRUE(vh.has_retry_policy);
  EXPECT_EQ(vh.retry_policy.retry_on, RetryPolicy::k5xx);
  EXPECT_EQ(vh.retry_policy.num_retries, 5u);
  EXPECT_EQ(vh.retry_policy.base_interval.count(), 100);
  EXPECT_EQ(vh.retry_policy.max_interval.count(), 1000);  // 10x base
  const RouteEntry& r = only(*t, "/route");
  EXPECT_EQ(r.retry_policy.retry_on, RetryPolicy::kReset);
  EXPECT_EQ(r.retry_policy.num_retries, 1u);  // vhost's 5 is not merged in
  EXPECT_EQ(r.retry_policy.per_try_timeout.count(), 250);
  EXPECT_EQ(r.retry_policy.base_interval.count(), 25);
  EXPECT_EQ(r.retry_policy.retriable_status_codes, std::vector<uint32_t>{503});
  EXPECT_EQ(r.retry_policy.host_selection_retry_max_attempts, 3u);
  EXPECT_TRUE(r.retry_policy.retry_other_hosts);

  auto none = tableWithRoutes(R"([{"match":{"prefix":"/"},"route":{"cluster":"a"}}])");
  EXPECT_FALSE(only(*none).has_retry_policy);
  expectConfigError(
      R"({"virtual_hosts":[{"domains":["*"],"routes":[{"match":{"prefix":"/"},"route":{"cluster":"a",
      "retry_policy":{"retry_back_off":{"base_interval":"1s","max_interval":"0.5s"}}}}]}]})",
      "routes[0].route.retry_policy.retry_back_off.max_interval");
}

TEST(RouterMirrorTest, MostSpecificListWins) {
  auto t = makeTable(R"({"request_mirror_policies":[{"cluster":"global"}],"virtual_hosts":[
      {"name":"v","domains":["v"],"request_mirror_policies":[{"cluster":"vh",
        "runtime_fraction":{"default_value":{"numerator":10}}}],
       "routes":[{"match":{"path":"/r"},"route":{"cluster":"a","request_mirror_policies":[{"cluster":"route"}]}},
                 {"match":{"path":"/v"},"route":{"cluster":"a"}}]},
      {"name":"w","domains":["w"],"routes":[{"match":{"prefix":"/"},"route":{"cluster":"a"}}]}]})");
  auto mirrors = [&](std::string_view host, std::string_view path) {
    const RouteEntry* e = t->route(request(host, path), 0);
    std::string out;
    for (const auto& m : e->mirror_policies) out += m.cluster + ";";
    return out;
  };
  EXPECT_EQ(mirrors("v", "/r"), "route;");
  EXPECT_EQ(mirrors("v", "/v"), "vh;");
  EXPECT_EQ(mirrors("w", "/"), "global;");
  const MirrorPolicy& m = t->route(request("v", "/v"), 0)->mirror_policies[0];
  EXPECT_TRUE(m.enabled(9));
  EXPECT_FALSE(m.enabled(10));
}

TEST(RouterRequireTlsTest, RedirectsPlainRequests) {
  auto t = makeTable(R"({"virtual_hosts":[
      {"name":"all","domains":["all","all:80"],"require_tls":"ALL","routes":[{"name":"r","match":{"prefix":"/"},"route":{"cluster":"a"}}]},
      {"name":"ext","domains":["ext"],"require_tls":"EXTERNAL_ONLY","routes":[{"name":"r","match":{"prefix":"/"},"route":{"cluster":"a"}}]}]})");
  auto h = request("all:80", "/x?y");
  const RouteEntry* e = t->route(h, 0);
  ASSERT_NE(e, nullptr);
  ASSERT_EQ(e->kind, RouteEntry::Kind::kRedirect);
  EXPECT_EQ(e->redirectLocation(h, "http"), "https://all/x?y");
  EXPECT_EQ(t->route(request("all", "/", {{"x-forwarded-proto", "https"}}), 0)->name, "r");
  EXPECT_EQ(t->route(request("ext", "/", {{"x-envoy-internal", "true"}}), 0)->name, "r");
  EXPECT_EQ(t->route(request("ext", "/"), 0)->kind, RouteEntry::Kind::kRedirect);
}

TEST(RouterTypedPerFilterConfigTest, OutlivesTheInputMessage) {
  std::shared_ptr<const RouteTable> t;
  {
    auto config = testing::parseConfig(R"({"virtual_hosts":[{"name":"v","domains":["*"],
        "typed_per_filter_config":{"f.vh":{"@type":"type.googleapis.com/google.protobuf.StringValue","value":"vh"}},
        "routes":[{"match":{"prefix":"/"},"route":{"cluster":"a"},
          "typed_per_filter_config":{"f.route":{"@type":"type.googleapis.com/google.protobuf.StringValue","value":"r"}}}]}]})");
    t = RouteTable::create(config);
  }
  const RouteEntry& e = only(*t);
  ASSERT_NE(e.typed_per_filter_config, nullptr);
  EXPECT_EQ(e.typed_per_filter_config->count("f.route"), 1u);
  ASSERT_NE(e.virtual_host->typed_per_filter_config, nullptr);
  EXPECT_EQ(e.virtual_host->typed_per_filter_config->count("f.vh"), 1u);
}

TEST(RouterMetadataTest, RouteMetadataOutlivesTheInputMessage) {
  std::shared_ptr<const RouteTable> t;
  {
    auto config = testing::parseConfig(R"({"virtual_hosts":[{"name":"v","domains":["*"],
        "routes":[{"match":{"prefix":"/a"},"route":{"cluster":"a"},
                   "metadata":{"filter_metadata":{"envoy.filters.http.lua":{"foo.bar":{"foo":"bar"}}}}},
                  {"match":{"prefix":"/"},"route":{"cluster":"b"}}]}]})");
    t = RouteTable::create(config);
  }
  const RouteEntry* with = t->route(request("h", "/a"), 0);
  ASSERT_NE(with, nullptr);
  ASSERT_NE(with->metadata, nullptr);
  const auto& fm = with->metadata->filter_metadata();
  ASSERT_EQ(fm.count("envoy.filters.http.lua"), 1u);
  EXPECT_EQ(
      fm.at("envoy.filters.http.lua").fields().at("foo.bar").struct_value().fields().at("foo").string_value(),
      "bar");
  const RouteEntry* without = t->route(request("h", "/b"), 0);
  ASSERT_NE(without, nullptr);
  EXPECT_EQ(without->metadata, nullptr);
}

}  // namespace
}  // namespace skiff::router
