// How a cluster's upstream connections are secured: the cluster's transport_socket (plaintext or
// envoy.transport_sockets.tls) and its transport_socket_matches, chosen per endpoint from the endpoint's
// `envoy.transport_socket_match` metadata, then its locality's (Istio's auto-mTLS: endpoints labelled
// tlsMode: istio get mTLS).
// Built once per cluster version on the main thread; workers only read it.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "envoy/config/cluster/v3/cluster.pb.h"
#include "skiff/tls/context.h"
#include "skiff/tls/transport.h"

namespace skiff::stats {
class Store;
}

namespace skiff::upstream {

struct Host;

// One way to connect: TLS with `context`, or plaintext when `context` is null.
struct UpstreamTransport {
  std::string name;                  // the transport_socket_matches entry, "" for the cluster's default
  tls::TlsContextSharedPtr context;  // null: raw_buffer
  uint32_t index = 0;                // 0: default; i + 1: transport_socket_matches[i]
};

class UpstreamTransportFactory {
 public:
  // Throws std::invalid_argument naming the field ("transport_socket_matches[0].transport_socket...") for
  // an unusable TLS config (bad PEM, missing file, unsupported socket). `stat_prefix` is "cluster.<name>.".
  UpstreamTransportFactory(const envoy::config::cluster::v3::Cluster& cluster, stats::Store& store,
                           const std::string& stat_prefix);

  // The transport for `host`: the first match whose every key/value is in the host's
  // filter_metadata["envoy.transport_socket_match"]; failing all, the first whose every key/value is in
  // its locality's (LocalityLbEndpoints.metadata); else the cluster's transport_socket.
  const UpstreamTransport& select(const Host& host) const;
  bool anyTls() const { return any_tls_; }

  // Per-connection TLS options for `host`: auto_sni (`sni_override`, the request's host from requestSni();
  // without one the host's DNS name) and auto_san_validation from the cluster's upstream HTTP options.
  tls::HandshakeOptions handshakeOptions(const Host& host, const std::string& sni_override = "") const;

  // upstream_http_protocol_options.auto_sni: the router asks requestSni() with the value of
  // autoSniHeader() (":authority", or override_auto_sni_header) and keys its connection on the result.
  bool autoSni() const { return auto_sni_; }
  const std::string& autoSniHeader() const { return auto_sni_header_; }
  // The SNI for a request whose host is `authority`: the name without its port; "" for an IP literal,
  // an empty value, or when auto_sni is off (the context's `sni` then applies).
  std::string requestSni(std::string_view authority) const;

 private:
  void setAutoSni(const envoy::config::core::v3::UpstreamHttpProtocolOptions& options);

  struct Match {
    std::vector<std::pair<std::string, std::string>> fields;  // string values only; others never match
    bool unmatchable = false;                                 // a non-string criterion
    UpstreamTransport transport;
  };
  static bool matches(const Match& m, const google::protobuf::Struct* labels);
  UpstreamTransport default_;
  std::vector<Match> matches_;
  bool any_tls_ = false;
  bool auto_sni_ = false;
  bool auto_san_validation_ = false;
  std::string auto_sni_header_ = ":authority";
};

// Null when the cluster has neither a TLS transport_socket nor transport_socket_matches.
std::shared_ptr<const UpstreamTransportFactory> makeUpstreamTransportFactory(
    const envoy::config::cluster::v3::Cluster& cluster, stats::Store& store, const std::string& stat_prefix);

}  // namespace skiff::upstream
