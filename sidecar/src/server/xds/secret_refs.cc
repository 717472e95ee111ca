// Which secrets listeners and clusters take from ADS: walks their TLS transport sockets.
#include "server/xds/secret_refs.h"

#include "envoy/extensions/transport_sockets/tls/v3/tls.pb.h"

namespace skiff::server {

namespace {

using envoy::extensions::transport_sockets::tls::v3::CommonTlsContext;
using envoy::extensions::transport_sockets::tls::v3::SdsSecretConfig;

void addIfAds(const SdsSecretConfig& sds, std::set<std::string>& out) {
  if (!sds.name().empty() && sds.has_sds_config() && sds.sds_config().has_ads()) out.insert(sds.name());
}

void collect(const CommonTlsContext& common, std::set<std::string>& out) {
  for (const auto& sds : common.tls_certificate_sds_secret_configs()) addIfAds(sds, out);
  if (common.has_validation_context_sds_secret_config()) {
    addIfAds(common.validation_context_sds_secret_config(), out);
  }
  if (common.has_combined_validation_context()) {
    addIfAds(common.combined_validation_context().validation_context_sds_secret_config(), out);
  }
}

void collect(const envoy::config::core::v3::TransportSocket& socket, bool downstream,
             std::set<std::string>& out) {
  if (!socket.has_typed_config()) return;
  if (downstream) {
    envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext tls;
    if (socket.typed_config().UnpackTo(&tls)) collect(tls.common_tls_context(), out);
  } else {
    envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext tls;
    if (socket.typed_config().UnpackTo(&tls)) collect(tls.common_tls_context(), out);
  }
}

}  // namespace

std::set<std::string> adsSecretNames(const envoy::config::listener::v3::Listener& listener) {
  std::set<std::string> out;
  for (const auto& chain : listener.filter_chains()) {
    if (chain.has_transport_socket()) collect(chain.transport_socket(), true, out);
  }
  if (listener.has_default_filter_chain() && listener.default_filter_chain().has_transport_socket()) {
    collect(listener.default_filter_chain().transport_socket(), true, out);
  }
  return out;
}

std::set<std::string> adsSecretNames(const envoy::config::cluster::v3::Cluster& cluster) {
  std::set<std::string> out;
  if (cluster.has_transport_socket()) collect(cluster.transport_socket(), false, out);
  for (const auto& match : cluster.transport_socket_matches()) {
    if (match.has_transport_socket()) collect(match.transport_socket(), false, out);
  }
  return out;
}

}  // namespace skiff::server
