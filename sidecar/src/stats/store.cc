// The stats store: name → cell registry, per-thread cell slabs, recording and reading.
//
// Cells are plain uint64_t words accessed only through std::atomic_ref with relaxed order: each cell of a
// thread slab has one writer (its thread), so recording is a load + store with no locked instruction, and
// readers summing slabs concurrently are race-free. One extra slab past the thread slabs holds the
// offsets written by resetCounters(), so a reset never writes a worker's cell.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <limits>
#include <map>
#include <mutex>
#include <new>

#include "skiff/common/logging.h"
#include "skiff/stats/stats.h"

namespace skiff::stats {
namespace {

constexpr uint32_t kChunkCells = 4096;
constexpr uint32_t kMaxChunks = 4096;  // 16M cells per slab
// Histogram run: one cell per bucket, the overflow bucket, then the sum of samples.
uint32_t histogramCells() {
  return static_cast<uint32_t>(defaultBuckets().size()) + 2;
}

thread_local uint32_t tls_slab = 0;

inline uint64_t loadCell(const uint64_t* c) {
  return std::atomic_ref<uint64_t>(*const_cast<uint64_t*>(c)).load(std::memory_order_relaxed);
}
inline void storeCell(uint64_t* c, uint64_t v) {
  std::atomic_ref<uint64_t>(*c).store(v, std::memory_order_relaxed);
}
// Single-writer add: no read-modify-write instruction needed.
inline void addCell(uint64_t* c, uint64_t n) {
  storeCell(c, loadCell(c) + n);
}

}  // namespace

void setThreadSlab(uint32_t slab_index) {
  tls_slab = slab_index;
}

const std::vector<double>& defaultBuckets() {
  static const std::vector<double> kBuckets = {0.5,   1,      5,      10,      25,     50,    100,
                                               250,   500,    1000,   2500,    5000,   10000, 30000,
                                               60000, 300000, 600000, 1800000, 3600000};
  return kBuckets;
}

struct Store::Impl {
  struct Entry {
    StatType type;
    uint32_t cell = 0;  // first cell
    Histogram::Unit unit = Histogram::Unit::kUnspecified;
    std::string text;
    bool text_set = false;
  };

  explicit Impl(uint32_t slabs) : max_slabs(std::max<uint32_t>(slabs, 1)) {
    // +1: the reset-offset slab.
    chunks = std::make_unique<std::atomic<uint64_t*>[]>(static_cast<size_t>(max_slabs + 1) * kMaxChunks);
    for (size_t i = 0; i < static_cast<size_t>(max_slabs + 1) * kMaxChunks; ++i) chunks[i].store(nullptr);
  }
  ~Impl() {
    for (size_t i = 0; i < static_cast<size_t>(max_slabs + 1) * kMaxChunks; ++i) {
      uint64_t* p = chunks[i].load();
      if (p != nullptr) ::operator delete[](p, std::align_val_t(64));
    }
  }

  uint64_t* cell(uint32_t slab, uint32_t index) const {
    uint64_t* chunk =
        chunks[static_cast<size_t>(slab) * kMaxChunks + index / kChunkCells].load(std::memory_order_acquire);
    return chunk + index % kChunkCells;
  }

  uint64_t sum(uint32_t index) const {
    uint64_t total = 0;
    for (uint32_t s = 0; s <= max_slabs; ++s) total += loadCell(cell(s, index));
    return total;
  }

  // Sum over thread slabs only (ignores reset offsets): non-zero means the stat was touched.
  bool touched(uint32_t index) const {
    for (uint32_t s = 0; s < max_slabs; ++s) {
      if (loadCell(cell(s, index)) != 0) return true;
    }
    return false;
  }

  // Reserves `n` contiguous cells (never straddling a chunk) and makes sure every slab has the chunk.
  // Caller holds `mu`. Returns false when the store is full.
  bool allocate(uint32_t n, uint32_t* first) {
    uint32_t start = next_cell;
    if (start % kChunkCells + n > kChunkCells) start = (start / kChunkCells + 1) * kChunkCells;
    if (static_cast<uint64_t>(start) + n > static_cast<uint64_t>(kChunkCells) * kMaxChunks) return false;
    uint32_t chunk = start / kChunkCells;
    for (uint32_t s = 0; s <= max_slabs; ++s) {
      auto& slot = chunks[static_cast<size_t>(s) * kMaxChunks + chunk];
      if (slot.load(std::memory_order_relaxed) != nullptr) continue;
      auto* mem =
          static_cast<uint64_t*>(::operator new[](kChunkCells * sizeof(uint64_t), std::align_val_t(64)));
      std::fill(mem, mem + kChunkCells, 0);
      slot.store(mem, std::memory_order_release);
    }
    next_cell = start + n;
    *first = start;
    return true;
  }

