// Immutable, validated view of one cluster version (static or CDS), shared by the main thread and workers.
#pragma once

#include <asio/ip/address.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "envoy/config/cluster/v3/cluster.pb.h"
#include "skiff/stats/stats.h"
#include "skiff/upstream/cluster_stats.h"
#include "skiff/upstream/resource_manager.h"

namespace skiff::upstream {

class UpstreamTransportFactory;

enum class LbPolicy { kRoundRobin, kLeastRequest, kRandom, kClusterProvided };
enum class DnsLookupFamily { kAuto, kV4Only, kV6Only, kV4Preferred, kAll };

struct ClusterInfo {
  // Validates `config` and resolves its stats. Throws std::invalid_argument naming the offending field.
  ClusterInfo(const envoy::config::cluster::v3::Cluster& config, stats::Store& store, bool added_via_api,
              std::string version_info);
  ClusterInfo(const ClusterInfo&) = delete;
  ClusterInfo& operator=(const ClusterInfo&) = delete;

  std::string name;
  std::string observability_name;  // alt_stat_name or name (as configured)
  std::string stat_name;           // observability_name with ':' -> '_'
  envoy::config::cluster::v3::Cluster::DiscoveryType type = envoy::config::cluster::v3::Cluster::STATIC;
  std::chrono::milliseconds connect_timeout{5000};
  // Effective policy; RING_HASH/MAGLEV/LOAD_BALANCING_POLICY_CONFIG map to round robin (a warning is
  // logged) until those balancers exist. CLUSTER_PROVIDED is required by (and only valid for) ORIGINAL_DST.
  LbPolicy lb_policy = LbPolicy::kRoundRobin;
  uint32_t least_request_choice_count = 2;
  uint32_t healthy_panic_threshold = 50;  // percent; 0 disables panic mode
  uint32_t per_connection_buffer_limit = 1024 * 1024;
  uint32_t max_requests_per_connection = 0;  // 0 = unlimited
  std::chrono::milliseconds idle_timeout{3600000};
  std::optional<std::chrono::milliseconds> max_connection_duration;
  std::optional<asio::ip::address> source_address;  // upstream_bind_config.source_address
  uint16_t source_port = 0;                         // upstream_bind_config.source_address.port_value

  // ORIGINAL_DST: hosts are the downstream connection's original destination (or a request header).
  struct OriginalDst {
    bool use_http_header = false;
    std::string http_header_name = "x-envoy-original-dst-host";  // lower case
    std::optional<uint16_t> port_override;                       // upstream_port_override
    std::chrono::milliseconds cleanup_interval{5000};            // Cluster.cleanup_interval
  };
  std::optional<OriginalDst> original_dst;  // set iff type == ORIGINAL_DST

  // DNS (STRICT_DNS / LOGICAL_DNS).
  DnsLookupFamily dns_lookup_family = DnsLookupFamily::kAuto;
  std::chrono::milliseconds dns_refresh_rate{5000};
  std::chrono::milliseconds dns_failure_refresh_rate{5000};
  bool respect_dns_ttl = false;
  std::string dns_resolvers_csv;  // "ip:port,..." from dns_resolvers / dns_resolution_config; empty = system
  bool dns_use_tcp = false;
  bool dns_no_default_search_domain = false;

  bool added_via_api = false;
  std::string version_info;                    // CDS version that delivered this cluster ("" for static)
  envoy::config::cluster::v3::Cluster config;  // for /config_dump and later TLS/HTTP/2 options

  // transport_socket / transport_socket_matches (see transport_socket.h); null when every connection is
  // plaintext.
  std::shared_ptr<const UpstreamTransportFactory> transport;

  mutable ClusterStats stats;
  mutable ResourceManager resources;       // default priority
  mutable ResourceManager resources_high;  // high priority

  ResourceManager& resourceManager(bool high_priority) const {
    return high_priority ? resources_high : resources;
  }
};

using ClusterInfoConstSharedPtr = std::shared_ptr<const ClusterInfo>;

}  // namespace skiff::upstream
