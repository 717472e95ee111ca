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
  auto it = clusters_.find(name);
  if (!info) {
    if (it != clusters_.end()) clusters_.erase(it);
    return;
  }
  if (it == clusters_.end()) {
    const std::string_view key = info->name;  // the ClusterInfo does not move with the shared_ptr
    clusters_.try_emplace(key, std::move(info), std::move(hosts), lb_seed_);
    return;
  }
  if (it->second.infoPtr() == info) {
    it->second.update(std::move(info), std::move(hosts));
    return;
  }
  // The key views the old ClusterInfo's name: take the node out while that is alive, then re-key it.
  auto node = clusters_.extract(it);
  node.mapped().update(std::move(info), std::move(hosts));
  node.key() = node.mapped().info().name;
  clusters_.insert(std::move(node));
}

ThreadLocalCluster* ThreadLocalClusterManager::get(std::string_view name) {
  auto it = clusters_.find(name);
  return it == clusters_.end() ? nullptr : &it->second;
}

}  // namespace skiff::upstream
