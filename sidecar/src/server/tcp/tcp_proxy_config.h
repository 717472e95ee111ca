// The immutable configuration of one envoy.filters.network.tcp_proxy: clusters, timeouts, stats, logs.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.pb.h"
#include "server/http/connection_manager_config.h"
#include "skiff/accesslog/access_log.h"
#include "skiff/stats/stats.h"

namespace skiff::server {

// tcp.<stat_prefix>.* (Envoy's TCP proxy statistics).
struct TcpProxyStats {
  TcpProxyStats(stats::Store& store, const std::string& prefix);
  stats::Counter downstream_cx_total, downstream_cx_no_route, downstream_cx_tx_bytes_total,
      downstream_cx_rx_bytes_total, downstream_flow_control_paused_reading_total,
      downstream_flow_control_resumed_reading_total, idle_timeout, max_downstream_connection_duration,
      upstream_flush_total;
  stats::Gauge downstream_cx_rx_bytes_buffered, downstream_cx_tx_bytes_buffered, upstream_flush_active;
};

struct TcpProxyConfig {
  using Proto = envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;

  // Throws std::invalid_argument naming `path` and the field.
  TcpProxyConfig(const Proto& proto, const std::string& path, stats::Store& store);

  struct WeightedCluster {
    std::string name;
    uint32_t weight = 1;
  };

  // The cluster for a new connection: the only one, or a weighted pick with `random`.
  const std::string& pickCluster(uint64_t random) const;
  // Writes the session's access log lines on `worker` (each worker has its own sinks). They reach the
  // file on the worker's periodic flushAccessLogs() (or when a sink's buffer fills), not per session.
  void log(uint32_t worker, const http::StreamInfo& info) const;
  // Flushes `worker`'s access log sinks; call on that worker only.
  void flushAccessLogs(uint32_t worker) const;
  bool hasAccessLogs() const { return !access_log_configs.empty(); }

  std::string stat_prefix;
  TcpProxyStats stats;
  std::vector<WeightedCluster> clusters;
  uint64_t total_weight = 0;
  std::chrono::milliseconds idle_timeout{3600 * 1000};  // 0 = disabled
  uint32_t max_connect_attempts = 1;
  std::optional<std::chrono::milliseconds> max_downstream_connection_duration;
  std::vector<AccessLogConfig> access_log_configs;

 private:
  // Per-worker loggers, made on a worker's first log (each slot is touched by its own worker only).
  static constexpr uint32_t kMaxWorkers = 512;
  mutable std::vector<std::unique_ptr<std::vector<std::unique_ptr<accesslog::AccessLog>>>> worker_logs_;
};

using TcpProxyConfigSharedPtr = std::shared_ptr<const TcpProxyConfig>;

}  // namespace skiff::server
