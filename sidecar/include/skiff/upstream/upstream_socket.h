// How an upstream socket is sourced (cluster upstream_bind_config, or the downstream client's address
// under original_src/TPROXY) and the one place that opens and binds such sockets.
#pragma once

#include <asio/ip/tcp.hpp>

#include <cstdint>
#include <optional>
#include <string>

#include "skiff/network/connection_info.h"
#include "skiff/upstream/cluster_info.h"

namespace skiff::upstream {

struct UpstreamSource {
  std::optional<asio::ip::address> address;  // bind() to this before connect(); none = kernel's choice
  uint16_t port = 0;
  bool transparent = false;  // IP_TRANSPARENT / IPV6_TRANSPARENT: bind to a non-local (client) address
  uint32_t mark = 0;         // SO_MARK when non-zero
  // auto_sni: the SNI taken from this request's host; connections with different SNIs are never shared.
  std::string sni;

  // No socket option or bind (the SNI is no socket property).
  bool empty() const { return !address && mark == 0; }
  // Pool key part: connections with different keys are never shared. "" for the default source.
  std::string key() const;
};

// original_src on the downstream connection wins (the client's IP, its port only with bind_port,
// transparent, marked); else the cluster's upstream_bind_config; else nothing.
UpstreamSource upstreamSourceFor(const ClusterInfo& cluster, const network::ConnectionInfo* connection);

// Opens `socket` for `destination`'s family, applies `source` (socket options, then bind) and TCP_NODELAY.
// On failure the socket is closed, `*reason` says what failed ("bind to 127.0.0.6:0: ...") and false is
// returned; the caller reports it as an upstream connection failure (UF).
bool openUpstreamSocket(asio::ip::tcp::socket& socket, const asio::ip::tcp::endpoint& destination,
                        const UpstreamSource& source, std::string* reason);

}  // namespace skiff::upstream
