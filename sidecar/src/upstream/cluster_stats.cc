// Cluster stats: main-thread handles, traffic handles (made on a cluster's first use) and lazily created
// per-response-code counters.
#include "skiff/upstream/cluster_stats.h"

#include <algorithm>
#include <span>
#include <string_view>

namespace skiff::upstream {

std::string sanitizeClusterStatName(std::string name) {
  std::replace(name.begin(), name.end(), ':', '_');
  return name;
}

namespace {

// One fixed stat of the handle set S: its name and the member holding its handle.
template <typename S>
struct Field {
  std::string_view suffix;
  stats::StatType type;
  stats::Histogram::Unit unit;
  stats::Counter S::*counter;
  stats::Gauge S::*gauge;
  stats::Histogram S::*histogram;
};

// Written by the main thread (discovery, membership): one small run of cells that only slab 0 touches. In
// the order of ClusterConfigStats' accessors.
const stats::StatSpec kMainSpecs[] = {
    {"membership_change", stats::StatType::kCounter},
    {"update_attempt", stats::StatType::kCounter},
    {"update_success", stats::StatType::kCounter},
    {"update_failure", stats::StatType::kCounter},
    {"update_empty", stats::StatType::kCounter},
    {"update_no_rebuild", stats::StatType::kCounter},
    {"config_reload", stats::StatType::kCounter},
    {"membership_total", stats::StatType::kGauge},
    {"membership_healthy", stats::StatType::kGauge},
    {"membership_degraded", stats::StatType::kGauge},
    {"membership_excluded", stats::StatType::kGauge},
    {"max_host_weight", stats::StatType::kGauge},
    {"version", stats::StatType::kGauge},
};

// Written by workers when the cluster carries traffic: a separate run, so a cluster that never sees a
// request costs no memory in any slab (the store's pages are committed on first write).
using TrafficField = Field<ClusterTrafficStats>;
const TrafficField kTrafficFields[] = {
    {"upstream_cx_total", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_cx_total, nullptr, nullptr},
    {"upstream_cx_http1_total", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_cx_http1_total, nullptr, nullptr},
    {"upstream_cx_http2_total", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_cx_http2_total, nullptr, nullptr},
    {"upstream_cx_connect_fail", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_cx_connect_fail, nullptr, nullptr},
    {"upstream_cx_connect_timeout", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_cx_connect_timeout, nullptr, nullptr},
    {"upstream_cx_idle_timeout", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_cx_idle_timeout, nullptr, nullptr},
    {"upstream_cx_max_duration_reached", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_cx_max_duration_reached, nullptr, nullptr},
    {"upstream_cx_connect_attempts_exceeded", stats::StatType::kCounter,
     stats::Histogram::Unit::kMilliseconds, &ClusterTrafficStats::upstream_cx_connect_attempts_exceeded,
     nullptr, nullptr},
    {"upstream_cx_overflow", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_cx_overflow, nullptr, nullptr},
    {"upstream_cx_destroy", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_cx_destroy, nullptr, nullptr},
    {"upstream_cx_destroy_local", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_cx_destroy_local, nullptr, nullptr},
    {"upstream_cx_destroy_remote", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_cx_destroy_remote, nullptr, nullptr},
    {"upstream_cx_destroy_with_active_rq", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_cx_destroy_with_active_rq, nullptr, nullptr},
    {"upstream_cx_destroy_local_with_active_rq", stats::StatType::kCounter,
     stats::Histogram::Unit::kMilliseconds, &ClusterTrafficStats::upstream_cx_destroy_local_with_active_rq,
     nullptr, nullptr},
    {"upstream_cx_destroy_remote_with_active_rq", stats::StatType::kCounter,
     stats::Histogram::Unit::kMilliseconds, &ClusterTrafficStats::upstream_cx_destroy_remote_with_active_rq,
     nullptr, nullptr},
    {"upstream_cx_close_notify", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_cx_close_notify, nullptr, nullptr},
    {"upstream_cx_rx_bytes_total", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_cx_rx_bytes_total, nullptr, nullptr},
    {"upstream_cx_tx_bytes_total", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_cx_tx_bytes_total, nullptr, nullptr},
    {"upstream_cx_pool_overflow", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_cx_pool_overflow, nullptr, nullptr},
    {"upstream_cx_protocol_error", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_cx_protocol_error, nullptr, nullptr},
    {"upstream_cx_max_requests", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_cx_max_requests, nullptr, nullptr},
    {"upstream_cx_none_healthy", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_cx_none_healthy, nullptr, nullptr},
    {"upstream_cx_active", stats::StatType::kGauge, stats::Histogram::Unit::kMilliseconds, nullptr,
     &ClusterTrafficStats::upstream_cx_active, nullptr},
    {"upstream_cx_rx_bytes_buffered", stats::StatType::kGauge, stats::Histogram::Unit::kMilliseconds, nullptr,
     &ClusterTrafficStats::upstream_cx_rx_bytes_buffered, nullptr},
    {"upstream_cx_tx_bytes_buffered", stats::StatType::kGauge, stats::Histogram::Unit::kMilliseconds, nullptr,
     &ClusterTrafficStats::upstream_cx_tx_bytes_buffered, nullptr},
    {"upstream_cx_connect_ms", stats::StatType::kHistogram, stats::Histogram::Unit::kMilliseconds, nullptr,
     nullptr, &ClusterTrafficStats::upstream_cx_connect_ms},
    {"upstream_cx_length_ms", stats::StatType::kHistogram, stats::Histogram::Unit::kMilliseconds, nullptr,
     nullptr, &ClusterTrafficStats::upstream_cx_length_ms},
    {"upstream_rq_total", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_rq_total, nullptr, nullptr},
    {"upstream_rq_pending_total", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_rq_pending_total, nullptr, nullptr},
    {"upstream_rq_active_overflow", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_rq_active_overflow, nullptr, nullptr},
    {"upstream_rq_pending_overflow", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_rq_pending_overflow, nullptr, nullptr},
    {"upstream_rq_pending_failure_eject", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_rq_pending_failure_eject, nullptr, nullptr},
    {"upstream_rq_cancelled", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_rq_cancelled, nullptr, nullptr},
    {"upstream_rq_maintenance_mode", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_rq_maintenance_mode, nullptr, nullptr},
    {"upstream_rq_timeout", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_rq_timeout, nullptr, nullptr},
    {"upstream_rq_max_duration_reached", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_rq_max_duration_reached, nullptr, nullptr},
    {"upstream_rq_per_try_timeout", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_rq_per_try_timeout, nullptr, nullptr},
    {"upstream_rq_rx_reset", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_rq_rx_reset, nullptr, nullptr},
    {"upstream_rq_tx_reset", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_rq_tx_reset, nullptr, nullptr},
    {"upstream_rq_retry", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_rq_retry, nullptr, nullptr},
    {"upstream_rq_retry_backoff_exponential", stats::StatType::kCounter,
     stats::Histogram::Unit::kMilliseconds, &ClusterTrafficStats::upstream_rq_retry_backoff_exponential,
     nullptr, nullptr},
    {"upstream_rq_retry_backoff_ratelimited", stats::StatType::kCounter,
     stats::Histogram::Unit::kMilliseconds, &ClusterTrafficStats::upstream_rq_retry_backoff_ratelimited,
     nullptr, nullptr},
    {"upstream_rq_retry_limit_exceeded", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_rq_retry_limit_exceeded, nullptr, nullptr},
    {"upstream_rq_retry_success", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_rq_retry_success, nullptr, nullptr},
    {"upstream_rq_retry_overflow", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_rq_retry_overflow, nullptr, nullptr},
    {"retry_or_shadow_abandoned", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::retry_or_shadow_abandoned, nullptr, nullptr},
    {"upstream_rq_active", stats::StatType::kGauge, stats::Histogram::Unit::kMilliseconds, nullptr,
     &ClusterTrafficStats::upstream_rq_active, nullptr},
    {"upstream_rq_pending_active", stats::StatType::kGauge, stats::Histogram::Unit::kMilliseconds, nullptr,
     &ClusterTrafficStats::upstream_rq_pending_active, nullptr},
    {"upstream_rq_per_cx", stats::StatType::kHistogram, stats::Histogram::Unit::kUnspecified, nullptr,
     nullptr, &ClusterTrafficStats::upstream_rq_per_cx},
    {"upstream_rq_time", stats::StatType::kHistogram, stats::Histogram::Unit::kMilliseconds, nullptr, nullptr,
     &ClusterTrafficStats::upstream_rq_time},
    {"upstream_flow_control_paused_reading_total", stats::StatType::kCounter,
     stats::Histogram::Unit::kMilliseconds, &ClusterTrafficStats::upstream_flow_control_paused_reading_total,
     nullptr, nullptr},
    {"upstream_flow_control_resumed_reading_total", stats::StatType::kCounter,
     stats::Histogram::Unit::kMilliseconds, &ClusterTrafficStats::upstream_flow_control_resumed_reading_total,
     nullptr, nullptr},
    {"upstream_flow_control_backed_up_total", stats::StatType::kCounter,
     stats::Histogram::Unit::kMilliseconds, &ClusterTrafficStats::upstream_flow_control_backed_up_total,
     nullptr, nullptr},
    {"upstream_flow_control_drained_total", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::upstream_flow_control_drained_total, nullptr, nullptr},
    {"bind_errors", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::bind_errors, nullptr, nullptr},
    {"lb_healthy_panic", stats::StatType::kCounter, stats::Histogram::Unit::kMilliseconds,
     &ClusterTrafficStats::lb_healthy_panic, nullptr, nullptr},
};

template <typename S, size_t N>
std::span<const stats::StatSpec> specsOf(const Field<S> (&fields)[N]) {
  // Built once per table; lives as long as the process (the store keeps a pointer to it).
  static const auto* specs = [&] {
    auto* out = new std::vector<stats::StatSpec>();
    for (const auto& f : fields) out->push_back({f.suffix, f.type, f.unit});
    return out;
  }();
  return *specs;
}

template <typename S, size_t N>
void bind(S& stats, const stats::StatGroup& group, const Field<S> (&fields)[N]) {
  for (size_t i = 0; i < N; ++i) {
    const Field<S>& f = fields[i];
    if (f.counter) stats.*f.counter = group.counter(i);
    if (f.gauge) stats.*f.gauge = group.gauge(i);
    if (f.histogram) stats.*f.histogram = group.histogram(i);
  }
}

}  // namespace

ClusterConfigStats::ClusterConfigStats(stats::Store& store, const std::string& stat_name)
    // One registry entry per group instead of one per name (10k clusters x 80 names adds up).
    : group_(store.compactGroup("cluster." + stat_name + ".", kMainSpecs)) {}

void registerClusterTrafficStats(stats::Store& store, const std::string& stat_name) {
  store.group("cluster." + stat_name + ".", specsOf(kTrafficFields));
}

ClusterTrafficStats::ClusterTrafficStats(stats::Store& store, const std::string& stat_name)
    : store_(store), prefix_("cluster." + stat_name + ".") {
  // A second registration of the same prefix returns the same cells.
  bind(*this, store.group(prefix_, specsOf(kTrafficFields)), kTrafficFields);
}

ClusterTrafficStats::~ClusterTrafficStats() {
  for (auto& f : families_) delete f.load();
}

const stats::Counter& ClusterTrafficStats::lazyCounter(std::atomic<const stats::Counter*>& slot,
                                                       const std::string& name) const {
  const stats::Counter* counter = slot.load(std::memory_order_acquire);
  if (counter != nullptr) return *counter;
  // First use of this code on any thread: create under the lock, then publish the pointer.
  std::lock_guard<std::mutex> lock(create_mutex_);
  counter = slot.load(std::memory_order_acquire);
  if (counter == nullptr) {
    owned_counters_.push_back(std::make_unique<stats::Counter>(store_.counter(name)));
    counter = owned_counters_.back().get();
    slot.store(counter, std::memory_order_release);
  }
  return *counter;
}

void ClusterTrafficStats::chargeFamily(Family family, uint32_t code) const {
  static constexpr const char* kFamilyPrefix[kFamilyCount] = {"", "retry.", "internal.", "external."};
  LazyFamily* table = families_[family].load(std::memory_order_acquire);
  if (table == nullptr) {
    // Allocated on the first response of this family: ~4 KB each, most clusters never need one.
    std::lock_guard<std::mutex> lock(create_mutex_);
    table = families_[family].load(std::memory_order_acquire);
    if (table == nullptr) {
      table = new LazyFamily();
      families_[family].store(table, std::memory_order_release);
    }
  }
  LazyFamily& f = *table;
  // Names are only built on the first use of a slot (the locked creation path).
  auto charge = [&](std::atomic<const stats::Counter*>& slot, auto&& suffix) {
    const stats::Counter* counter = slot.load(std::memory_order_acquire);
    if (counter == nullptr) counter = &lazyCounter(slot, prefix_ + kFamilyPrefix[family] + suffix());
    counter->inc();
  };
  charge(f.completed, [] { return std::string("upstream_rq_completed"); });
  const uint32_t group = code / 100;
  if (group >= 1 && group <= 5) {
    charge(f.classes[group - 1], [&] { return "upstream_rq_" + std::to_string(group) + "xx"; });
  }
  if (code >= kMinCode && code <= kMaxCode) {
    charge(f.codes[code - kMinCode], [&] { return "upstream_rq_" + std::to_string(code); });
  }
}

void ClusterTrafficStats::recordResponse(uint32_t code, bool is_retry_attempt_result,
                                         bool internal_request) const {
  if (is_retry_attempt_result) {
    chargeFamily(kRetry, code);
    return;
  }
  chargeFamily(kMain, code);
  chargeFamily(internal_request ? kInternal : kExternal, code);
}

void ClusterTrafficStats::recordResponseTime(uint64_t ms, bool internal_request) const {
  upstream_rq_time.record(ms);
  auto& slot = internal_request ? rq_time_internal_ : rq_time_external_;
  const stats::Histogram* histogram = slot.load(std::memory_order_acquire);
  if (histogram == nullptr) {
    std::lock_guard<std::mutex> lock(create_mutex_);
    histogram = slot.load(std::memory_order_acquire);
    if (histogram == nullptr) {
      const std::string name = prefix_ + (internal_request ? "internal." : "external.") + "upstream_rq_time";
      owned_histograms_.push_back(std::make_unique<stats::Histogram>(store_.histogram(name)));
      histogram = owned_histograms_.back().get();
      slot.store(histogram, std::memory_order_release);
    }
  }
  histogram->record(ms);
}

}  // namespace skiff::upstream
