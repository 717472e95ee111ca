// Store::group: many names under one prefix behave exactly like individually created stats.
#include <gtest/gtest.h>

#include <thread>

#include "skiff/stats/stats.h"

namespace skiff::stats {
namespace {

const StatSpec kSpecs[] = {
    {"upstream_rq_total", StatType::kCounter},
    {"upstream_cx_active", StatType::kGauge},
    {"upstream_rq_time", StatType::kHistogram},
    {"membership_total", StatType::kGauge},
};
const StatSpec kOther[] = {{"circuit_breakers.default.cx_open", StatType::kGauge}};

const StatValue* find(const std::vector<StatValue>& v, std::string_view name) {
  for (const auto& s : v) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

TEST(StatGroup, NamesAreListedSortedWithTheirValues) {
  Store store(2);
  store.counter("aaa.first");
  auto g = store.group("cluster.a.", kSpecs);
  store.counter("zzz.last");
  g.counter(0).inc(3);
  g.gauge(1).inc(2);
  g.histogram(2).record(7);
  auto snap = store.snapshot();
  ASSERT_EQ(snap.size(), 6u);
  for (size_t i = 1; i < snap.size(); ++i) EXPECT_LT(snap[i - 1].name, snap[i].name);
  EXPECT_EQ(find(snap, "cluster.a.upstream_rq_total")->counter, 3u);
  EXPECT_TRUE(find(snap, "cluster.a.upstream_rq_total")->used);
  EXPECT_EQ(find(snap, "cluster.a.upstream_cx_active")->gauge, 2);
  EXPECT_EQ(find(snap, "cluster.a.upstream_rq_time")->histogram.sample_count, 1u);
  EXPECT_FALSE(find(snap, "cluster.a.membership_total")->used);
  auto filtered = store.snapshot([](std::string_view n) { return n.find("cx_active") != n.npos; });
  ASSERT_EQ(filtered.size(), 1u);
  EXPECT_EQ(filtered[0].name, "cluster.a.upstream_cx_active");
}

TEST(StatGroup, LookupByNameFindsTheGroupCell) {
  Store store(1);
  auto g = store.group("cluster.my.svc.", kSpecs);  // dots inside the prefix
  g.counter(0).inc();
  Counter same = store.counter("cluster.my.svc.upstream_rq_total");
  same.inc();
  EXPECT_EQ(g.counter(0).value(), 2u);
  // A different type is a clash: a detached handle, the group's value is untouched.
  Gauge clash = store.gauge("cluster.my.svc.upstream_rq_total");
  clash.inc(5);
  EXPECT_EQ(same.value(), 2u);
  // Names the group does not have are ordinary stats.
  store.counter("cluster.my.svc.upstream_rq_200").inc();
  EXPECT_EQ(store.snapshot().size(), 5u);
}

TEST(StatGroup, RegisteringAgainSharesTheCells) {
  Store store(1);
  store.group("cluster.a.", kSpecs).counter(0).inc();
  auto again = store.group("cluster.a.", kSpecs);
  EXPECT_EQ(again.counter(0).value(), 1u);
  // Another schema under the same prefix lives side by side.
  store.group("cluster.a.", kOther).gauge(0).inc();
  EXPECT_EQ(store.gauge("cluster.a.circuit_breakers.default.cx_open").value(), 1);
  EXPECT_EQ(store.snapshot().size(), 5u);
}

TEST(StatGroup, ExistingNamesAreSharedNotDuplicated) {
  Store store(1);
  Counter early = store.counter("cluster.b.upstream_rq_total");
  early.inc(4);
  auto g = store.group("cluster.b.", kSpecs);
  EXPECT_EQ(g.counter(0).value(), 4u);
  g.counter(0).inc();
  EXPECT_EQ(early.value(), 5u);
  auto snap = store.snapshot();
  EXPECT_EQ(snap.size(), 4u);  // one entry per name
}

TEST(StatGroup, ResetAndThreadsWork) {
  Store store(3);
  auto g = store.group("cluster.c.", kSpecs);
  Counter c = g.counter(0);
  std::thread t([&] {
    setThreadSlab(1);
    for (int i = 0; i < 1000; ++i) c.inc();
    setThreadSlab(0);
  });
  c.inc(10);
  t.join();
  EXPECT_EQ(c.value(), 1010u);
  store.resetCounters();
  EXPECT_EQ(c.value(), 0u);
  c.inc();
  EXPECT_EQ(store.counter("cluster.c.upstream_rq_total").value(), 1u);
}

TEST(StatGroup, HandlesOfManyStoresStayApart) {
  // Handles carry a store id; stores come and go (ids are reused) without mixing values.
  for (int round = 0; round < 3; ++round) {
    Store a(1), b(1);
    Counter ca = a.counter("x");
    Counter cb = b.counter("x");
    ca.inc(1);
    cb.inc(2);
    EXPECT_EQ(ca.value(), 1u);
    EXPECT_EQ(cb.value(), 2u);
  }
}

TEST(StatGroup, InterleavedSchemasOverManyChunksKeepTheirValues) {
  // Runs of each schema are packed into chunks of their own: thousands of clusters registering two
  // schemas in turn must still land every value on its own name.
  Store store(2);
  std::vector<StatGroup> a, b;
  const int n = 3000;  // > one 4096-cell chunk for kSpecs (24 cells each)
  for (int i = 0; i < n; ++i) {
    const std::string prefix = "cluster.c" + std::to_string(i) + ".";
    a.push_back(store.group(prefix, kSpecs));
    b.push_back(store.group(prefix, kOther));
    store.counter(prefix + "loose");  // a by-name stat between the groups
  }
  for (int i = 0; i < n; ++i) {
    a[i].counter(0).inc(i + 1);
    a[i].histogram(2).record(7);
    b[i].gauge(0).set(i);
  }
  for (int i = 0; i < n; i += 499) {
    const std::string prefix = "cluster.c" + std::to_string(i) + ".";
    EXPECT_EQ(store.counter(prefix + "upstream_rq_total").value(), static_cast<uint64_t>(i + 1));
    EXPECT_EQ(store.gauge(prefix + "circuit_breakers.default.cx_open").value(), i);
    EXPECT_EQ(store.gauge(prefix + "membership_total").value(), 0);
    EXPECT_EQ(store.counter(prefix + "loose").value(), 0u);
  }
  const auto all =
      store.snapshot([](std::string_view name) { return name == "cluster.c2999.upstream_rq_time"; });
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].histogram.sample_count, 1u);
}

}  // namespace
}  // namespace skiff::stats
