// TLS to the control plane: the ADS gRPC service's credentials from the bootstrap, either the envoy_grpc
// cluster's transport_socket (UpstreamTlsContext) or google_grpc.channel_credentials.ssl_credentials.
#pragma once

#include <optional>
#include <string>

#include "envoy/config/bootstrap/v3/bootstrap.pb.h"

namespace skiff::server {

struct ControlPlaneTls {
  std::string root_certs;   // PEM; empty = gRPC's default roots
  std::string private_key;  // PEM; with cert_chain: client certificate (mTLS)
  std::string cert_chain;
  std::string sni;  // UpstreamTlsContext.sni: the name checked against the server certificate
};

// nullopt for a plaintext channel. Throws std::invalid_argument naming the field for settings Skiff cannot
// honour on the control-plane channel (SDS from ADS itself, unreadable files, unsupported credentials).
std::optional<ControlPlaneTls> controlPlaneTls(const envoy::config::bootstrap::v3::Bootstrap& bootstrap);

}  // namespace skiff::server