  static uint32_t cellsFor(StatType t) {
    switch (t) {
      case StatType::kHistogram:
        return histogramCells();
      case StatType::kTextReadout:
        return 0;
      default:
        return 1;
    }
  }

  // Finds or creates `name` as `type`. Returns false (after logging) on a type clash or a full store,
  // in which case `*cell` is a detached run of cells that nobody reads.
  bool getOrCreate(std::string_view name, StatType type, Histogram::Unit unit, uint32_t* cell) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = by_name.find(name);
    if (it != by_name.end()) {
      if (it->second.type == type) {
        *cell = it->second.cell;
        return true;
      }
      log::get(log::Component::kMain)
          .error("stat '{}' requested with a different type than it was created with", name);
      return detached(type, cell);
    }
    Entry e;
    e.type = type;
    e.unit = unit;
    if (!allocate(cellsFor(type), &e.cell)) {
      log::get(log::Component::kMain).error("stats store is full; '{}' is not recorded", name);
      return detached(type, cell);
    }
    *cell = e.cell;
    by_name.emplace(std::string(name), std::move(e));
    return true;
  }

  // A private run of cells for a stat that must not be visible; falls back to a shared scratch run.
  bool detached(StatType type, uint32_t* cell) {
    if (!allocate(cellsFor(type), cell)) *cell = scratch;
    return false;
  }

  const uint32_t max_slabs;
  std::unique_ptr<std::atomic<uint64_t*>[]> chunks;
  mutable std::mutex mu;
  std::map<std::string, Entry, std::less<>> by_name;
  uint32_t next_cell = 0;
  uint32_t scratch = 0;  // cells [0, histogramCells()) are reserved as the last-resort scratch run
};

Store::Store(uint32_t max_slabs) : impl_(std::make_unique<Impl>(max_slabs)) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->allocate(histogramCells(), &impl_->scratch);
}

Store::~Store() = default;

uint32_t Store::maxSlabs() const {
  return impl_->max_slabs;
}

uint64_t* Store::cellForThisThread(uint32_t cell) const {
  // A thread with an out-of-range slab index shares slab 0; that is a setup bug, and it only risks lost
  // increments, never memory errors.
  uint32_t slab = tls_slab < impl_->max_slabs ? tls_slab : 0;
  return impl_->cell(slab, cell);
}

uint64_t Store::sumCells(uint32_t cell) const {
  return impl_->sum(cell);
}

Counter Store::counter(std::string_view name) {
  uint32_t cell = 0;
  impl_->getOrCreate(name, StatType::kCounter, Histogram::Unit::kUnspecified, &cell);
  return Counter(this, cell);
}

Gauge Store::gauge(std::string_view name) {
  uint32_t cell = 0;
  impl_->getOrCreate(name, StatType::kGauge, Histogram::Unit::kUnspecified, &cell);
  return Gauge(this, cell);
}

Histogram Store::histogram(std::string_view name, Histogram::Unit unit) {
  uint32_t cell = 0;
  impl_->getOrCreate(name, StatType::kHistogram, unit, &cell);
  return Histogram(this, cell);
}

void Store::setText(std::string_view name, std::string_view value) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto it = impl_->by_name.find(name);
  if (it == impl_->by_name.end()) {
    Impl::Entry e;
    e.type = StatType::kTextReadout;
    it = impl_->by_name.emplace(std::string(name), std::move(e)).first;
  } else if (it->second.type != StatType::kTextReadout) {
    log::get(log::Component::kMain).error("stat '{}' is not a text readout", name);
    return;
  }
  it->second.text.assign(value);
  it->second.text_set = true;
}

std::vector<StatValue> Store::snapshot(const std::function<bool(std::string_view)>& filter) const {
  std::vector<StatValue> out;
  std::lock_guard<std::mutex> lock(impl_->mu);
  out.reserve(impl_->by_name.size());
  const uint32_t hcells = histogramCells();
  for (const auto& [name, e] : impl_->by_name) {
    if (filter && !filter(name)) continue;
    StatValue v;
    v.name = name;
    v.type = e.type;
    switch (e.type) {
      case StatType::kCounter:
        v.counter = impl_->sum(e.cell);
        v.used = impl_->touched(e.cell);
        break;
      case StatType::kGauge:
        v.gauge = static_cast<int64_t>(impl_->sum(e.cell));
        v.used = impl_->touched(e.cell);
        break;
      case StatType::kHistogram: {
        auto& h = v.histogram;
        h.bucket_counts.resize(hcells - 1);
        for (uint32_t b = 0; b + 1 < hcells; ++b) {
          h.bucket_counts[b] = impl_->sum(e.cell + b);
          h.sample_count += h.bucket_counts[b];
        }
        h.sample_sum = static_cast<double>(impl_->sum(e.cell + hcells - 1));
        v.used = h.sample_count > 0;
        break;
      }
      case StatType::kTextReadout:
        v.text = e.text;
        v.used = e.text_set;
        break;
    }
    out.push_back(std::move(v));
  }
  return out;
}

