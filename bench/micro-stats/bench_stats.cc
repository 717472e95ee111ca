// Recording cost of the stats store: Counter::inc, Gauge::inc, Histogram::record (ns/op), one thread per
// slab as workers run; plus snapshot + Prometheus rendering of a realistic number of stats.
#include <benchmark/benchmark.h>

#include <string>

#include "skiff/stats/stats.h"

namespace {

using skiff::stats::Store;

Store& store() {
  static Store* s = new Store(/*max_slabs=*/17);
  return *s;
}

void BM_CounterInc(benchmark::State& state) {
  skiff::stats::setThreadSlab(static_cast<uint32_t>(state.thread_index()) + 1);
  auto c = store().counter("cluster.foo.upstream_rq_total");
  for (auto _ : state) c.inc();
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CounterInc)->Threads(1)->Threads(2);

void BM_GaugeInc(benchmark::State& state) {
  skiff::stats::setThreadSlab(static_cast<uint32_t>(state.thread_index()) + 1);
  auto g = store().gauge("cluster.foo.upstream_rq_active");
  for (auto _ : state) g.inc();
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_GaugeInc);

void BM_HistogramRecord(benchmark::State& state) {
  skiff::stats::setThreadSlab(static_cast<uint32_t>(state.thread_index()) + 1);
  auto h = store().histogram("cluster.foo.upstream_rq_time");
  uint64_t v = 0;
  for (auto _ : state) h.record(v++ & 1023);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_HistogramRecord);

void BM_SnapshotAndRenderPrometheus(benchmark::State& state) {
  Store s(5);
  for (int c = 0; c < 100; ++c) {
    std::string p = "cluster.outbound|80||svc" + std::to_string(c) + ".";
    s.counter(p + "upstream_rq_total").inc();
    s.counter(p + "upstream_rq_200").inc();
    s.counter(p + "upstream_cx_total").inc();
    s.gauge(p + "upstream_cx_active").inc();
    s.histogram(p + "upstream_rq_time").record(12);
  }
  for (auto _ : state) {
    auto snap = s.snapshot();
    benchmark::DoNotOptimize(skiff::stats::renderPrometheus(snap));
  }
}
BENCHMARK(BM_SnapshotAndRenderPrometheus)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
