// istio.stats per-request cost: StatsRecorder::recordHttp for a label set already seen (the steady state:
// hash + thread-cache probe + 4 recordings), for a new label set each time (the slow path, bounded by the
// cardinality limit), and peer-metadata decoding with and without the cache.
// Run: build/bin/bench_istio_stats (numbers are noisy on a shared machine; rerun on a quiet one).
#include <benchmark/benchmark.h>

#include <google/protobuf/util/json_util.h>

#include "filters/istio/istio.h"

namespace {

using namespace skiff::filters::istio;

struct Fixture {
  skiff::stats::Store store{2};
  StatsRecorder recorder{[] {
                           StatsConfig c;
                           c.reporter = Reporter::kDestination;
                           return c;
                         }(),
                         store};
  WorkloadInfo peer;
  skiff::http::HeaderMap request, response;
  skiff::http::StreamInfo info;
  Fixture() {
    peer.workload_name = "productpage-v1";
    peer.namespace_name = "default";
    peer.app = "productpage";
    peer.version = "v1";
    peer.cluster_id = "Kubernetes";
    request.add(":authority", "reviews.default.svc.cluster.local:9080");
    request.add(":path", "/reviews/0");
    response.add(":status", "200");
    info.request_headers = &request;
    info.response_headers = &response;
    info.response_code = 200;
    info.upstream_cluster = "inbound|9080||";
    info.bytes_received = 0;
    info.bytes_sent = 358;
  }
};

void BM_RecordHttpSeenLabels(benchmark::State& state) {
  static Fixture* f = new Fixture();
  skiff::stats::setThreadSlab(1);
  f->recorder.recordHttp(f->info, &f->peer, false);  // first use: creates the series
  for (auto _ : state) f->recorder.recordHttp(f->info, &f->peer, false);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RecordHttpSeenLabels);

void BM_RecordHttpNewLabels(benchmark::State& state) {
  static Fixture* f = new Fixture();
  skiff::stats::setThreadSlab(1);
  uint32_t code = 0;
  for (auto _ : state) {
    f->info.response_code = 100 + (code++ % 8000);  // up to 8000 distinct sets, under the 10,000 bound
    f->recorder.recordHttp(f->info, &f->peer, false);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RecordHttpNewLabels)->Iterations(8000);

std::string exchangeHeader() {
  google::protobuf::Struct md;
  google::protobuf::util::JsonStringToMessage(
      R"({"NAME":"productpage-v1-6b746f74dc-9stvs","NAMESPACE":"default","WORKLOAD_NAME":"productpage-v1",
          "CLUSTER_ID":"Kubernetes","MESH_ID":"cluster.local","SERVICE_ACCOUNT":"bookinfo-productpage",
          "INSTANCE_IPS":"10.244.0.22","LABELS":{"app":"productpage","version":"v1",
          "security.istio.io/tlsMode":"istio","service.istio.io/canonical-name":"productpage",
          "service.istio.io/canonical-revision":"v1"}})",
      &md);
  return exchangeValue(md);
}

void BM_PeerDecodeUncached(benchmark::State& state) {
  const std::string h = exchangeHeader();
  for (auto _ : state) benchmark::DoNotOptimize(decodePeerMetadata(h));
}
BENCHMARK(BM_PeerDecodeUncached);

void BM_PeerDecodeCached(benchmark::State& state) {
  const std::string h = exchangeHeader();
  for (auto _ : state) benchmark::DoNotOptimize(cachedPeerMetadata(h));
}
BENCHMARK(BM_PeerDecodeCached);

}  // namespace

BENCHMARK_MAIN();
