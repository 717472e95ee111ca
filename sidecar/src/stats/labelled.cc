// Labelled metric families: series lookup (per-thread caches, bounded cardinality) and the name → labels
// registry the Prometheus renderer consults.
#include "skiff/stats/labelled.h"

#include <atomic>
#include <mutex>
#include <stdexcept>
#include <unordered_map>

#include "skiff/common/logging.h"
#include "stats/labelled_internal.h"

namespace skiff::stats {
namespace {

// Per-thread caches are indexed by a small thread number; threads past the limit use the locked path.
constexpr uint32_t kMaxThreads = 256;
std::atomic<uint32_t> g_next_thread{0};
thread_local const uint32_t tls_thread = g_next_thread.fetch_add(1, std::memory_order_relaxed);

uint64_t hashValues(std::span<const std::string_view> values) {
  uint64_t h = 0x9e3779b97f4a7c15ull ^ values.size();
  for (std::string_view v : values) {
    h ^= std::hash<std::string_view>{}(v) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  }
  return h;
}

// Full /stats name → its Prometheus form, for every series of every LabelledMetrics.
std::mutex g_registry_mu;
std::unordered_map<std::string, ExtractedName>& registry() {
  static auto* r = new std::unordered_map<std::string, ExtractedName>();
  return *r;
}

}  // namespace

bool labelledTags(std::string_view name, ExtractedName* out) {
  std::lock_guard<std::mutex> lock(g_registry_mu);
  auto& r = registry();
  if (r.empty()) return false;
  auto it = r.find(std::string(name));
  if (it == r.end()) return false;
  *out = it->second;
  return true;
}

struct LabelledMetrics::Entry {
  std::vector<std::string> values;
  Series series;
  bool overflow = false;
  std::atomic<uint32_t> created{0};  // metrics whose stats exist (set under Impl::mu)
};

struct LabelledMetrics::Impl {
  struct ThreadCache {
    std::unordered_map<uint64_t, const Entry*> by_hash;
  };

  mutable std::mutex mu;
  std::unordered_map<uint64_t, std::vector<std::unique_ptr<Entry>>> entries;  // by hash, under mu
  size_t count = 0;
  std::unique_ptr<Entry> overflow;
  bool overflow_logged = false;
  std::unique_ptr<std::atomic<ThreadCache*>[]> caches { new std::atomic<ThreadCache*>[ kMaxThreads ] };

  Impl() {
    for (uint32_t i = 0; i < kMaxThreads; ++i) caches[i].store(nullptr, std::memory_order_relaxed);
  }
  ~Impl() {
    for (uint32_t i = 0; i < kMaxThreads; ++i) delete caches[i].load(std::memory_order_relaxed);
  }

  static bool same(const Entry& e, std::span<const std::string_view> values) {
    if (e.values.size() != values.size()) return false;
    for (size_t i = 0; i < values.size(); ++i) {
      if (e.values[i] != values[i]) return false;
    }
    return true;
  }
};

LabelledMetrics::LabelledMetrics(Store& store, std::string stat_namespace, std::vector<Metric> metrics,
                                 std::vector<std::string> label_names, size_t max_series)
    : store_(store),
      namespace_(std::move(stat_namespace)),
      metrics_(std::move(metrics)),
      label_names_(std::move(label_names)),
      max_series_(max_series == 0 ? 1 : max_series),
      all_metrics_(metrics_.size() >= 32 ? ~0u : (1u << metrics_.size()) - 1),
      impl_(std::make_unique<Impl>()) {
  if (metrics_.size() > 32) throw std::invalid_argument("LabelledMetrics: at most 32 metrics");
}

LabelledMetrics::~LabelledMetrics() = default;

size_t LabelledMetrics::lookupBucketCount() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->entries.size();
}

size_t LabelledMetrics::seriesCount() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->count + (impl_->overflow ? 1 : 0);
}

std::string LabelledMetrics::statName(size_t metric, std::span<const std::string_view> values) const {
  std::string out = namespace_;
  if (!out.empty()) out += '.';
  out += metrics_[metric].name;
  for (size_t i = 0; i < label_names_.size() && i < values.size(); ++i) {
    out += '.';
    out += label_names_[i];
    out += '.';
    out += values[i];
  }
  return out;
}

