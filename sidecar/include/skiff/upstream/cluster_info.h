// Immutable, validated view of one cluster version (static or CDS), shared by the main thread and workers.
#pragma once

#include <asio/ip/address.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "envoy/config/cluster/v3/cluster.pb.h"
#include "skiff/stats/stats.h"
#include "skiff/upstream/cluster_stats.h"
#include "skiff/upstream/host.h"
#include "skiff/upstream/resource_manager.h"

namespace skiff::upstream {

class UpstreamTransportFactory;

struct ClusterInfo;

// A cluster priority's circuit breakers, created on first use (most of a mesh's clusters never carry
// traffic; a ResourceManager is ~200 bytes). Reads like the ResourceManager it holds. Creating it is
// thread-safe; its stats names are registered with the cluster, so /stats lists them from the start.
class ClusterResources {
 public:
  ClusterResources(const ClusterInfo& owner, bool high, const ResourceLimits& limits);
  ~ClusterResources();
  ClusterResources(const ClusterResources&) = delete;
  ClusterResources& operator=(const ClusterResources&) = delete;

  ResourceManager& get() const;
  operator ResourceManager&() const { return get(); }  // NOLINT: reads as the manager

  bool tryAcquireConnection() const { return get().tryAcquireConnection(); }
  void acquireConnectionOverLimit() const { get().acquireConnectionOverLimit(); }
  void releaseConnection() const { get().releaseConnection(); }
  bool tryAcquirePending() const { return get().tryAcquirePending(); }
  void releasePending() const { get().releasePending(); }
  bool tryAcquireRequest() const { return get().tryAcquireRequest(); }
  void releaseRequest() const { get().releaseRequest(); }
  bool tryAcquireRetry() const { return get().tryAcquireRetry(); }
  void releaseRetry() const { get().releaseRetry(); }
  bool tryAcquireConnectionPool() const { return get().tryAcquireConnectionPool(); }
  void releaseConnectionPool() const { get().releaseConnectionPool(); }
  const Resource& connections() const { return get().connections(); }
  const Resource& pendingRequests() const { return get().pendingRequests(); }
  const Resource& requests() const { return get().requests(); }
  const Resource& retries() const { return get().retries(); }
  const Resource& connectionPools() const { return get().connectionPools(); }

  // Without creating the manager (admin rendering of thousands of clusters).
  const ResourceLimits& limits() const;
  bool created() const { return manager_.load(std::memory_order_acquire) != nullptr; }

 private:
  const ClusterInfo& owner_;
  std::unique_ptr<const ResourceLimits> limits_;  // null: Envoy's defaults
  mutable std::atomic<ResourceManager*> manager_{nullptr};
  const bool high_;
};

enum class LbPolicy { kRoundRobin, kLeastRequest, kRandom, kClusterProvided };
enum class DnsLookupFamily { kAuto, kV4Only, kV6Only, kV4Preferred, kAll };

struct ClusterInfo {
  // Validates `config` and resolves its stats. Throws std::invalid_argument naming the offending field.
  ClusterInfo(const envoy::config::cluster::v3::Cluster& config, stats::Store& store, bool added_via_api,
              std::string version_info);
  ~ClusterInfo();
  ClusterInfo(const ClusterInfo&) = delete;
  ClusterInfo& operator=(const ClusterInfo&) = delete;

  std::string name;

 private:
  // alt_stat_name and the stat name when either differs from `name` (rare); null otherwise, so the usual
  // cluster keeps one copy of its name instead of three.
  struct OtherNames {
    std::string observability, stat;
  };
  std::unique_ptr<const OtherNames> other_names_;
  static std::unique_ptr<const OtherNames> otherNames(const envoy::config::cluster::v3::Cluster& cfg,
                                                      const std::string& name);

 public:
  const std::string& observability_name;  // alt_stat_name or name (as configured)
  const std::string& stat_name;           // observability_name with ':' -> '_'
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
  std::unique_ptr<const OriginalDst> original_dst;  // set iff type == ORIGINAL_DST (rare: not inline)

  // DNS (STRICT_DNS / LOGICAL_DNS).
  DnsLookupFamily dns_lookup_family = DnsLookupFamily::kAuto;
  std::chrono::milliseconds dns_refresh_rate{5000};
  std::chrono::milliseconds dns_failure_refresh_rate{5000};
  bool respect_dns_ttl = false;
  OptionalString
      dns_resolvers_csv;  // "ip:port,..." from dns_resolvers / dns_resolution_config; empty = system
  bool dns_use_tcp = false;
  bool dns_no_default_search_domain = false;

  bool added_via_api = false;
  // CDS version that delivered this cluster ("" for static). Shared with the clusters built before it when
  // equal (a SotW push gives 10,000s of clusters one version).
  const std::string& versionInfo() const { return *version_info_; }
  // The cluster as configured, decoded from the bytes kept (a decoded Cluster costs ~1 KB per cluster and
  // is rarely read after construction: pools read their protocol options once, admin reads it).
  envoy::config::cluster::v3::Cluster config() const;
  // Its deterministic serialization; equal bytes mean an equal cluster.
  const std::string& configBytes() const { return config_bytes_; }

  // transport_socket / transport_socket_matches (see transport_socket.h); null when every connection is
  // plaintext.
  std::shared_ptr<const UpstreamTransportFactory> transport;

  // Main-thread stats (membership, updates).
  mutable ClusterConfigStats stats;
  // Traffic stats (upstream_cx_*, upstream_rq_*, ...), created on the first call from any thread.
  ClusterTrafficStats& trafficStats() const;
  mutable ClusterResources resources;       // default priority
  mutable ClusterResources resources_high;  // high priority

  ResourceManager& resourceManager(bool high_priority) const {
    return high_priority ? resources_high.get() : resources.get();
  }

 private:
  friend class ClusterResources;
  stats::Store& store_;
  std::string config_bytes_;
  std::shared_ptr<const std::string> version_info_;
  mutable std::atomic<ClusterTrafficStats*> traffic_stats_{nullptr};
};

// A cluster config's deterministic serialization (what ClusterInfo::configBytes() holds).
std::string clusterConfigBytes(const envoy::config::cluster::v3::Cluster& config);

using ClusterInfoConstSharedPtr = std::shared_ptr<const ClusterInfo>;

}  // namespace skiff::upstream
