// TLS to the control plane: the ADS gRPC service's credentials from the bootstrap, either the envoy_grpc
// cluster's transport_socket (UpstreamTlsContext) or google_grpc.channel_credentials.ssl_credentials.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "envoy/config/bootstrap/v3/bootstrap.pb.h"

namespace grpc {
class ChannelCredentials;
}

namespace skiff::server {

struct ControlPlaneTls {
  std::string root_certs;   // PEM; empty = gRPC's default roots
  std::string private_key;  // PEM; with cert_chain: client certificate (mTLS)
  std::string cert_chain;
  std::string sni;  // UpstreamTlsContext.sni: the name checked against the server certificate
  // Where each PEM above came from when it is a file (DataSource.filename, also inside a static secret);
  // empty for inline bytes, environment variables, or an absent part.
  std::string root_certs_file;
  std::string private_key_file;
  std::string cert_chain_file;

  // Every part that is set comes from a file: the channel can re-read them (Istio rotates the workload
  // certificate files and istiod's root without restarting the proxy).
  bool filesOnly() const;
};

// nullopt for a plaintext channel. Throws std::invalid_argument naming the field for settings Skiff cannot
// honour on the control-plane channel (SDS from ADS itself, unreadable files, unsupported credentials).
std::optional<ControlPlaneTls> controlPlaneTls(const envoy::config::bootstrap::v3::Bootstrap& bootstrap);

// The ADS channel's credentials. When filesOnly(), gRPC watches the files (re-read every
// `refresh_seconds`) and every new connection to the control plane handshakes with what they hold then:
// a renewed client certificate or a rotated root applies on the next reconnect, without a restart.
// Otherwise (inline PEM, environment variables, a mix) the PEMs read at start-up are used for good.
std::shared_ptr<grpc::ChannelCredentials> controlPlaneCredentials(const ControlPlaneTls& tls,
                                                                  unsigned refresh_seconds = 1);

}  // namespace skiff::server
