// Private: the main thread's record of one cluster (shared by cluster_manager.cc and its admin rendering).
#pragma once

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include <memory>
#include <string>
#include <vector>

#include "envoy/config/endpoint/v3/endpoint.pb.h"
#include "skiff/upstream/cluster_manager.h"

namespace skiff::upstream {

struct ClusterManager::Cluster {
  // One DNS name to resolve (STRICT_DNS: every endpoint; LOGICAL_DNS: the only one).
  struct Target {
    explicit Target(asio::io_context& loop) : timer(loop) {}
    std::string dns_name;
    uint16_t port = 0;
    envoy::config::endpoint::v3::LocalityLbEndpoints locality;  // without lb_endpoints
    envoy::config::endpoint::v3::LbEndpoint endpoint;
    bool resolved = false;  // first resolution finished (success or failure)
    std::vector<HostSharedPtr> hosts;
    asio::steady_timer timer;
  };

  ClusterInfoConstSharedPtr info;         // newest version (published or warming); info->name is the name
  ClusterInfoConstSharedPtr active_info;  // last published version
  HostSetConstSharedPtr active_hosts;     // last published hosts
  bool warming = true;                    // `info` not published yet
  // DNS clusters only (a mesh's 10,000s of EDS clusters carry one null pointer instead).
  struct Dns {
    std::vector<std::unique_ptr<Target>> targets;
    std::unique_ptr<DnsResolver> own_resolver;  // when the cluster names its own DNS servers
  };
  std::unique_ptr<Dns> dns;
  Dns& dnsState() {
    if (!dns) dns = std::make_unique<Dns>();
    return *dns;
  }
  size_t targetCount() const { return dns ? dns->targets.size() : 0; }
  Target& target(size_t i) const { return *dns->targets[i]; }
  bool isDns() const {
    return info->type == envoy::config::cluster::v3::Cluster::STRICT_DNS ||
           info->type == envoy::config::cluster::v3::Cluster::LOGICAL_DNS;
  }
};

}  // namespace skiff::upstream
