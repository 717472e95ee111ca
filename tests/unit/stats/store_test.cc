// Store behaviour: per-thread recording, idempotent creation, gauges, histograms, reset.
#include <gtest/gtest.h>

#include <cmath>
#include <thread>
#include <vector>

#include "skiff/stats/stats.h"

namespace skiff::stats {
namespace {

// Restores the calling thread's slab so tests do not leak state into each other.
struct SlabGuard {
  explicit SlabGuard(uint32_t s) { setThreadSlab(s); }
  ~SlabGuard() { setThreadSlab(0); }
};

const StatValue* find(const std::vector<StatValue>& v, std::string_view name) {
  for (const auto& s : v) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

TEST(StatsStore, CounterSumsAcrossThreads) {
  constexpr uint32_t kWorkers = 4;
  constexpr uint64_t kPerThread = 200000;
  Store store(kWorkers + 1);
  Counter c = store.counter("cluster.foo.upstream_rq_total");
  std::vector<std::thread> threads;
  for (uint32_t w = 0; w < kWorkers; ++w) {
    threads.emplace_back([&, w] {
      setThreadSlab(w + 1);
      for (uint64_t i = 0; i < kPerThread; ++i) c.inc();
      c.inc(w);  // distinct amounts catch slab mix-ups
    });
  }
  c.inc(7);  // main thread, slab 0
  for (auto& t : threads) t.join();
  EXPECT_EQ(c.value(), kWorkers * kPerThread + 0 + 1 + 2 + 3 + 7);
}

TEST(StatsStore, CreationIsIdempotent) {
  Store store(2);
  Counter a = store.counter("a.b");
  Counter b = store.counter("a.b");
  a.inc(2);
  b.inc(3);
  EXPECT_EQ(a.value(), 5u);
  EXPECT_EQ(b.value(), 5u);
  Gauge g1 = store.gauge("g");
  Gauge g2 = store.gauge("g");
  g1.inc(4);
  EXPECT_EQ(g2.value(), 4);
  EXPECT_EQ(store.snapshot().size(), 2u);
}

TEST(StatsStore, TypeClashReturnsDetachedDummy) {
  Store store(1);
  Gauge g = store.gauge("x");
  g.set(9);
  Counter c = store.counter("x");  // programming error: logged, dummy returned
  c.inc(100);                      // safe, and invisible
  EXPECT_EQ(g.value(), 9);
  auto snap = store.snapshot();
  ASSERT_EQ(snap.size(), 1u);
  EXPECT_EQ(snap[0].type, StatType::kGauge);
  EXPECT_EQ(snap[0].gauge, 9);
}

TEST(StatsStore, DefaultConstructedHandlesAreNoOps) {
  Counter c;
  Gauge g;
  Histogram h;
  c.inc();
  g.inc();
  h.record(3);
  EXPECT_FALSE(c.valid());
  EXPECT_EQ(c.value(), 0u);
  EXPECT_EQ(g.value(), 0);
}

TEST(StatsStore, ConcurrentCreationAndRecording) {
  constexpr uint32_t kWorkers = 4;
  constexpr int kNames = 3000;  // > one chunk of cells, so chunks are added while others record
  Store store(kWorkers + 1);
  std::vector<std::thread> threads;
  for (uint32_t w = 0; w < kWorkers; ++w) {
    threads.emplace_back([&, w] {
      setThreadSlab(w + 1);
      for (int i = 0; i < kNames; ++i) {
        store.counter("c." + std::to_string(i)).inc();
        store.histogram("h." + std::to_string(i % 10)).record(i);
      }
    });
  }
  for (auto& t : threads) t.join();
  auto snap = store.snapshot();
  EXPECT_EQ(snap.size(), static_cast<size_t>(kNames + 10));
  for (int i = 0; i < kNames; i += 97) {
    EXPECT_EQ(store.counter("c." + std::to_string(i)).value(), kWorkers);
  }
  const StatValue* h = find(snap, "h.3");
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(h->histogram.sample_count, kWorkers * kNames / 10);
}

TEST(StatsStore, SnapshotIsSortedAndFiltered) {
  Store store(1);
  store.counter("b");
  store.gauge("a");
  store.counter("c").inc();
  store.setText("t", "v");
  auto all = store.snapshot();
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[0].name, "a");
  EXPECT_EQ(all[3].name, "t");
  EXPECT_EQ(all[3].text, "v");
  EXPECT_FALSE(all[1].used);
  EXPECT_TRUE(all[2].used);
  auto some = store.snapshot([](std::string_view n) { return n != "b"; });
  EXPECT_EQ(some.size(), 3u);
}

TEST(StatsStore, GaugeIncDecAcrossThreads) {
  Store store(3);
  Gauge g = store.gauge("http.ingress.downstream_cx_active");
  std::thread t1([&] {
    SlabGuard s(1);
    for (int i = 0; i < 1000; ++i) g.inc();
  });
  std::thread t2([&] {
    SlabGuard s(2);
    for (int i = 0; i < 400; ++i) g.dec();  // negative cell on this slab
  });
  t1.join();
  t2.join();
  EXPECT_EQ(g.value(), 600);
  g.set(-5);  // main thread: visible value becomes exactly -5
  EXPECT_EQ(g.value(), -5);
  g.dec(10);
  EXPECT_EQ(g.value(), -15);
}

TEST(StatsStore, ResetCountersKeepsRecordingCorrect) {
  Store store(2);
  Counter c = store.counter("c");
  Gauge g = store.gauge("g");
  c.inc(5);
  g.inc(5);
  {
    std::thread t([&] {
      SlabGuard s(1);
      c.inc(10);
    });
    t.join();
  }
  store.resetCounters();
  EXPECT_EQ(c.value(), 0u);
  EXPECT_EQ(g.value(), 5);  // gauges are untouched
  c.inc(3);
  EXPECT_EQ(c.value(), 3u);
  auto snap = store.snapshot();
  EXPECT_TRUE(find(snap, "c")->used);
}

TEST(StatsStore, HistogramBucketsAndQuantiles) {
  Store store(1);
  Histogram h = store.histogram("cluster.foo.upstream_rq_time");
  for (int i = 0; i < 100; ++i) h.record(7);  // bucket (5, 10]
  h.record(5000000);                          // overflow
  auto snap = store.snapshot();
  const auto& hs = snap[0].histogram;
  ASSERT_EQ(hs.bucket_counts.size(), defaultBuckets().size() + 1);
  EXPECT_EQ(hs.bucket_counts[3], 100u);
  EXPECT_EQ(hs.bucket_counts.back(), 1u);
  EXPECT_EQ(hs.sample_count, 101u);
  EXPECT_DOUBLE_EQ(hs.sample_sum, 700 + 5000000);
  // Interpolated in (5, 10]: the median rank 50.5 of 100 samples sits about half way.
  EXPECT_NEAR(hs.quantile(0.5), 5 + 5 * 50.5 / 100, 1e-9);
  EXPECT_DOUBLE_EQ(hs.quantile(0), 5);
  EXPECT_DOUBLE_EQ(hs.quantile(1), 3600000);
}

TEST(StatsStore, HistogramBucketEdges) {
  HistogramSnapshot empty;
  EXPECT_TRUE(std::isnan(empty.quantile(0.5)));
  Store store(1);
  Histogram h = store.histogram("h");
  h.record(0);  // le 0.5
  h.record(1);  // le 1
  h.record(5);  // le 5
  auto hs = store.snapshot()[0].histogram;
  EXPECT_EQ(hs.bucket_counts[0], 1u);
  EXPECT_EQ(hs.bucket_counts[1], 1u);
  EXPECT_EQ(hs.bucket_counts[2], 1u);
}

TEST(StatsStore, DefaultStoreIsSingleton) {
  initDefaultStore(3);
  EXPECT_EQ(&defaultStore(), &defaultStore());
  EXPECT_EQ(defaultStore().maxSlabs(), 3u);
}

}  // namespace
}  // namespace skiff::stats
