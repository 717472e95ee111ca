// Upstream hosts: immutable identity plus atomically updated per-host stats and health.
#pragma once

#include <asio/ip/tcp.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "envoy/config/core/v3/base.pb.h"
#include "envoy/config/core/v3/health_check.pb.h"

namespace skiff::upstream {

// Per-host counters shown by admin /clusters. Workers bump them with relaxed atomics.
struct HostStats {
  std::atomic<uint64_t> rq_total{0}, rq_error{0}, rq_success{0}, rq_timeout{0}, cx_total{0},
      cx_connect_fail{0};
  std::atomic<int64_t> rq_active{0}, cx_active{0};
};

struct Host {
  std::string address;   // "ip:port" (IPv6 "[::1]:80"), for logs and /clusters
  std::string hostname;  // DNS name for LOGICAL_DNS/STRICT_DNS hosts (or Endpoint.hostname), else empty
  asio::ip::tcp::endpoint endpoint;
  uint32_t weight = 1;
  uint32_t priority = 0;
  std::string region, zone, sub_zone;
  // EDS health status as configured (UNKNOWN and HEALTHY both count as healthy).
  envoy::config::core::v3::HealthStatus health_status = envoy::config::core::v3::UNKNOWN;
  envoy::config::core::v3::Metadata metadata;  // LbEndpoint.metadata

  mutable HostStats stats;
  // Current health as the load balancer sees it; set from health_status, later by health checks.
  mutable std::atomic<bool> healthy{true};

  // Envoy's health_flags text for /clusters: "healthy" or "/failed_eds_health" etc.
  std::string healthFlagsString() const;
};

using HostSharedPtr = std::shared_ptr<const Host>;

// All hosts of a cluster (every priority). Immutable once published to workers.
struct HostSet {
  std::vector<HostSharedPtr> hosts;
};
using HostSetConstSharedPtr = std::shared_ptr<const HostSet>;

// "1.2.3.4:80" / "[::1]:80".
std::string formatEndpoint(const asio::ip::tcp::endpoint& endpoint);

// True when an EDS health status lets the host take traffic (UNKNOWN, HEALTHY, DEGRADED).
bool healthStatusIsUsable(envoy::config::core::v3::HealthStatus status);

}  // namespace skiff::upstream
