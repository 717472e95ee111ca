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
#include <stdexcept>
#include <unordered_map>

#include <sys/mman.h>

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

// Live stores by handle id (0 = none), so that handles hold a 4-byte id instead of a pointer. Ids are
// never reused: a handle that outlived its store must not write into a newer one.
constexpr uint32_t kMaxStores = 1 << 16;
std::atomic<Store*> g_stores[kMaxStores];
std::mutex g_ids_mu;
uint32_t g_next_id = 1;

uint32_t acquireStoreId(Store* store) {
  std::lock_guard<std::mutex> lock(g_ids_mu);
  if (g_next_id >= kMaxStores) throw std::runtime_error("too many stats stores");
  const uint32_t id = g_next_id++;
  g_stores[id].store(store, std::memory_order_release);
  return id;
}

void releaseStoreId(uint32_t id) {
  g_stores[id].store(nullptr, std::memory_order_release);
}

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
      if (p != nullptr) ::munmap(p, kChunkCells * sizeof(uint64_t));
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
      // Zero-filled by the kernel, page by page, on first write: untouched cells cost nothing.
      void* mem = ::mmap(nullptr, kChunkCells * sizeof(uint64_t), PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (mem == MAP_FAILED) throw std::bad_alloc();
      slot.store(static_cast<uint64_t*>(mem), std::memory_order_release);
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
    return getOrCreateLocked(name, type, unit, cell);
  }

  bool getOrCreateLocked(std::string_view name, StatType type, Histogram::Unit unit, uint32_t* cell) {
    if (const StatSpec* spec = findInGroups(name, cell)) {
      if (spec->type == type) return true;
      log::get(log::Component::kMain)
          .error("stat '{}' requested with a different type than it was created with", name);
      return detached(type, cell);
    }
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

  // A group's layout: cell offset of each spec within its contiguous run, and suffix -> spec index.
  struct Schema {
    std::span<const StatSpec> specs;
    std::vector<uint32_t> offsets;
    uint32_t cells = 0;
    std::unordered_map<std::string_view, uint32_t> index;
    // The runs of one schema are packed into chunks of their own (see allocateGroup).
    uint32_t next = 0, end = 0;
  };
  struct Group {
    const Schema* schema;
    uint32_t first;
  };

  // A group's run comes from chunks that hold runs of its schema only. Groups written by different threads
  // (a cluster's main-thread stats vs its traffic stats) then never share a page, so the pages of stats
  // that only the main thread writes stay dense and the pages of stats nobody wrote stay uncommitted.
  // Caller holds `mu`.
  bool allocateGroup(Schema& schema, uint32_t* first) {
    const uint32_t n = schema.cells;
    if (n > kChunkCells / 4) return allocate(n, first);  // big runs: no packing needed
    if (schema.end - schema.next < n || schema.end == 0) {
      uint32_t chunk_first = 0;
      if (!allocate(kChunkCells, &chunk_first)) return allocate(n, first);
      schema.next = chunk_first;
      schema.end = chunk_first + kChunkCells;
    }
    *first = schema.next;
    schema.next += n;
    return true;
  }

  Schema& schemaFor(std::span<const StatSpec> specs) {
    auto& slot = schemas[specs.data()];
    if (!slot) {
      slot = std::make_unique<Schema>();
      slot->specs = specs;
      for (uint32_t i = 0; i < specs.size(); ++i) {
        slot->offsets.push_back(slot->cells);
        slot->cells += cellsFor(specs[i].type);
        slot->index.emplace(specs[i].suffix, i);
      }
    }
    return *slot;
  }

  // The spec of `name` if a group holds it (its cell in *cell), else nullptr. Caller holds `mu`.
  const StatSpec* findInGroups(std::string_view name, uint32_t* cell) const {
    if (groups.empty()) return nullptr;
    for (size_t dot = name.find('.'); dot != std::string_view::npos; dot = name.find('.', dot + 1)) {
      auto it = groups.find(name.substr(0, dot + 1));
      if (it == groups.end()) continue;
      const std::string_view suffix = name.substr(dot + 1);
      for (const Group& g : it->second) {
        auto found = g.schema->index.find(suffix);
        if (found == g.schema->index.end()) continue;
        *cell = g.first + g.schema->offsets[found->second];
        return &g.schema->specs[found->second];
      }
    }
    return nullptr;
  }

  // True when a name of `schema` under `prefix` already exists on its own or in another group.
  bool overlaps(const std::string& prefix, const Schema& schema) const {
    for (auto it = by_name.lower_bound(prefix);
         it != by_name.end() && std::string_view(it->first).starts_with(prefix); ++it) {
      if (schema.index.count(std::string_view(it->first).substr(prefix.size()))) return true;
    }
    auto groups_it = groups.find(prefix);
    if (groups_it == groups.end()) return false;
    for (const Group& g : groups_it->second) {
      for (const auto& spec : schema.specs) {
        if (g.schema->index.count(spec.suffix)) return true;
      }
    }
    return false;
  }

  const uint32_t max_slabs;
  uint32_t id = 0;
  std::unique_ptr<std::atomic<uint64_t*>[]> chunks;
  std::map<const StatSpec*, std::unique_ptr<Schema>> schemas;
  std::map<std::string, std::vector<Group>, std::less<>> groups;  // prefix -> its groups
  mutable std::mutex mu;
  std::map<std::string, Entry, std::less<>> by_name;
  uint32_t next_cell = 0;
  uint32_t scratch = 0;  // cells [0, histogramCells()) are reserved as the last-resort scratch run
};

