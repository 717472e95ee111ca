// Envoy's request header rules for one proxy hop: scheme, hop-by-hop removal, x-forwarded-*,
// x-envoy-internal, x-request-id.
#pragma once

#include <asio/ip/tcp.hpp>
#include <string>

#include "server/http/connection_manager_config.h"
#include "skiff/http/header_map.h"

namespace skiff::server {

// Loopback and private (RFC 1918 / fc00::/7) addresses count as internal, as in Envoy's default config.
bool isInternalAddress(const asio::ip::address& address);

// Rewrites `headers` for forwarding and returns the downstream address as Envoy reports it: the peer's, or
// with `xff_num_trusted_hops` (and use_remote_address off) the x-forwarded-for entry that many hops from the
// right. `secure`: the downstream connection is TLS (:scheme and x-forwarded-proto are then "https").
std::string applyForwardingHeaders(http::HeaderMap& headers, const ConnectionManagerConfig& config,
                                   const asio::ip::tcp::endpoint& peer, const std::string& peer_text,
                                   bool secure = false);

}  // namespace skiff::server
