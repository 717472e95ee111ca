// Host helpers: endpoint formatting and Envoy's health-flag text.
#include "skiff/upstream/host.h"

#include <google/protobuf/util/message_differencer.h>

namespace skiff::upstream {

using envoy::config::core::v3::HealthStatus;

std::string formatEndpoint(const asio::ip::tcp::endpoint& endpoint) {
  const auto address = endpoint.address();
  if (address.is_v6()) {
    return "[" + address.to_string() + "]:" + std::to_string(endpoint.port());
  }
  return address.to_string() + ":" + std::to_string(endpoint.port());
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
