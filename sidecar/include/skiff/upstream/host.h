// Upstream hosts: immutable identity plus atomically updated per-host stats and health.
#pragma once

#include <asio/ip/tcp.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>
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

// A shared empty string for accessors of absent fields.
const std::string& emptyString();

// LbEndpoint.metadata, allocated only when an endpoint has some (most have none) and shared between the
// versions of a host. Reads like the Metadata message it holds.
class HostMetadata {
 public:
  HostMetadata& operator=(const envoy::config::core::v3::Metadata& metadata);
  const envoy::config::core::v3::Metadata& get() const;
  operator const envoy::config::core::v3::Metadata&() const { return get(); }  // NOLINT: reads as the message
  const auto& filter_metadata() const { return get().filter_metadata(); }
  const auto& typed_filter_metadata() const { return get().typed_filter_metadata(); }
  bool operator==(const HostMetadata& other) const;

 private:
  std::shared_ptr<const envoy::config::core::v3::Metadata> metadata_;
};

struct HostLocality {
  std::string region, zone, sub_zone;
  HostMetadata metadata;  // LocalityLbEndpoints.metadata (transport_socket_matches falls back to it)
  bool operator==(const HostLocality&) const = default;
};

// A string that is usually empty (an endpoint's hostname): one pointer, the text allocated only when set.
// Reads like the std::string it holds.
class OptionalString {
 public:
  OptionalString() = default;
  OptionalString(const OptionalString& other) { *this = other.str(); }
  OptionalString& operator=(const OptionalString& other) { return *this = std::string_view(other.str()); }
  OptionalString& operator=(std::string_view text) {
    value_ = text.empty() ? nullptr : std::make_unique<const std::string>(text);
    return *this;
  }
  const std::string& str() const { return value_ ? *value_ : emptyString(); }
  operator const std::string&() const { return str(); }  // NOLINT: reads as the string
  operator std::string_view() const { return str(); }    // NOLINT
  bool empty() const { return value_ == nullptr; }
  size_t size() const { return str().size(); }
  friend bool operator==(const OptionalString& a, const OptionalString& b) { return a.str() == b.str(); }
  friend bool operator==(const OptionalString& a, std::string_view b) { return a.str() == b; }
  friend std::ostream& operator<<(std::ostream& os, const OptionalString& s) { return os << s.str(); }

 private:
  std::unique_ptr<const std::string> value_;
};

// An EDS HealthStatus in one byte; reads and assigns like the enum.
class PackedHealthStatus {
 public:
  operator envoy::config::core::v3::HealthStatus() const {  // NOLINT: reads as the enum
    return static_cast<envoy::config::core::v3::HealthStatus>(value_);
  }
  PackedHealthStatus& operator=(envoy::config::core::v3::HealthStatus status) {
    value_ = static_cast<uint8_t>(status);  // callers pass valid values (0..5)
    return *this;
  }

 private:
  uint8_t value_ = envoy::config::core::v3::UNKNOWN;
};

// 10,000s of hosts in a mesh, most never picked by this proxy: the address is held once, as the socket
// address (its text is made on demand), counters are allocated on first use, and the fields are packed
// (88 bytes on x86-64; with make_shared's control block one 112-byte malloc chunk per host).
struct Host {
  Host() = default;
  Host(const Host&) = delete;
  Host& operator=(const Host&) = delete;
  ~Host() { delete stats_.load(std::memory_order_relaxed); }

  asio::ip::tcp::endpoint endpoint;
  uint32_t weight = 1;
  uint32_t priority : 24 = 0;  // LocalityLbEndpoints.priority (larger values are rejected when parsed)
  // EDS health status as configured (UNKNOWN and HEALTHY both count as healthy).
  PackedHealthStatus health_status;
  // Current health as the load balancer sees it; set from health_status, later by health checks.
  mutable std::atomic<bool> healthy{true};
  OptionalString hostname;  // DNS name for LOGICAL_DNS/STRICT_DNS hosts (or Endpoint.hostname), else empty
  // Locality and its metadata, shared by the hosts of one LocalityLbEndpoints (null when it has neither).
  std::shared_ptr<const HostLocality> locality;
  const std::string& region() const { return locality ? locality->region : emptyString(); }
  const std::string& zone() const { return locality ? locality->zone : emptyString(); }
  const std::string& sub_zone() const { return locality ? locality->sub_zone : emptyString(); }
  HostMetadata metadata;  // LbEndpoint.metadata

  // "ip:port" (IPv6 "[::1]:80"), for logs, access logs and /clusters; formatted on each call.
  std::string address() const;
  // Per-host counters (admin /clusters), written by workers with relaxed atomics. Allocated on the first
  // call, from any thread (a lost race frees its copy).
  HostStats& stats() const;
  // Reads without allocating: a shared all-zero block when no counter was ever written.
  const HostStats& peekStats() const;
  bool hasStats() const { return stats_.load(std::memory_order_acquire) != nullptr; }

  // Envoy's health_flags text for /clusters: "healthy" or "/failed_eds_health" etc.
  std::string healthFlagsString() const;

 private:
  mutable std::atomic<HostStats*> stats_{nullptr};
};

// Highest LocalityLbEndpoints.priority a host can carry.
inline constexpr uint32_t kMaxHostPriority = (1u << 24) - 1;

// Hash of an endpoint (address, port) for maps keyed by it.
struct EndpointHash {
  size_t operator()(const asio::ip::tcp::endpoint& endpoint) const;
};

using HostSharedPtr = std::shared_ptr<const Host>;

// All hosts of a cluster (every priority). Immutable once published to workers.
struct HostSet {
  std::vector<HostSharedPtr> hosts;
};
using HostSetConstSharedPtr = std::shared_ptr<const HostSet>;

// "1.2.3.4:80" / "[::1]:80".
std::string formatEndpoint(const asio::ip::tcp::endpoint& endpoint);
// The same, written into `out` (its memory reused).
void formatEndpoint(const asio::ip::tcp::endpoint& endpoint, std::string& out);

// True when an EDS health status lets the host take traffic (UNKNOWN, HEALTHY, DEGRADED).
bool healthStatusIsUsable(envoy::config::core::v3::HealthStatus status);

}  // namespace skiff::upstream
