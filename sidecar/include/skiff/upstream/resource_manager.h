// Circuit breakers of one cluster priority: lock-free counters shared by every worker.
#pragma once

#include <atomic>
#include <cstdint>
#include <limits>
#include <string>

#include "skiff/stats/stats.h"

namespace skiff::upstream {

struct ResourceLimits {
  uint64_t max_connections = 1024;
  uint64_t max_pending_requests = 1024;
  uint64_t max_requests = 1024;
  uint64_t max_retries = 3;
  uint64_t max_connection_pools = std::numeric_limits<uint64_t>::max();  // unlimited
  bool track_remaining = false;
};

// One resource (connections, pending requests, ...): a counter against a maximum, with Envoy's
// circuit_breakers.<priority>.<x>_open gauge (1 while the count is at the limit) and, when tracked,
// remaining_<x>. The gauges are moved with inc/dec by whichever thread crosses the limit, so the
// per-thread stat cells always sum to the right value.
class Resource {
 public:
  Resource() = default;
  void init(uint64_t max, stats::Gauge open_gauge, stats::Gauge remaining_gauge);
  // Takes one unit if below the maximum. False means "overflow": the caller bumps the overflow counter.
  bool tryAcquire();
  // Takes one unit even at the maximum: Envoy's pools open a first connection to a host they have none to,
  // or a request queued there could never be served (the other workers may hold every connection).
  void acquireOverLimit();
  void release();
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  uint64_t max() const { return max_; }
  bool canCreate() const { return count() < max_; }

 private:
  std::atomic<uint64_t> count_{0};
  uint64_t max_ = 0;
  stats::Gauge open_;
  stats::Gauge remaining_;  // invalid unless track_remaining
};

// Caller contract for overflow counters (the ResourceManager never bumps them itself):
//  - connection pool, tryAcquireConnection() false  -> cluster upstream_cx_overflow
//  - connection pool, tryAcquirePending() false     -> upstream_rq_pending_overflow (503 UO)
//  - router,          tryAcquireRequest() false     -> upstream_rq_pending_overflow as Envoy does (503 UO)
//  - router,          tryAcquireRetry() false       -> upstream_rq_retry_overflow
//  - pool manager,    tryAcquireConnectionPool() false -> upstream_cx_pool_overflow
class ResourceManager {
 public:
  // `priority_name` is "default" or "high"; stats live under cluster.<stat_name>.circuit_breakers.<p>.
  ResourceManager(stats::Store& store, const std::string& stat_name, const std::string& priority_name,
                  const ResourceLimits& limits);
  ResourceManager(const ResourceManager&) = delete;
  ResourceManager& operator=(const ResourceManager&) = delete;

  bool tryAcquireConnection() { return connections_.tryAcquire(); }
  void acquireConnectionOverLimit() { connections_.acquireOverLimit(); }
  void releaseConnection() { connections_.release(); }
  bool tryAcquirePending() { return pending_.tryAcquire(); }
  void releasePending() { pending_.release(); }
  bool tryAcquireRequest() { return requests_.tryAcquire(); }
  void releaseRequest() { requests_.release(); }
  bool tryAcquireRetry() { return retries_.tryAcquire(); }
  void releaseRetry() { retries_.release(); }
  bool tryAcquireConnectionPool() { return pools_.tryAcquire(); }
  void releaseConnectionPool() { pools_.release(); }

  const Resource& connections() const { return connections_; }
  const Resource& pendingRequests() const { return pending_; }
  const Resource& requests() const { return requests_; }
  const Resource& retries() const { return retries_; }
  const Resource& connectionPools() const { return pools_; }
  const ResourceLimits& limits() const { return limits_; }

 private:
  ResourceLimits limits_;
  Resource connections_, pending_, requests_, retries_, pools_;
};

// Registers the circuit_breakers.<priority>.* names of a cluster without making a manager (their cells
// stay uncommitted until written); a ResourceManager made later for the same names uses the same cells.
void registerCircuitBreakerStats(stats::Store& store, const std::string& stat_name,
                                 const std::string& priority_name, bool track_remaining);

}  // namespace skiff::upstream
