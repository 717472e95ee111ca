// The secrets a listener or cluster takes from ADS (SdsSecretConfig with `sds_config: {ads: {}}`), so that
// SDS subscriptions follow LDS/CDS and a listener/cluster can warm until its secrets are in.
#pragma once

#include <chrono>
#include <map>
#include <set>
#include <string>

#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/listener/v3/listener.pb.h"

namespace skiff::server {

// Names of the ADS-delivered secrets referenced by the TLS transport sockets of every filter chain
// (and the default one). Transport sockets of other types, and secrets from files or static, are ignored.
std::set<std::string> adsSecretNames(const envoy::config::listener::v3::Listener& listener);
// The same for a cluster's transport_socket and transport_socket_matches.
std::set<std::string> adsSecretNames(const envoy::config::cluster::v3::Cluster& cluster);
// The same names with the initial_fetch_timeout of their sds_config (15 s when unset, 0 = wait forever).
std::map<std::string, std::chrono::milliseconds> adsSecretFetchTimeouts(
    const envoy::config::listener::v3::Listener& listener);
std::map<std::string, std::chrono::milliseconds> adsSecretFetchTimeouts(
    const envoy::config::cluster::v3::Cluster& cluster);

}  // namespace skiff::server
