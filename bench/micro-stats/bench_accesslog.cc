// Cost of formatting one access-log line (Envoy's default and Istio's default formats, and JSON).
#include <benchmark/benchmark.h>

#include "skiff/accesslog/formatter.h"

namespace {

using namespace std::chrono_literals;

struct Fixture {
  Fixture() {
    req.add(":method", "GET");
    req.add(":path", "/productpage");
    req.add(":authority", "productpage:9080");
    req.add("user-agent", "curl/8.0");
    req.add("x-request-id", "0f4c2a9e-2f5e-4c71-9d2b-7d1b4c1e9a11");
    resp.add(":status", "200");
    resp.add("x-envoy-upstream-service-time", "3");
    info.request_headers = &req;
    info.response_headers = &resp;
    info.response_code = 200;
    info.last_downstream_tx = 4ms;
    info.upstream_host = "10.1.2.3:9080";
    info.upstream_cluster = "outbound|9080||productpage.default.svc.cluster.local";
    info.downstream_remote_address = "10.0.0.1:41000";
  }
  skiff::http::HeaderMap req, resp;
  skiff::http::StreamInfo info;
};

void run(benchmark::State& state, const skiff::accesslog::Formatter& f) {
  Fixture fx;
  std::string line;
  line.reserve(1024);
  for (auto _ : state) {
    line.clear();
    f.format(fx.info, line);
    benchmark::DoNotOptimize(line.data());
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_FormatEnvoyDefault(benchmark::State& state) {
  std::string error;
  auto f = skiff::accesslog::Formatter::parse(skiff::accesslog::Formatter::defaultFormat(), &error);
  run(state, *f);
}
BENCHMARK(BM_FormatEnvoyDefault);

void BM_FormatJson(benchmark::State& state) {
  std::string error;
  auto f = skiff::accesslog::Formatter::parseJson({{"start_time", "%START_TIME%"},
                                                   {"method", "%REQ(:METHOD)%"},
                                                   {"path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"},
                                                   {"response_code", "%RESPONSE_CODE%"},
                                                   {"duration", "%DURATION%"},
                                                   {"upstream_cluster", "%UPSTREAM_CLUSTER%"}},
                                                  &error);
  run(state, *f);
}
BENCHMARK(BM_FormatJson);

}  // namespace

BENCHMARK_MAIN();
