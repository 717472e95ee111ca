// Per-worker load balancers. Each worker owns its own instance (no sharing, no locks); a new instance is
// built whenever the worker receives a new host set.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>

#include "skiff/network/connection_info.h"
#include "skiff/upstream/cluster_info.h"
#include "skiff/upstream/host.h"

namespace skiff::upstream {

struct LbContext {
  uint64_t hash = 0;
  bool has_hash = false;        // unused until RING_HASH/MAGLEV exist
  const Host* avoid = nullptr;  // previous attempt's host: skipped when another candidate exists
  // ORIGINAL_DST inputs: the downstream connection (its restored `local` is the destination) and the
  // value of the cluster's override header (original_dst_lb_config.use_http_header), empty if absent.
  const network::ConnectionInfo* connection = nullptr;
  std::string_view override_host;
};

class LoadBalancer {
 public:
  virtual ~LoadBalancer() = default;
  // nullptr when the cluster has no usable host (caller: 503 UH and upstream_cx_none_healthy).
  virtual HostSharedPtr chooseHost(const LbContext& ctx) = 0;
  // Periodic housekeeping (ORIGINAL_DST drops hosts unused for a cleanup interval). Default: nothing.
  virtual void cleanup(std::chrono::steady_clock::time_point /*now*/) {}
};

// ORIGINAL_DST (lb_policy CLUSTER_PROVIDED): the host is the override header's "ip:port" when the
// cluster uses it and it parses, else the downstream connection's restored original destination
// (upstream_port_override replaces the port). Hosts are made on demand and kept per worker; cleanup()
// removes hosts not chosen since the previous cleanup once cleanup_interval has passed (chooseHost runs
// it lazily too). No destination -> nullptr (caller: 503 UH).
class OriginalDstLoadBalancer : public LoadBalancer {
 public:
  explicit OriginalDstLoadBalancer(const ClusterInfo& info);
  HostSharedPtr chooseHost(const LbContext& ctx) override;
  void cleanup(std::chrono::steady_clock::time_point now) override;
  size_t hostCount() const { return hosts_.size(); }

 private:
  struct Entry {
    HostSharedPtr host;
    bool used = true;  // chosen since the last cleanup
  };
  const ClusterInfo& info_;
  std::unordered_map<asio::ip::tcp::endpoint, Entry, EndpointHash> hosts_;
  std::chrono::steady_clock::time_point last_cleanup_ = std::chrono::steady_clock::now();
};

// "1.2.3.4:80" or "[::1]:80" -> endpoint; nullopt if it is not an IP literal with a port.
std::optional<asio::ip::tcp::endpoint> parseIpPort(std::string_view text);

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
