// Micro-benchmark: RouteTable::route() over a 200-route table (prefix, path, regex and header routes).
#include <benchmark/benchmark.h>
#include <google/protobuf/util/json_util.h>

#include <stdexcept>
#include <string>

#include "envoy/config/route/v3/route.pb.h"
#include "skiff/router/route_table.h"

namespace {

using skiff::router::RouteTable;

// 20 virtual hosts (exact and wildcard domains) in front; the measured vhost "svc.local" has 200 routes, a
// quarter of each kind, so a request for route i walks i routes.
std::shared_ptr<const RouteTable> buildTable() {
  std::string vhosts;
  for (int v = 0; v < 10; ++v) {
    vhosts += R"({"name":"other)" + std::to_string(v) + R"(","domains":["host)" + std::to_string(v) +
              R"(.example.com","*.wild)" + std::to_string(v) + R"(.com"],"routes":[{"match":{"prefix":"/"},
              "route":{"cluster":"x"}}]},)";
  }
  std::string routes;
  for (int i = 0; i < 200; ++i) {
    const std::string n = std::to_string(i);
    std::string match;
    switch (i % 4) {
      case 0:
        match = R"({"prefix":"/api/v1/service)" + n + R"(/"})";
        break;
      case 1:
        match = R"({"path":"/exact/resource)" + n + R"("})";
        break;
      case 2:
        match = R"({"safe_regex":{"regex":"/items/)" + n + R"(/[0-9]+"}})";
        break;
      default:
        match = R"({"prefix":"/hdr)" + n + R"(","headers":[{"name":"x-tenant","string_match":{"exact":"t)" +
                n + R"("}}]})";
    }
    if (!routes.empty()) routes += ",";
    routes += R"({"name":"r)" + n + R"(","match":)" + match + R"(,"route":{"cluster":"c)" + n + R"("}})";
  }
  const std::string json = R"({"name":"bench","virtual_hosts":[)" + vhosts +
                           R"({"name":"svc","domains":["svc.local","svc.local:80"],"routes":[)" + routes +
                           "]}]}";
  envoy::config::route::v3::RouteConfiguration config;
  if (!google::protobuf::util::JsonStringToMessage(json, &config).ok()) throw std::runtime_error("bad json");
  return RouteTable::create(config);
}

skiff::http::HeaderMap makeRequest(const std::string& path, bool tenant = false) {
  skiff::http::HeaderMap h;
  h.add(":method", "GET");
  h.add(":scheme", "http");
  h.add(":authority", "svc.local");
  h.add(":path", path);
  h.add("user-agent", "bench");
  h.add("accept", "*/*");
  if (tenant) h.add("x-tenant", "t199");
  return h;
}

void runMatch(benchmark::State& state, const skiff::http::HeaderMap& req, const char* expect) {
  static const auto table = buildTable();
  const auto* e = table->route(req, 42);
  if ((e ? e->name : std::string("<none>")) != expect) state.SkipWithError("unexpected route");
  uint64_t r = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(table->route(req, ++r));
  }
}

void BM_FirstRoute(benchmark::State& s) {
  runMatch(s, makeRequest("/api/v1/service0/users?x=1"), "r0");
}
void BM_MiddlePrefixRoute(benchmark::State& s) {
  runMatch(s, makeRequest("/api/v1/service100/users"), "r100");
}
void BM_LastPathRoute(benchmark::State& s) {
  runMatch(s, makeRequest("/exact/resource197"), "r197");
}
void BM_LastRegexRoute(benchmark::State& s) {
  runMatch(s, makeRequest("/items/198/12345"), "r198");
}
void BM_LastHeaderRoute(benchmark::State& s) {
  runMatch(s, makeRequest("/hdr199/x", true), "r199");
}
void BM_NoRoute(benchmark::State& s) {
  runMatch(s, makeRequest("/nothing/here"), "<none>");
}

BENCHMARK(BM_FirstRoute);
BENCHMARK(BM_MiddlePrefixRoute);
BENCHMARK(BM_LastPathRoute);
BENCHMARK(BM_LastRegexRoute);
BENCHMARK(BM_LastHeaderRoute);
BENCHMARK(BM_NoRoute);

}  // namespace

BENCHMARK_MAIN();
