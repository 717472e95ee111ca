// Worker-side view of the clusters: the lead posts updates from the main thread; requests read without locks.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "skiff/upstream/cluster_info.h"
#include "skiff/upstream/host.h"
#include "skiff/upstream/load_balancer.h"

namespace skiff::upstream {

class ThreadLocalCluster {
 public:
  ThreadLocalCluster(ClusterInfoConstSharedPtr info, HostSetConstSharedPtr hosts, uint64_t lb_seed = 0);

  const ClusterInfo& info() const { return *info_; }
  const ClusterInfoConstSharedPtr& infoPtr() const { return info_; }
  const HostSet& hosts() const { return *hosts_; }
  const HostSetConstSharedPtr& hostsPtr() const { return hosts_; }

  using LbContext = upstream::LbContext;
  // nullptr when no usable host (caller: 503 UH, upstream_cx_none_healthy).
  HostSharedPtr chooseHost(const LbContext& ctx) { return balancer().chooseHost(ctx); }
  // Balancer housekeeping (ORIGINAL_DST host cleanup); a worker timer may call it, chooseHost also does.
  void cleanup(std::chrono::steady_clock::time_point now) {
    if (lb_) lb_->cleanup(now);
  }

  // New cluster version and/or host set: the balancer is rebuilt on the next pick. Built lazily because a
  // mesh has thousands of clusters and a worker talks to few of them.
  void update(ClusterInfoConstSharedPtr info, HostSetConstSharedPtr hosts);

 private:
  LoadBalancer& balancer() {
    if (!lb_) lb_ = createLoadBalancer(*info_, hosts_, lb_seed_);
    return *lb_;
  }

  ClusterInfoConstSharedPtr info_;
  HostSetConstSharedPtr hosts_;
  std::unique_ptr<LoadBalancer> lb_;  // null until the first pick after an update
  uint64_t lb_seed_;
};

class ThreadLocalClusterManager {
 public:
  // `lb_seed` != 0 makes every balancer deterministic (tests).
  explicit ThreadLocalClusterManager(uint64_t lb_seed = 0) : lb_seed_(lb_seed) {}

  // Runs on the worker. nullptr info removes the cluster. An update keeps the ThreadLocalCluster object,
  // so pointers from get() stay valid until the cluster is removed (in-flight requests that must outlive a
  // removal hold infoPtr()/hostsPtr() or the HostSharedPtr they chose).
  void update(const std::string& name, ClusterInfoConstSharedPtr info, HostSetConstSharedPtr hosts);
  // nullptr if unknown (caller: 503 NC).
  ThreadLocalCluster* get(std::string_view name);
  size_t size() const { return clusters_.size(); }
  // Balancer housekeeping for every cluster (the worker's periodic timer), so ORIGINAL_DST hosts go away
  // when traffic stops too.
  void cleanup(std::chrono::steady_clock::time_point now) {
    for (auto& [name, cluster] : clusters_) cluster.cleanup(now);
  }

 private:
  // noexcept: the table then keeps no hash per node (libstdc++ caches it for hashes that may throw).
  struct Hash {
    size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  // By value: one allocation per cluster per worker (the node, 80 bytes), pointers stay valid across
  // rehashes. Keyed by a view of the entry's own ClusterInfo::name (no second copy of the name per worker);
  // a new ClusterInfo re-keys the node in place.
  std::unordered_map<std::string_view, ThreadLocalCluster, Hash> clusters_;
  uint64_t lb_seed_;
};

}  // namespace skiff::upstream
