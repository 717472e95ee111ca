// Internal: gRPC channel credentials for a side-call cluster whose transport socket is TLS, built from the
// cluster's own TLS context snapshot (the same SSL_CTX material the data path uses, SDS secrets included),
// so an ext_authz/ext_proc/Wasm cluster with an UpstreamTlsContext (e.g. Istio mTLS) is honoured.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "skiff/tls/context.h"
#include "skiff/tls/context_config.h"

namespace grpc {
class ChannelCredentials;
}

namespace skiff::grpc::detail {

struct TlsChannel {
  std::shared_ptr<::grpc::ChannelCredentials> credentials;
  std::string sni;  // becomes the channel's SSL target name override (SNI); empty: none set
};

// PEM material taken out of a client context snapshot (tests look at it).
struct TlsMaterial {
  std::string root_certs;  // PEM; empty: no trusted_ca (the peer chain is not verified, as Envoy)
  std::string cert_chain;  // PEM leaf + chain; empty: no client certificate
  std::string private_key;
  std::string sni;
  bool verify_chain = false;
  std::vector<tls::SanMatcher> san_matchers;  // checked against the server's leaf certificate
};
TlsMaterial tlsMaterial(const tls::ContextSnapshot& snapshot);

// Credentials enforcing `material` as Envoy would: chain verification against root_certs when set, SAN
// matchers, no host-name check (Envoy checks SANs, not the SNI). `sni_override` (auto_sni) wins.
TlsChannel tlsChannel(const TlsMaterial& material, const std::string& sni_override = "");

}  // namespace skiff::grpc::detail