const LabelledMetrics::Series& LabelledMetrics::series(std::span<const std::string_view> values,
                                                       uint32_t metrics_mask) {
  metrics_mask &= all_metrics_;
  const uint64_t hash = hashValues(values);
  if (tls_thread < kMaxThreads) {
    Impl::ThreadCache* cache = impl_->caches[tls_thread].load(std::memory_order_relaxed);
    if (cache != nullptr) {
      auto it = cache->by_hash.find(hash);
      if (it != cache->by_hash.end() && (it->second->overflow || Impl::same(*it->second, values)) &&
          (it->second->created.load(std::memory_order_acquire) & metrics_mask) == metrics_mask) {
        return it->second->series;
      }
    }
  }
  return create(values, hash, metrics_mask);
}

// Creates the stats of `mask` that `entry` lacks (under the mutex). Handles are written before the
// `created` bits that publish them.
void LabelledMetrics::addStats(Entry& entry, uint32_t mask) {
  const uint32_t missing = mask & ~entry.created.load(std::memory_order_relaxed);
  if (missing == 0) return;
  std::vector<std::string_view> views(entry.values.begin(), entry.values.end());
  for (size_t m = 0; m < metrics_.size(); ++m) {
    if ((missing & (1u << m)) == 0) continue;
    const std::string name = statName(m, views);
    ExtractedName prom;
    prom.name = namespace_.empty() ? metrics_[m].name : namespace_ + "." + metrics_[m].name;
    for (size_t i = 0; i < label_names_.size(); ++i) prom.tags.emplace_back(label_names_[i], entry.values[i]);
    {
      std::lock_guard<std::mutex> reg(g_registry_mu);
      registry().emplace(name, std::move(prom));
    }
    if (metrics_[m].type == StatType::kHistogram) {
      entry.series.histograms[m] = store_.histogram(name, metrics_[m].unit);
    } else {
      entry.series.counters[m] = store_.counter(name);
    }
  }
  entry.created.fetch_or(missing, std::memory_order_release);
}

const LabelledMetrics::Series& LabelledMetrics::create(std::span<const std::string_view> values,
                                                       uint64_t hash, uint32_t mask) {
  Entry* found = nullptr;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    // find(), not operator[]: a label set that folds into the overflow series must not add a bucket,
    // or the map grows without bound exactly when max_series should bound it.
    auto bucket_it = impl_->entries.find(hash);
    if (bucket_it != impl_->entries.end()) {
      for (const auto& e : bucket_it->second) {
        if (Impl::same(*e, values)) found = e.get();
      }
    }
    if (found == nullptr) {
      const bool overflow = impl_->count >= max_series_;
      std::vector<std::string> owned;
      owned.reserve(label_names_.size());
      for (size_t i = 0; i < label_names_.size(); ++i) {
        owned.emplace_back(overflow ? std::string_view("overflow")
                                    : (i < values.size() ? values[i] : std::string_view()));
      }
      if (overflow && impl_->overflow) {
        found = impl_->overflow.get();
      } else {
        auto entry = std::make_unique<Entry>();
        entry->overflow = overflow;
        entry->series.counters.resize(metrics_.size());
        entry->series.histograms.resize(metrics_.size());
        entry->values = std::move(owned);
        found = entry.get();
        if (overflow) {
          impl_->overflow = std::move(entry);
          if (!impl_->overflow_logged) {
            impl_->overflow_logged = true;
            SKIFF_LOG(kMain, warn,
                      "stats: {}: more than {} label sets; further ones are counted under label values "
                      "'overflow'",
                      metrics_.empty() ? namespace_ : metrics_[0].name, max_series_);
          }
        } else {
          ++impl_->count;
          impl_->entries[hash].push_back(std::move(entry));
        }
      }
    }
    addStats(*found, mask);
  }
  if (tls_thread < kMaxThreads) {
    // Only this thread touches its cache, so no lock is needed past creating it.
    Impl::ThreadCache* cache = impl_->caches[tls_thread].load(std::memory_order_relaxed);
    if (cache == nullptr) {
      cache = new Impl::ThreadCache();
      impl_->caches[tls_thread].store(cache, std::memory_order_relaxed);
    }
    if (cache->by_hash.size() > 2 * max_series_ + 16) cache->by_hash.clear();
    cache->by_hash[hash] = found;
  }
  return found->series;
}

}  // namespace skiff::stats