Store::Store(uint32_t max_slabs) : impl_(std::make_unique<Impl>(max_slabs)) {
  impl_->id = acquireStoreId(this);
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->allocate(histogramCells(), &impl_->scratch);
}

Store::~Store() {
  releaseStoreId(impl_->id);
}

uint32_t Store::handleId() const {
  return impl_->id;
}

Store* Store::byHandleId(uint32_t id) {
  return g_stores[id].load(std::memory_order_relaxed);
}

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

// Registers a group; true with its run's first cell when it is one run of `specs`' schema (then
// *offsets are the schema's), else false with each name's cell in *cells (names that existed on their own).
bool Store::registerGroup(std::string_view prefix, std::span<const StatSpec> specs, uint32_t* first,
                          const uint32_t** offsets, std::vector<uint32_t>* cells) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Impl::Schema& schema = impl_->schemaFor(specs);
  *offsets = schema.offsets.data();
  const std::string key(prefix);
  auto it = impl_->groups.find(key);
  if (it != impl_->groups.end()) {
    for (const Impl::Group& g : it->second) {
      if (g.schema != &schema) continue;
      *first = g.first;
      return true;  // registered before (a cluster's new version): same cells
    }
  }
  bool text = false;
  for (const auto& spec : specs) text = text || spec.type == StatType::kTextReadout;
  if (text || impl_->overlaps(key, schema) || !impl_->allocateGroup(schema, first)) {
    // Some names exist already (or the run does not fit): one entry per name, sharing what exists.
    cells->resize(specs.size());
    for (size_t i = 0; i < specs.size(); ++i) {
      impl_->getOrCreateLocked(key + std::string(specs[i].suffix), specs[i].type, specs[i].unit,
                               &(*cells)[i]);
    }
    return false;
  }
  impl_->groups[key].push_back({&schema, *first});
  return true;
}

StatGroup Store::group(std::string_view prefix, std::span<const StatSpec> specs) {
  StatGroup out;
  out.store_ = this;
  uint32_t first = 0;
  const uint32_t* offsets = nullptr;
  if (registerGroup(prefix, specs, &first, &offsets, &out.cells_)) {
    out.cells_.resize(specs.size());
    for (size_t i = 0; i < specs.size(); ++i) out.cells_[i] = first + offsets[i];
  }
  return out;
}

CompactStatGroup Store::compactGroup(std::string_view prefix, std::span<const StatSpec> specs) {
  CompactStatGroup out;
  out.store_ = handleId();
  std::vector<uint32_t> cells;
  if (!registerGroup(prefix, specs, &out.first_, &out.offsets_, &cells)) {
    out.own_ = std::make_unique<uint32_t[]>(cells.size());
    std::copy(cells.begin(), cells.end(), out.own_.get());
    out.offsets_ = out.own_.get();
    out.first_ = 0;
  }
  return out;
}

Counter CompactStatGroup::counter(size_t i) const {
  return Counter(Store::byHandleId(store_), cell(i));
}
Gauge CompactStatGroup::gauge(size_t i) const {
  return Gauge(Store::byHandleId(store_), cell(i));
}
Histogram CompactStatGroup::histogram(size_t i) const {
  return Histogram(Store::byHandleId(store_), cell(i));
}