void Store::resetCounters() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  for (const auto& [name, e] : impl_->by_name) {
    if (e.type != StatType::kCounter) continue;
    // Offset slab holds minus the thread slabs' sum, so the visible total restarts at zero.
    uint64_t* offset = impl_->cell(impl_->max_slabs, e.cell);
    storeCell(offset, loadCell(offset) - impl_->sum(e.cell));
  }
}

// --- recording ---

void Counter::inc(uint64_t n) const {
  if (store_ == nullptr) return;
  addCell(store_->cellForThisThread(cell_), n);
}

uint64_t Counter::value() const {
  return store_ == nullptr ? 0 : store_->sumCells(cell_);
}

void Gauge::inc(int64_t n) const {
  if (store_ == nullptr) return;
  addCell(store_->cellForThisThread(cell_), static_cast<uint64_t>(n));
}

void Gauge::dec(int64_t n) const {
  inc(-n);
}

void Gauge::set(int64_t v) const {
  if (store_ == nullptr) return;
  // The visible value is the sum over slabs, so write v minus what the other slabs hold.
  uint64_t* mine = store_->cellForThisThread(cell_);
  uint64_t others = store_->sumCells(cell_) - loadCell(mine);
  storeCell(mine, static_cast<uint64_t>(v) - others);
}

int64_t Gauge::value() const {
  return store_ == nullptr ? 0 : static_cast<int64_t>(store_->sumCells(cell_));
}

void Histogram::record(uint64_t value) const {
  if (store_ == nullptr) return;
  const auto& bounds = defaultBuckets();
  // First bound >= value ("le" semantics); past the last bound is the overflow bucket.
  auto it = std::lower_bound(bounds.begin(), bounds.end(), static_cast<double>(value));
  uint32_t bucket = static_cast<uint32_t>(it - bounds.begin());
  uint64_t* first = store_->cellForThisThread(first_cell_);
  addCell(first + bucket, 1);
  addCell(first + bounds.size() + 1, value);
}

double HistogramSnapshot::quantile(double q) const {
  uint64_t total = 0;
  for (uint64_t c : bucket_counts) total += c;
  if (total == 0) return std::numeric_limits<double>::quiet_NaN();
  q = std::clamp(q, 0.0, 1.0);
  const auto& bounds = defaultBuckets();
  const double rank = q * static_cast<double>(total);
  uint64_t before = 0;
  for (size_t b = 0; b < bucket_counts.size(); ++b) {
    uint64_t count = bucket_counts[b];
    if (count == 0) continue;
    double lower = b == 0 ? 0.0 : bounds[b - 1];
    // The overflow bucket has no upper bound; report its lower edge.
    double upper = b < bounds.size() ? bounds[b] : bounds.back();
    if (rank <= static_cast<double>(before + count)) {
      double frac = (rank - static_cast<double>(before)) / static_cast<double>(count);
      return lower + (upper - lower) * std::clamp(frac, 0.0, 1.0);
    }
    before += count;
  }
  return bounds.back();
}

// --- the process-wide store ---

namespace {
std::atomic<Store*> g_store{nullptr};
std::mutex g_store_mu;
}  // namespace

void initDefaultStore(uint32_t max_slabs) {
  std::lock_guard<std::mutex> lock(g_store_mu);
  if (g_store.load() != nullptr) {
    log::get(log::Component::kMain).warn("stats store already initialized; keeping the existing one");
    return;
  }
  // Never freed: workers may record until the process exits.
  g_store.store(new Store(max_slabs), std::memory_order_release);
}

Store& defaultStore() {
  Store* s = g_store.load(std::memory_order_acquire);
  if (s != nullptr) return *s;
  std::lock_guard<std::mutex> lock(g_store_mu);
  if (g_store.load() == nullptr) g_store.store(new Store(1), std::memory_order_release);
  return *g_store.load();
}

}  // namespace skiff::stats
