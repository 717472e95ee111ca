// What the listener learnt about one accepted downstream connection before its network filter runs:
// the addresses (after original_dst / TPROXY recovery), what the inspectors saw, and how upstream
// connections made on its behalf must be sourced. Immutable once the filter chain is chosen.
#pragma once

#include <asio/ip/tcp.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace skiff::tls {
struct TlsConnectionInfo;
}

namespace skiff::network {

struct ConnectionInfo {
  uint64_t id = 0;
  asio::ip::tcp::endpoint local;   // the original destination once restored
  asio::ip::tcp::endpoint remote;  // the peer
  bool local_restored = false;     // `local` came from SO_ORIGINAL_DST or a transparent socket
  std::string listener_name;       // the listener whose filter chain serves the connection
  std::string filter_chain_name;
  std::string server_name;                         // SNI seen by tls_inspector
  std::string transport_protocol = "raw_buffer";   // "tls" when tls_inspector saw a ClientHello
  std::vector<std::string> application_protocols;  // ALPN, or "http/1.1"/"h2c" from http_inspector
  // Set when the filter chain terminates TLS (after a successful handshake): the negotiated ALPN protocol
  // ("h2", "http/1.1"; "" when none was agreed) and the session's peer/local certificate facts.
  std::string alpn;
  std::shared_ptr<const tls::TlsConnectionInfo> tls;
  // envoy.filters.listener.original_src: upstream connections bind to the peer's address (IP_TRANSPARENT)
  // and carry this SO_MARK, so the server app sees the real client.
  struct OriginalSource {
    uint32_t mark = 0;
    bool bind_port = false;
  };
  std::optional<OriginalSource> original_source;
};
using ConnectionInfoConstSharedPtr = std::shared_ptr<const ConnectionInfo>;

}  // namespace skiff::network
