// Circuit breakers: lock-free resource counters and their circuit_breakers.* gauges.
#include "skiff/upstream/resource_manager.h"

namespace skiff::upstream {

void Resource::init(uint64_t max, stats::Gauge open_gauge, stats::Gauge remaining_gauge) {
  max_ = max;
  open_ = open_gauge;
  remaining_ = remaining_gauge;
  if (remaining_.valid()) {
    // Unlimited resources report a remaining count capped to what a gauge holds.
    const uint64_t capped = std::min<uint64_t>(max_, static_cast<uint64_t>(INT64_MAX));
    remaining_.set(static_cast<int64_t>(capped));
  }
}

bool Resource::tryAcquire() {
  uint64_t current = count_.load(std::memory_order_relaxed);
  do {
    if (current >= max_) return false;
  } while (!count_.compare_exchange_weak(current, current + 1, std::memory_order_relaxed));
  // The thread that reaches the limit opens the breaker; the one that leaves it closes it (release()).
  if (current + 1 == max_) open_.inc();
  if (remaining_.valid()) remaining_.dec();
  return true;
}

void Resource::release() {
  const uint64_t previous = count_.fetch_sub(1, std::memory_order_relaxed);
  if (previous == max_) open_.dec();
  if (remaining_.valid()) remaining_.inc();
}

ResourceManager::ResourceManager(stats::Store& store, const std::string& stat_name,
                                 const std::string& priority_name, const ResourceLimits& limits)
    : limits_(limits) {
  const std::string prefix = "cluster." + stat_name + ".circuit_breakers." + priority_name + ".";
  auto remaining = [&](const char* name) {
    return limits.track_remaining ? store.gauge(prefix + name) : stats::Gauge();
  };
  connections_.init(limits.max_connections, store.gauge(prefix + "cx_open"), remaining("remaining_cx"));
  pending_.init(limits.max_pending_requests, store.gauge(prefix + "rq_pending_open"),
                remaining("remaining_pending"));
  requests_.init(limits.max_requests, store.gauge(prefix + "rq_open"), remaining("remaining_rq"));
  retries_.init(limits.max_retries, store.gauge(prefix + "rq_retry_open"), remaining("remaining_retries"));
  pools_.init(limits.max_connection_pools, store.gauge(prefix + "cx_pool_open"),
              remaining("remaining_cx_pools"));
}

}  // namespace skiff::upstream
