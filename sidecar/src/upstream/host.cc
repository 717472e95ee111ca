// Host helpers: endpoint formatting and Envoy's health-flag text.
#include "skiff/upstream/host.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>
#include <cstring>
#include <functional>
#include <string_view>

#include <google/protobuf/util/message_differencer.h>

namespace skiff::upstream {

// One malloc chunk of 112 bytes with make_shared's control block (bench/xds_scale.md: bytes per endpoint).
#if defined(__x86_64__) && defined(__GLIBCXX__)
static_assert(sizeof(Host) <= 88, "Host grew: check bench/xds_scale.py's bytes per endpoint");
#endif

using envoy::config::core::v3::HealthStatus;

void formatEndpoint(const asio::ip::tcp::endpoint& endpoint, std::string& out) {
  // inet_ntop into a stack buffer: no temporary strings (the router formats the chosen host per request).
  char text[INET6_ADDRSTRLEN + 16];
  size_t n = 0;
  const sockaddr* sa = endpoint.data();
  if (sa->sa_family == AF_INET6) {
    text[n++] = '[';
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    if (::inet_ntop(AF_INET6, &in6->sin6_addr, text + n, INET6_ADDRSTRLEN) != nullptr)
      n += std::strlen(text + n);
    if (in6->sin6_scope_id != 0) {
      // Scoped link-local addresses keep their zone, as asio's to_string() writes it.
      const std::string scoped = endpoint.address().to_string();
      out.assign("[").append(scoped).append("]:").append(std::to_string(endpoint.port()));
      return;
    }
    text[n++] = ']';
  } else {
    const auto* in4 = reinterpret_cast<const sockaddr_in*>(sa);
    if (::inet_ntop(AF_INET, &in4->sin_addr, text, INET_ADDRSTRLEN) != nullptr) n = std::strlen(text);
  }
  text[n++] = ':';
  n = static_cast<size_t>(std::to_chars(text + n, text + sizeof(text), endpoint.port()).ptr - text);
  out.assign(text, n);
}

std::string formatEndpoint(const asio::ip::tcp::endpoint& endpoint) {
  std::string out;
  formatEndpoint(endpoint, out);
  return out;
}

size_t EndpointHash::operator()(const asio::ip::tcp::endpoint& endpoint) const {
  // From the fields operator== compares (not the raw sockaddr: its padding is not part of the value).
  const auto address = endpoint.address();
  if (address.is_v4()) {
    return std::hash<uint64_t>()((uint64_t{address.to_v4().to_uint()} << 16) | endpoint.port());
  }
  const auto bytes = address.to_v6().to_bytes();
  const size_t h = std::hash<std::string_view>()(
      std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  return h ^ (std::hash<uint64_t>()((uint64_t{address.to_v6().scope_id()} << 16) | endpoint.port()) << 1);
}

std::string Host::address() const {
  return formatEndpoint(endpoint);
}

HostStats& Host::stats() const {
  HostStats* stats = stats_.load(std::memory_order_acquire);
  if (stats != nullptr) return *stats;
  auto* fresh = new HostStats();
  if (stats_.compare_exchange_strong(stats, fresh, std::memory_order_acq_rel)) return *fresh;
  delete fresh;  // another worker allocated them first
  return *stats;
}

const HostStats& Host::peekStats() const {
  static const HostStats kZero;
  const HostStats* stats = stats_.load(std::memory_order_acquire);
  return stats != nullptr ? *stats : kZero;
}

const std::string& emptyString() {
  static const std::string kEmpty;
  return kEmpty;
}

HostMetadata& HostMetadata::operator=(const envoy::config::core::v3::Metadata& metadata) {
  if (metadata.ByteSizeLong() == 0) {
    metadata_.reset();
  } else {
    metadata_ = std::make_shared<const envoy::config::core::v3::Metadata>(metadata);
  }
  return *this;
}

const envoy::config::core::v3::Metadata& HostMetadata::get() const {
  return metadata_ ? *metadata_ : envoy::config::core::v3::Metadata::default_instance();
}

bool HostMetadata::operator==(const HostMetadata& other) const {
  if (metadata_ == other.metadata_) return true;
  return google::protobuf::util::MessageDifferencer::Equals(get(), other.get());
}

bool healthStatusIsUsable(HealthStatus status) {
  return status == envoy::config::core::v3::UNKNOWN || status == envoy::config::core::v3::HEALTHY ||
         status == envoy::config::core::v3::DEGRADED;
}

std::string Host::healthFlagsString() const {
  std::string flags;
  // Active health checking does not exist yet; a host marked unhealthy at run time reports it this way.
  if (!healthy.load(std::memory_order_relaxed) && healthStatusIsUsable(health_status)) {
    flags += "/failed_active_hc";
  }
  if (health_status == envoy::config::core::v3::UNHEALTHY ||
      health_status == envoy::config::core::v3::TIMEOUT) {
    flags += "/failed_eds_health";
  }
  if (health_status == envoy::config::core::v3::DEGRADED) flags += "/degraded_eds_health";
  if (health_status == envoy::config::core::v3::DRAINING) flags += "/eds_status_draining";
  return flags.empty() ? "healthy" : flags;
}

}  // namespace skiff::upstream
