// Cluster stats: eager handles for the fixed names, lazily created per-response-code counters.
#include "skiff/upstream/cluster_stats.h"

#include <algorithm>

namespace skiff::upstream {

std::string sanitizeClusterStatName(std::string name) {
  std::replace(name.begin(), name.end(), ':', '_');
  return name;
}

ClusterStats::ClusterStats(stats::Store& store, const std::string& stat_name)
    : store_(store), prefix_("cluster." + stat_name + ".") {
  auto c = [&](const char* n) { return store.counter(prefix_ + n); };
  auto g = [&](const char* n) { return store.gauge(prefix_ + n); };
  auto h = [&](const char* n) { return store.histogram(prefix_ + n); };
  auto hu = [&](const char* n) { return store.histogram(prefix_ + n, stats::Histogram::Unit::kUnspecified); };

  upstream_cx_total = c("upstream_cx_total");
  upstream_cx_http1_total = c("upstream_cx_http1_total");
  upstream_cx_http2_total = c("upstream_cx_http2_total");
  upstream_cx_connect_fail = c("upstream_cx_connect_fail");
  upstream_cx_connect_timeout = c("upstream_cx_connect_timeout");
  upstream_cx_idle_timeout = c("upstream_cx_idle_timeout");
  upstream_cx_max_duration_reached = c("upstream_cx_max_duration_reached");
  upstream_cx_connect_attempts_exceeded = c("upstream_cx_connect_attempts_exceeded");
  upstream_cx_overflow = c("upstream_cx_overflow");
  upstream_cx_destroy = c("upstream_cx_destroy");
  upstream_cx_destroy_local = c("upstream_cx_destroy_local");
  upstream_cx_destroy_remote = c("upstream_cx_destroy_remote");
  upstream_cx_destroy_with_active_rq = c("upstream_cx_destroy_with_active_rq");
  upstream_cx_destroy_local_with_active_rq = c("upstream_cx_destroy_local_with_active_rq");
  upstream_cx_destroy_remote_with_active_rq = c("upstream_cx_destroy_remote_with_active_rq");
  upstream_cx_close_notify = c("upstream_cx_close_notify");
  upstream_cx_rx_bytes_total = c("upstream_cx_rx_bytes_total");
  upstream_cx_tx_bytes_total = c("upstream_cx_tx_bytes_total");
  upstream_cx_pool_overflow = c("upstream_cx_pool_overflow");
  upstream_cx_protocol_error = c("upstream_cx_protocol_error");
  upstream_cx_max_requests = c("upstream_cx_max_requests");
  upstream_cx_none_healthy = c("upstream_cx_none_healthy");
  upstream_cx_active = g("upstream_cx_active");
  upstream_cx_rx_bytes_buffered = g("upstream_cx_rx_bytes_buffered");
  upstream_cx_tx_bytes_buffered = g("upstream_cx_tx_bytes_buffered");
  upstream_cx_connect_ms = h("upstream_cx_connect_ms");
  upstream_cx_length_ms = h("upstream_cx_length_ms");

  upstream_rq_total = c("upstream_rq_total");
  upstream_rq_pending_total = c("upstream_rq_pending_total");
  upstream_rq_active_overflow = c("upstream_rq_active_overflow");
  upstream_rq_pending_overflow = c("upstream_rq_pending_overflow");
  upstream_rq_pending_failure_eject = c("upstream_rq_pending_failure_eject");
  upstream_rq_cancelled = c("upstream_rq_cancelled");
  upstream_rq_maintenance_mode = c("upstream_rq_maintenance_mode");
  upstream_rq_timeout = c("upstream_rq_timeout");
  upstream_rq_max_duration_reached = c("upstream_rq_max_duration_reached");
  upstream_rq_per_try_timeout = c("upstream_rq_per_try_timeout");
  upstream_rq_rx_reset = c("upstream_rq_rx_reset");
  upstream_rq_tx_reset = c("upstream_rq_tx_reset");
  upstream_rq_retry = c("upstream_rq_retry");
  upstream_rq_retry_backoff_exponential = c("upstream_rq_retry_backoff_exponential");
  upstream_rq_retry_backoff_ratelimited = c("upstream_rq_retry_backoff_ratelimited");
  upstream_rq_retry_limit_exceeded = c("upstream_rq_retry_limit_exceeded");
  upstream_rq_retry_success = c("upstream_rq_retry_success");
  upstream_rq_retry_overflow = c("upstream_rq_retry_overflow");
  retry_or_shadow_abandoned = c("retry_or_shadow_abandoned");
  upstream_rq_active = g("upstream_rq_active");
  upstream_rq_pending_active = g("upstream_rq_pending_active");
  upstream_rq_per_cx = hu("upstream_rq_per_cx");
  upstream_rq_time = h("upstream_rq_time");

  upstream_flow_control_paused_reading_total = c("upstream_flow_control_paused_reading_total");
  upstream_flow_control_resumed_reading_total = c("upstream_flow_control_resumed_reading_total");
  upstream_flow_control_backed_up_total = c("upstream_flow_control_backed_up_total");
  upstream_flow_control_drained_total = c("upstream_flow_control_drained_total");

  membership_change = c("membership_change");
  update_attempt = c("update_attempt");
  update_success = c("update_success");
  update_failure = c("update_failure");
  update_empty = c("update_empty");
  update_no_rebuild = c("update_no_rebuild");
  config_reload = c("config_reload");
  bind_errors = c("bind_errors");
  membership_total = g("membership_total");
  membership_healthy = g("membership_healthy");
  membership_degraded = g("membership_degraded");
  membership_excluded = g("membership_excluded");
  max_host_weight = g("max_host_weight");
  version = g("version");

  lb_healthy_panic = c("lb_healthy_panic");
}

const stats::Counter& ClusterStats::lazyCounter(std::atomic<const stats::Counter*>& slot,
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

void ClusterStats::chargeFamily(Family family, uint32_t code) const {
  static constexpr const char* kFamilyPrefix[kFamilyCount] = {"", "retry.", "internal.", "external."};
  LazyFamily& f = families_[family];
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

void ClusterStats::recordResponse(uint32_t code, bool is_retry_attempt_result, bool internal_request) const {
  if (is_retry_attempt_result) {
    chargeFamily(kRetry, code);
    return;
  }
  chargeFamily(kMain, code);
  chargeFamily(internal_request ? kInternal : kExternal, code);
}

void ClusterStats::recordResponseTime(uint64_t ms, bool internal_request) const {
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
