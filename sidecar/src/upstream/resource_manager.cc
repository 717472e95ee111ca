// Circuit breakers: lock-free resource counters and their circuit_breakers.* gauges.
#include "skiff/upstream/resource_manager.h"

#include <span>
#include <vector>

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

void Resource::acquireOverLimit() {
  const uint64_t previous = count_.fetch_add(1, std::memory_order_relaxed);
  if (previous + 1 == max_) open_.inc();
  if (remaining_.valid() && previous < max_) remaining_.dec();
}

void Resource::release() {
  const uint64_t previous = count_.fetch_sub(1, std::memory_order_relaxed);
  if (previous == max_) open_.dec();
  // Units taken over the limit never counted against remaining_.
  if (remaining_.valid() && previous <= max_) remaining_.inc();
}

namespace {

using stats::StatSpec;
using stats::StatType;

// Per priority: the five *_open gauges, then (track_remaining) the five remaining_* gauges.
#define SKIFF_CB(p)                                                 \
  {"circuit_breakers." p ".cx_open", StatType::kGauge},             \
      {"circuit_breakers." p ".rq_pending_open", StatType::kGauge}, \
      {"circuit_breakers." p ".rq_open", StatType::kGauge},         \
      {"circuit_breakers." p ".rq_retry_open", StatType::kGauge}, { \
    "circuit_breakers." p ".cx_pool_open", StatType::kGauge         \
  }
#define SKIFF_CB_REMAINING(p)                                           \
  {"circuit_breakers." p ".remaining_cx", StatType::kGauge},            \
      {"circuit_breakers." p ".remaining_pending", StatType::kGauge},   \
      {"circuit_breakers." p ".remaining_rq", StatType::kGauge},        \
      {"circuit_breakers." p ".remaining_retries", StatType::kGauge}, { \
    "circuit_breakers." p ".remaining_cx_pools", StatType::kGauge       \
  }
const StatSpec kDefault[] = {SKIFF_CB("default")};
const StatSpec kDefaultRemaining[] = {SKIFF_CB("default"), SKIFF_CB_REMAINING("default")};
const StatSpec kHigh[] = {SKIFF_CB("high")};
const StatSpec kHighRemaining[] = {SKIFF_CB("high"), SKIFF_CB_REMAINING("high")};
#undef SKIFF_CB
#undef SKIFF_CB_REMAINING

std::span<const StatSpec> specsFor(const std::string& priority, bool remaining) {
  if (priority == "high") return remaining ? std::span<const StatSpec>(kHighRemaining) : kHigh;
  return remaining ? std::span<const StatSpec>(kDefaultRemaining) : kDefault;
}

}  // namespace

ResourceManager::ResourceManager(stats::Store& store, const std::string& stat_name,
                                 const std::string& priority_name, const ResourceLimits& limits)
    : limits_(limits) {
  const std::string prefix = "cluster." + stat_name + ".";
  const bool track = limits.track_remaining;
  std::span<const StatSpec> specs;
  if (priority_name == "default" || priority_name == "high") specs = specsFor(priority_name, track);
  stats::StatGroup group;
  auto gauge = [&](size_t i, const char* name) {
    if (!specs.empty()) return group.gauge(i);
    return store.gauge(prefix + "circuit_breakers." + priority_name + "." + name);
  };
  if (!specs.empty()) group = store.group(prefix, specs);
  auto remaining = [&](size_t i, const char* name) { return track ? gauge(5 + i, name) : stats::Gauge(); };
  connections_.init(limits.max_connections, gauge(0, "cx_open"), remaining(0, "remaining_cx"));
  pending_.init(limits.max_pending_requests, gauge(1, "rq_pending_open"), remaining(1, "remaining_pending"));
  requests_.init(limits.max_requests, gauge(2, "rq_open"), remaining(2, "remaining_rq"));
  retries_.init(limits.max_retries, gauge(3, "rq_retry_open"), remaining(3, "remaining_retries"));
  pools_.init(limits.max_connection_pools, gauge(4, "cx_pool_open"), remaining(4, "remaining_cx_pools"));
}

void registerCircuitBreakerStats(stats::Store& store, const std::string& stat_name,
                                 const std::string& priority_name, bool track_remaining) {
  if (priority_name != "default" && priority_name != "high") return;
  store.group("cluster." + stat_name + ".", specsFor(priority_name, track_remaining));
}

}  // namespace skiff::upstream
