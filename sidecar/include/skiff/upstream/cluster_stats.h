// Stats of one cluster (cluster.<stat_name>.*), resolved once per cluster version so that the request path
// only touches pre-built handles.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "skiff/stats/stats.h"

namespace skiff::upstream {

// Written by the main thread (discovery, membership), registered for every cluster. Handles are made on
// each call from one compact group (24 bytes instead of 13 handles: 10,000s of clusters).
class ClusterConfigStats {
 public:
  // `stat_name` is the cluster's observability name with ':' already replaced by '_'.
  ClusterConfigStats(stats::Store& store, const std::string& stat_name);

  stats::Counter membership_change() const { return group_.counter(0); }
  stats::Counter update_attempt() const { return group_.counter(1); }
  stats::Counter update_success() const { return group_.counter(2); }
  stats::Counter update_failure() const { return group_.counter(3); }
  stats::Counter update_empty() const { return group_.counter(4); }
  stats::Counter update_no_rebuild() const { return group_.counter(5); }
  stats::Counter config_reload() const { return group_.counter(6); }
  stats::Gauge membership_total() const { return group_.gauge(7); }
  stats::Gauge membership_healthy() const { return group_.gauge(8); }
  stats::Gauge membership_degraded() const { return group_.gauge(9); }
  stats::Gauge membership_excluded() const { return group_.gauge(10); }
  stats::Gauge max_host_weight() const { return group_.gauge(11); }
  stats::Gauge version() const { return group_.gauge(12); }

 private:
  stats::CompactStatGroup group_;  // in the order of the accessors above
};

// Written by workers when the cluster carries traffic. A ClusterInfo creates its set on first use (Envoy's
// deferred stats): with thousands of clusters most never see a request, and their handles would cost
// ~600 bytes each. The names are registered eagerly (registerClusterTrafficStats) so /stats lists them.
struct ClusterTrafficStats {
  ClusterTrafficStats(stats::Store& store, const std::string& stat_name);
  ~ClusterTrafficStats();
  ClusterTrafficStats(const ClusterTrafficStats&) = delete;
  ClusterTrafficStats& operator=(const ClusterTrafficStats&) = delete;

  // Connections.
  stats::Counter upstream_cx_total, upstream_cx_http1_total, upstream_cx_http2_total,
      upstream_cx_connect_fail, upstream_cx_connect_timeout, upstream_cx_idle_timeout,
      upstream_cx_max_duration_reached, upstream_cx_connect_attempts_exceeded, upstream_cx_overflow,
      upstream_cx_destroy, upstream_cx_destroy_local, upstream_cx_destroy_remote,
      upstream_cx_destroy_with_active_rq, upstream_cx_destroy_local_with_active_rq,
      upstream_cx_destroy_remote_with_active_rq, upstream_cx_close_notify, upstream_cx_rx_bytes_total,
      upstream_cx_tx_bytes_total, upstream_cx_pool_overflow, upstream_cx_protocol_error,
      upstream_cx_max_requests, upstream_cx_none_healthy;
  stats::Gauge upstream_cx_active, upstream_cx_rx_bytes_buffered, upstream_cx_tx_bytes_buffered;
  stats::Histogram upstream_cx_connect_ms, upstream_cx_length_ms;

  // Requests.
  stats::Counter upstream_rq_total, upstream_rq_pending_total, upstream_rq_active_overflow,
      upstream_rq_pending_overflow, upstream_rq_pending_failure_eject, upstream_rq_cancelled,
      upstream_rq_maintenance_mode, upstream_rq_timeout, upstream_rq_max_duration_reached,
      upstream_rq_per_try_timeout, upstream_rq_rx_reset, upstream_rq_tx_reset, upstream_rq_retry,
      upstream_rq_retry_backoff_exponential, upstream_rq_retry_backoff_ratelimited,
      upstream_rq_retry_limit_exceeded, upstream_rq_retry_success, upstream_rq_retry_overflow,
      retry_or_shadow_abandoned;
  stats::Gauge upstream_rq_active, upstream_rq_pending_active;
  stats::Histogram upstream_rq_per_cx, upstream_rq_time;

  // Flow control.
  stats::Counter upstream_flow_control_paused_reading_total, upstream_flow_control_resumed_reading_total,
      upstream_flow_control_backed_up_total, upstream_flow_control_drained_total;

  stats::Counter bind_errors;
  // Load balancer.
  stats::Counter lb_healthy_panic;

  // Charges one upstream response code the way Envoy's router does:
  //  - a final response: upstream_rq_completed, upstream_rq_<N>xx, upstream_rq_<code>, and the same three
  //    under "internal." or "external." (by `internal_request`, i.e. x-envoy-internal);
  //  - the response of an attempt that is about to be retried (is_retry_attempt_result): ONLY
  //    retry.upstream_rq_completed, retry.upstream_rq_<N>xx, retry.upstream_rq_<code> (Envoy charges the
  //    retried attempt's code under "retry." instead of the main names).
  // Handles are created on first use and cached in fixed arrays; later calls take no lock.
  void recordResponse(uint32_t code, bool is_retry_attempt_result, bool internal_request = false) const;
  // upstream_rq_time and its internal./external. twin (Envoy's response timing charge).
  void recordResponseTime(uint64_t ms, bool internal_request = false) const;

 private:
  enum Family { kMain, kRetry, kInternal, kExternal, kFamilyCount };
  static constexpr uint32_t kMinCode = 100, kMaxCode = 599;
  struct LazyFamily {
    std::array<std::atomic<const stats::Counter*>, kMaxCode - kMinCode + 1> codes{};
    std::array<std::atomic<const stats::Counter*>, 5> classes{};
    std::atomic<const stats::Counter*> completed{nullptr};
  };

  const stats::Counter& lazyCounter(std::atomic<const stats::Counter*>& slot, const std::string& name) const;
  void chargeFamily(Family family, uint32_t code) const;

  stats::Store& store_;
  std::string prefix_;  // "cluster.<name>."
  mutable std::array<std::atomic<LazyFamily*>, kFamilyCount> families_{};
  mutable std::atomic<const stats::Histogram*> rq_time_internal_{nullptr}, rq_time_external_{nullptr};
  mutable std::mutex create_mutex_;
  mutable std::vector<std::unique_ptr<stats::Counter>> owned_counters_;
  mutable std::vector<std::unique_ptr<stats::Histogram>> owned_histograms_;
};

// Registers the names of a cluster's traffic stats (no handles are made; their cells stay uncommitted
// until a worker writes one).
void registerClusterTrafficStats(stats::Store& store, const std::string& stat_name);

// Both sets at once, for code that keeps a cluster's stats on its own (tests, tools).
struct ClusterStats : ClusterConfigStats, ClusterTrafficStats {
  ClusterStats(stats::Store& store, const std::string& stat_name)
      : ClusterConfigStats(store, stat_name), ClusterTrafficStats(store, stat_name) {}
};

// Envoy's stat-name form of a cluster name: ':' becomes '_'.
std::string sanitizeClusterStatName(std::string name);

}  // namespace skiff::upstream
