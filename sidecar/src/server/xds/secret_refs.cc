// Which secrets listeners and clusters take from ADS: walks their TLS transport sockets.
#include "server/xds/secret_refs.h"

#include "envoy/extensions/transport_sockets/tls/v3/tls.pb.h"

namespace skiff::server {

namespace {

using envoy::extensions::transport_sockets::tls::v3::CommonTlsContext;
using envoy::extensions::transport_sockets::tls::v3::SdsSecretConfig;

constexpr std::chrono::milliseconds kDefaultInitialFetchTimeout{15000};

// Name -> initial_fetch_timeout of each ADS secret reference (the first reference of a name wins).
using Refs = std::map<std::string, std::chrono::milliseconds>;

void addIfAds(const SdsSecretConfig& sds, Refs& out) {
  if (sds.name().empty() || !sds.has_sds_config() || !sds.sds_config().has_ads()) return;
  std::chrono::milliseconds timeout = kDefaultInitialFetchTimeout;
  if (sds.sds_config().has_initial_fetch_timeout()) {
    const auto& d = sds.sds_config().initial_fetch_timeout();
    timeout = std::chrono::milliseconds(d.seconds() * 1000 + d.nanos() / 1000000);
  }
  out.emplace(sds.name(), timeout);
}

void collect(const CommonTlsContext& common, Refs& out) {
  for (const auto& sds : common.tls_certificate_sds_secret_configs()) addIfAds(sds, out);
  if (common.has_validation_context_sds_secret_config()) {
    addIfAds(common.validation_context_sds_secret_config(), out);
  }
  if (common.has_combined_validation_context()) {
    addIfAds(common.combined_validation_context().validation_context_sds_secret_config(), out);
  }
}

void collect(const envoy::config::core::v3::TransportSocket& socket, bool downstream, Refs& out) {
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

Refs adsSecretFetchTimeouts(const envoy::config::listener::v3::Listener& listener) {
  Refs out;
  for (const auto& chain : listener.filter_chains()) {
    if (chain.has_transport_socket()) collect(chain.transport_socket(), true, out);
  }
  if (listener.has_default_filter_chain() && listener.default_filter_chain().has_transport_socket()) {
    collect(listener.default_filter_chain().transport_socket(), true, out);
  }
  return out;
}

Refs adsSecretFetchTimeouts(const envoy::config::cluster::v3::Cluster& cluster) {
  Refs out;
  if (cluster.has_transport_socket()) collect(cluster.transport_socket(), false, out);
  for (const auto& match : cluster.transport_socket_matches()) {
    if (match.has_transport_socket()) collect(match.transport_socket(), false, out);
  }
  return out;
}

namespace {
std::set<std::string> namesOf(const Refs& refs) {
  std::set<std::string> out;
  for (const auto& [name, _] : refs) out.insert(name);
  return out;
}
}  // namespace

std::set<std::string> adsSecretNames(const envoy::config::listener::v3::Listener& listener) {
  return namesOf(adsSecretFetchTimeouts(listener));
}

std::set<std::string> adsSecretNames(const envoy::config::cluster::v3::Cluster& cluster) {
  return namesOf(adsSecretFetchTimeouts(cluster));
}

}  // namespace skiff::server
