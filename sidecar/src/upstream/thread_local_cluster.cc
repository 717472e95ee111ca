// Worker-side cluster table: applies posted snapshots and owns each cluster's load balancer.
#include "skiff/upstream/thread_local_cluster.h"

namespace skiff::upstream {

ThreadLocalCluster::ThreadLocalCluster(ClusterInfoConstSharedPtr info, HostSetConstSharedPtr hosts,
                                       uint64_t lb_seed)
    : lb_seed_(lb_seed) {
  update(std::move(info), std::move(hosts));
}

void ThreadLocalCluster::update(ClusterInfoConstSharedPtr info, HostSetConstSharedPtr hosts) {
  static const HostSetConstSharedPtr kEmpty = std::make_shared<const HostSet>();
  if (!hosts) hosts = kEmpty;
  lb_.reset();  // before the info it references goes
  info_ = std::move(info);
  hosts_ = std::move(hosts);
}

void ThreadLocalClusterManager::update(const std::string& name, ClusterInfoConstSharedPtr info,
                                       HostSetConstSharedPtr hosts) {
  if (!info) {
    clusters_.erase(name);
    return;
  }
  auto it = clusters_.find(name);
  if (it == clusters_.end()) {
    clusters_.try_emplace(name, std::move(info), std::move(hosts), lb_seed_);
  } else {
    it->second.update(std::move(info), std::move(hosts));
  }
}

ThreadLocalCluster* ThreadLocalClusterManager::get(std::string_view name) {
  auto it = clusters_.find(name);
  return it == clusters_.end() ? nullptr : &it->second;
}

}  // namespace skiff::upstream