Counter StatGroup::counter(size_t i) const {
  return Counter(store_, cells_.at(i));
}
Gauge StatGroup::gauge(size_t i) const {
  return Gauge(store_, cells_.at(i));
}
Histogram StatGroup::histogram(size_t i) const {
  return Histogram(store_, cells_.at(i));
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
  auto read = [&](std::string name, StatType type, uint32_t cell, const Impl::Entry* e) {
    StatValue v;
    v.name = std::move(name);
    v.type = type;
    switch (type) {
      case StatType::kCounter:
        v.counter = impl_->sum(cell);
        v.used = impl_->touched(cell);
        break;
      case StatType::kGauge:
        v.gauge = static_cast<int64_t>(impl_->sum(cell));
        v.used = impl_->touched(cell);
        break;
      case StatType::kHistogram: {
        auto& h = v.histogram;
        h.bucket_counts.resize(hcells - 1);
        for (uint32_t b = 0; b + 1 < hcells; ++b) {
          h.bucket_counts[b] = impl_->sum(cell + b);
          h.sample_count += h.bucket_counts[b];
        }
        h.sample_sum = static_cast<double>(impl_->sum(cell + hcells - 1));
        v.used = h.sample_count > 0;
        break;
      }
      case StatType::kTextReadout:
        v.text = e->text;
        v.used = e->text_set;
        break;
    }
    out.push_back(std::move(v));
  };
  for (const auto& [name, e] : impl_->by_name) {
    if (filter && !filter(name)) continue;
    read(name, e.type, e.cell, &e);
  }
  if (impl_->groups.empty()) return out;  // by_name is already sorted
  for (const auto& [prefix, groups] : impl_->groups) {
    for (const Impl::Group& g : groups) {
      for (size_t i = 0; i < g.schema->specs.size(); ++i) {
        std::string name = prefix + std::string(g.schema->specs[i].suffix);
        if (filter && !filter(name)) continue;
        read(std::move(name), g.schema->specs[i].type, g.first + g.schema->offsets[i], nullptr);
      }
    }
  }
  std::sort(out.begin(), out.end(), [](const StatValue& a, const StatValue& b) { return a.name < b.name; });
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
  for (const auto& [prefix, groups] : impl_->groups) {
    for (const Impl::Group& g : groups) {
      for (size_t i = 0; i < g.schema->specs.size(); ++i) {
        if (g.schema->specs[i].type != StatType::kCounter) continue;
        const uint32_t cell = g.first + g.schema->offsets[i];
        uint64_t* offset = impl_->cell(impl_->max_slabs, cell);
        storeCell(offset, loadCell(offset) - impl_->sum(cell));
      }
    }
  }
}

// --- recording ---

Counter::Counter(Store* store, uint32_t cell) : store_(store ? store->handleId() : 0), cell_(cell) {}
Gauge::Gauge(Store* store, uint32_t cell) : store_(store ? store->handleId() : 0), cell_(cell) {}
Histogram::Histogram(Store* store, uint32_t first_cell)
    : store_(store ? store->handleId() : 0), first_cell_(first_cell) {}

void Counter::inc(uint64_t n) const {
  if (store_ == 0) return;
  addCell(Store::byHandleId(store_)->cellForThisThread(cell_), n);
}

uint64_t Counter::value() const {
  return store_ == 0 ? 0 : Store::byHandleId(store_)->sumCells(cell_);
}

void Gauge::inc(int64_t n) const {
  if (store_ == 0) return;
  addCell(Store::byHandleId(store_)->cellForThisThread(cell_), static_cast<uint64_t>(n));
}

void Gauge::dec(int64_t n) const {
  inc(-n);
}

void Gauge::set(int64_t v) const {
  if (store_ == 0) return;
  const Store* store = Store::byHandleId(store_);
  // The visible value is the sum over slabs, so write v minus what the other slabs hold.
  uint64_t* mine = store->cellForThisThread(cell_);
  uint64_t others = store->sumCells(cell_) - loadCell(mine);
  storeCell(mine, static_cast<uint64_t>(v) - others);
}

int64_t Gauge::value() const {
  return store_ == 0 ? 0 : static_cast<int64_t>(Store::byHandleId(store_)->sumCells(cell_));
}

void Histogram::record(uint64_t value) const {
  if (store_ == 0) return;
  const auto& bounds = defaultBuckets();
  // First bound >= value ("le" semantics); past the last bound is the overflow bucket.
  auto it = std::lower_bound(bounds.begin(), bounds.end(), static_cast<double>(value));
  uint32_t bucket = static_cast<uint32_t>(it - bounds.begin());
  uint64_t* first = Store::byHandleId(store_)->cellForThisThread(first_cell_);
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
