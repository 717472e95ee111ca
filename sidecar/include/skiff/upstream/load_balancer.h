// Per-worker load balancers. Each worker owns its own instance (no sharing, no locks); a new instance is
// built whenever the worker receives a new host set.
#pragma once

#include <cstdint>
#include <memory>
#include <random>

#include "skiff/upstream/cluster_info.h"
#include "skiff/upstream/host.h"

namespace skiff::upstream {

struct LbContext {
  uint64_t hash = 0;
  bool has_hash = false;        // unused until RING_HASH/MAGLEV exist
  const Host* avoid = nullptr;  // previous attempt's host: skipped when another candidate exists
};

class LoadBalancer {
 public:
  virtual ~LoadBalancer() = default;
  // nullptr when the cluster has no usable host (caller: 503 UH and upstream_cx_none_healthy).
  virtual HostSharedPtr chooseHost(const LbContext& ctx) = 0;
};

// Builds the balancer for `info.lb_policy` over `hosts`.
//
// Host selection (simplified from Envoy, documented here once):
//  - Hosts are grouped by priority; the lowest priority with a healthy host is used.
//  - Panic: when healthy hosts are fewer than healthy_panic_threshold percent of all hosts (default 50%),
//    the balancer picks among ALL hosts of the lowest priority, healthy or not, and bumps lb_healthy_panic.
//    With threshold 0, panic is off and "no healthy host" returns nullptr.
//  - ROUND_ROBIN: equal weights rotate strictly; unequal weights use earliest-deadline-first scheduling,
//    so each host gets a share proportional to its weight, interleaved.
//  - LEAST_REQUEST: `choice_count` random candidates (default 2), fewest rq_active wins; with unequal
//    weights candidates are drawn weighted.
//  - RANDOM: uniform over the candidate hosts.
// `seed` makes tests deterministic; 0 picks a random seed.
std::unique_ptr<LoadBalancer> createLoadBalancer(const ClusterInfo& info, const HostSetConstSharedPtr& hosts,
                                                 uint64_t seed = 0);

}  // namespace skiff::upstream
