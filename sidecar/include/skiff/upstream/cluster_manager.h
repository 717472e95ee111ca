// Main-thread owner of every upstream cluster: validates configs, runs DNS, builds host sets and publishes
// (info, hosts) snapshots to workers through one update callback.
#pragma once

#include <asio/io_context.hpp>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/endpoint/v3/endpoint.pb.h"
#include "skiff/stats/stats.h"
#include "skiff/upstream/cluster_info.h"
#include "skiff/upstream/dns_resolver.h"
#include "skiff/upstream/host.h"

namespace skiff::upstream {

class ClusterManager {
 public:
  ClusterManager(asio::io_context& main_loop, stats::Store& store);
  ~ClusterManager();
  ClusterManager(const ClusterManager&) = delete;
  ClusterManager& operator=(const ClusterManager&) = delete;

  // Adds or replaces a cluster (static or CDS). Throws std::invalid_argument naming the field on bad config
  // (the previous version, if any, stays). A replaced DNS/EDS cluster keeps serving its previous version
  // until the new one has its first host set (Envoy's warming).
  void addOrUpdateCluster(const envoy::config::cluster::v3::Cluster& config, bool added_via_api = false,
                          std::string version_info = "");
  bool removeCluster(const std::string& name);

  // info == nullptr: removed. Called on the main thread for every published change, DNS results included.
  using UpdateCb = std::function<void(const std::string& name, ClusterInfoConstSharedPtr info,
                                      HostSetConstSharedPtr hosts)>;
  void setUpdateCallback(UpdateCb cb) { update_cb_ = std::move(cb); }
  // Called once, after start(), when every cluster has its first host set (DNS answered or failed, EDS
  // delivered or markInitialized()).
  void setInitializedCallback(std::function<void()> cb) { initialized_cb_ = std::move(cb); }

  // Publishes the clusters added so far and starts DNS. Before start() nothing is published or resolved.
  void start();

  // STATIC/EDS: replaces the endpoints from a ClusterLoadAssignment (the EDS subscription calls this).
  // Unknown cluster: ignored (returns false). Throws std::invalid_argument on non-IP addresses.
  bool updateEndpoints(const std::string& cluster,
                       const envoy::config::endpoint::v3::ClusterLoadAssignment& cla);
  // Ends warming without hosts (EDS initial_fetch_timeout).
  void markInitialized(const std::string& cluster);

  // Admin /clusters (Envoy text format) and /clusters?format=json (admin.v3.Clusters shape, best effort).
  std::string renderClustersText() const;
  std::string renderClustersJson() const;

  // Last published snapshot (main thread); nullptrs if unknown or still warming.
  ClusterInfoConstSharedPtr info(const std::string& name) const;
  HostSetConstSharedPtr hosts(const std::string& name) const;
  // Newest version, published or warming; nullptr if unknown.
  ClusterInfoConstSharedPtr latestInfo(const std::string& name) const;
  std::vector<std::string> clusterNames() const;
  // Static and CDS configs with their versions, for /config_dump.
  std::vector<ClusterInfoConstSharedPtr> allClusters() const;
  bool initialized() const { return initialized_fired_; }
  const std::string& cdsVersionInfo() const { return cds_version_; }
  void setCdsVersionInfo(std::string version) { cds_version_ = std::move(version); }

  // Tests: options for the default resolver (timeouts) before start().
  void setDnsOptionsForTest(const DnsResolverOptions& options) { dns_test_options_ = options; }

 private:
  struct Cluster;
  bool applyEndpoints(const std::string& cluster,
                      const envoy::config::endpoint::v3::ClusterLoadAssignment& cla, bool is_static_config);
  void publish(Cluster& cluster, ClusterInfoConstSharedPtr info, HostSetConstSharedPtr hosts);
  void startCluster(Cluster& cluster);
  void resolveTarget(const std::shared_ptr<Cluster>& cluster, size_t target_index);
  void onDnsResult(const std::shared_ptr<Cluster>& cluster, size_t target_index, DnsStatus status,
                   const std::vector<DnsResponse>& responses);
  void rebuildDnsHosts(Cluster& cluster);
  void checkInitialized();
  DnsResolver& resolverFor(Cluster& cluster);

  asio::io_context& loop_;
  stats::Store& store_;
  UpdateCb update_cb_;
  std::function<void()> initialized_cb_;
  bool started_ = false;
  bool initialized_fired_ = false;
  std::string cds_version_;
  std::map<std::string, std::shared_ptr<Cluster>> clusters_;
  std::unique_ptr<DnsResolver> default_resolver_;
  DnsResolverOptions dns_test_options_;
  stats::Counter cluster_added_, cluster_modified_, cluster_removed_, cluster_updated_;
  stats::Gauge active_clusters_, warming_clusters_;
};

}  // namespace skiff::upstream
