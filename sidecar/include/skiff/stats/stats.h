// Stats: counters, gauges and histograms named as Envoy names them, written by workers without locks.
//
// Every thread that records stats (main thread and each worker) owns a slab of cells. A stat is an index
// into the slabs; recording touches only the calling thread's cell (a plain add on its own cache lines),
// and a reader (admin, Prometheus) sums the cells of all slabs. Stats are created by name, idempotently:
// asking twice for "cluster.x.upstream_rq_total" returns the same counter. Creation takes a mutex and may
// happen on any thread (e.g. the first 503 of a cluster); recording never does.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace skiff::stats {

class Store;

// Index of a thread's slab. The main thread is 0; worker N (0-based) is N + 1.
void setThreadSlab(uint32_t slab_index);

class Counter {
 public:
  Counter() = default;
  void inc(uint64_t n = 1) const;
  // Sum over all slabs (reader side).
  uint64_t value() const;
  bool valid() const { return store_ != 0; }

 private:
  friend class Store;
  friend class StatGroup;
  friend class CompactStatGroup;
  Counter(Store* store, uint32_t cell);
  uint32_t store_ = 0;  // Store::handleId(): a handle is 8 bytes (thousands of clusters hold ~70 each)
  uint32_t cell_ = 0;
};

class Gauge {
 public:
  Gauge() = default;
  void inc(int64_t n = 1) const;
  void dec(int64_t n = 1) const;
  // Set is for gauges that one thread owns (server.uptime, server.state, circuit breaker open flags
  // written by the owning worker...). A set() overwrites the calling thread's cell only.
  void set(int64_t v) const;
  int64_t value() const;
  bool valid() const { return store_ != 0; }

 private:
  friend class Store;
  friend class StatGroup;
  friend class CompactStatGroup;
  Gauge(Store* store, uint32_t cell);
  uint32_t store_ = 0;  // Store::handleId(): a handle is 8 bytes (thousands of clusters hold ~70 each)
  uint32_t cell_ = 0;
};

// Fixed-bucket histogram with Envoy's default bucket bounds (0.5 ... 3600000); quantiles are interpolated
// within buckets on read.
class Histogram {
 public:
  enum class Unit { kMilliseconds, kMicroseconds, kBytes, kUnspecified };
  Histogram() = default;
  void record(uint64_t value) const;
  bool valid() const { return store_ != 0; }

 private:
  friend class Store;
  friend class StatGroup;
  friend class CompactStatGroup;
  Histogram(Store* store, uint32_t first_cell);
  uint32_t store_ = 0;  // Store::handleId(): a handle is 8 bytes (thousands of clusters hold ~70 each)
  uint32_t first_cell_ = 0;
};

// Envoy's default histogram bucket upper bounds.
const std::vector<double>& defaultBuckets();

struct HistogramSnapshot {
  std::vector<uint64_t> bucket_counts;  // one per bound in defaultBuckets(), plus overflow last
  uint64_t sample_count = 0;
  double sample_sum = 0;
  // Interpolated quantile (q in [0,1]); NaN when empty.
  double quantile(double q) const;
};

enum class StatType { kCounter, kGauge, kHistogram, kTextReadout };

// One stat as a reader sees it.
struct StatValue {
  std::string name;
  StatType type;
  uint64_t counter = 0;
  int64_t gauge = 0;
  HistogramSnapshot histogram;
  std::string text;
  bool used = false;  // ever changed
};

// One stat of a group: "<prefix><suffix>" (see Store::group).
struct StatSpec {
  std::string_view suffix;
  StatType type;
  Histogram::Unit unit = Histogram::Unit::kMilliseconds;
};

// Handles of a registered group, by index into its specs.
class StatGroup {
 public:
  Counter counter(size_t i) const;
  Gauge gauge(size_t i) const;
  Histogram histogram(size_t i) const;

 private:
  friend class Store;
  Store* store_ = nullptr;
  std::vector<uint32_t> cells_;
};

// Handles of a registered group made on demand: 24 bytes however many stats the group has (a group of N
// StatGroup handles costs a vector of N cells; thousands of clusters each hold one).
class CompactStatGroup {
 public:
  CompactStatGroup() = default;
  CompactStatGroup(CompactStatGroup&&) = default;
  CompactStatGroup& operator=(CompactStatGroup&&) = default;
  Counter counter(size_t i) const;
  Gauge gauge(size_t i) const;
  Histogram histogram(size_t i) const;

 private:
  friend class Store;
  uint32_t cell(size_t i) const { return first_ + offsets_[i]; }
  uint32_t store_ = 0;  // Store::handleId()
  uint32_t first_ = 0;
  const uint32_t* offsets_ = nullptr;  // the schema's offsets, or own_ (names that existed on their own)
  std::unique_ptr<uint32_t[]> own_;
};

class Store {
 public:
  // `max_slabs` = 1 (main) + the number of workers.
  explicit Store(uint32_t max_slabs);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  Counter counter(std::string_view name);
  Gauge gauge(std::string_view name);
  Histogram histogram(std::string_view name, Histogram::Unit unit = Histogram::Unit::kMilliseconds);
  // Many stats sharing a prefix (a cluster's fixed names) registered as one entry: the names are made only
  // when read, so a stat costs its cells and nothing else. `specs` must outlive the store (a static table).
  // Each name behaves exactly as if created by counter()/gauge()/histogram() (same lookup, same cells on a
  // second registration of the same prefix). Text readouts are not allowed in a group.
  StatGroup group(std::string_view prefix, std::span<const StatSpec> specs);
  // The same registration, holding the handles compactly (see CompactStatGroup).
  CompactStatGroup compactGroup(std::string_view prefix, std::span<const StatSpec> specs);
  // Text readouts (e.g. control_plane.identifier) are rare and set from the main thread.
  void setText(std::string_view name, std::string_view value);

  // Reader side: every stat, sorted by name; `filter` (when set) keeps names it returns true for.
  std::vector<StatValue> snapshot(const std::function<bool(std::string_view)>& filter = nullptr) const;
  // Zero all counters (admin /reset_counters).
  void resetCounters();

  uint32_t maxSlabs() const;

  // Internals used by Counter/Gauge/Histogram; not for callers.
  uint32_t handleId() const;
  static Store* byHandleId(uint32_t id);
  uint64_t* cellForThisThread(uint32_t cell) const;
  uint64_t sumCells(uint32_t cell) const;

 private:
  bool registerGroup(std::string_view prefix, std::span<const StatSpec> specs, uint32_t* first,
                     const uint32_t** offsets, std::vector<uint32_t>* cells);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The process-wide store. Created once in main before workers start.
Store& defaultStore();
void initDefaultStore(uint32_t max_slabs);

// Renderers for the admin API (Envoy's shapes; see ../shared/reference/envoy-admin-and-stats.md).
std::string renderText(const std::vector<StatValue>& stats);
std::string renderJson(const std::vector<StatValue>& stats);
std::string renderPrometheus(const std::vector<StatValue>& stats);

}  // namespace skiff::stats
