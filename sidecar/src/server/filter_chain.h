// Filter chains: the network filter each chain ends in, and the FilterChainMatch table that picks a
// chain for a connection with Envoy's precedence (destination port, destination IP, server name,
// transport protocol, application protocols, direct source IP, source type, source IP, source port;
// at each step the most specific matching value wins and the others are pruned, without backtracking).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "envoy/config/listener/v3/listener_components.pb.h"
#include "filters/network/network_filter.h"
#include "server/http/connection_manager_config.h"
#include "skiff/network/connection_info.h"
#include "skiff/stats/stats.h"
#include "skiff/tls/context.h"

#if __has_include("server/tcp/tcp_proxy.h")
#include "server/tcp/tcp_proxy.h"
#define SKIFF_HAVE_TCP_PROXY 1
#endif

namespace skiff::server {

struct FilterChainConfig {
  std::string name;
  ConnectionManagerConfigSharedPtr hcm;  // set when the terminal filter is http_connection_manager
#ifdef SKIFF_HAVE_TCP_PROXY
  TcpProxyConfigSharedPtr tcp_proxy;  // set when it is tcp_proxy
#endif
  // Network filters in front of the terminal filter (e.g. the Wasm network filter), in chain order.
  std::vector<filters::network::FilterFactorySharedPtr> network_filters;
  // Non-empty: the chain takes part in matching but cannot be served faithfully (an RBAC filter we
  // cannot enforce), so connections it wins are closed.
  std::string unusable;

  // transport_socket envoy.transport_sockets.tls: connections this chain wins are TLS-terminated before
  // the network filter sees them. Null for plaintext (raw_buffer).
  tls::TlsContextSharedPtr tls;
  // transport_socket_connect_timeout: 0 = none (Envoy's default).
  std::chrono::milliseconds handshake_timeout{0};
  std::optional<stats::Counter>
      handshake_timeouts;  // listener.<addr>.downstream_cx_transport_socket_connect_timeout

  // Flushes the access logs `worker` buffered for this chain's network filter (HCM or tcp_proxy); call
  // on that worker, from its periodic flush.
  void flushAccessLogs(uint32_t worker) const;
};
using FilterChainConfigConstSharedPtr = std::shared_ptr<const FilterChainConfig>;

// Builds a chain's network filters; throws std::invalid_argument naming `path` and the field.
FilterChainConfigConstSharedPtr buildFilterChain(
    const envoy::config::listener::v3::FilterChain& proto, const std::string& path, stats::Store& store,
    uint32_t workers, uint32_t buffer_limit, const std::string& listener_stat_prefix = "listener.unknown.");

class FilterChainMatcher {
 public:
  FilterChainMatcher() = default;
  // matches[i] is chain i's filter_chain_match (null: match anything); `paths[i]` names it in errors.
  // Throws std::invalid_argument for a bad field or two chains with the same match.
  FilterChainMatcher(const std::vector<const envoy::config::listener::v3::FilterChainMatch*>& matches,
                     const std::vector<std::string>& paths);

  // The winning chain's index, or nullopt.
  std::optional<size_t> match(const network::ConnectionInfo& info) const;

 private:
  struct Cidr {
    asio::ip::address prefix;
    uint32_t len = 0;
  };
  struct Chain {
    std::vector<Cidr> destination;
    std::vector<std::string> exact_names;
    std::vector<std::string> wildcard_suffixes;  // ".example.com" for "*.example.com"
    std::string transport_protocol;
    std::vector<std::string> application_protocols;
    std::vector<Cidr> direct_source;
    int source_type = 0;  // FilterChainMatch::ConnectionSourceType
    std::vector<Cidr> source;
    std::vector<uint32_t> source_ports;
  };
  static constexpr int kStages = 8;  // after the destination port

  // Specificity of chain `c` at `stage`: -1 no match, 0 unconstrained, higher is more specific.
  int score(const Chain& c, int stage, const network::ConnectionInfo& info) const;
  static int cidrScore(const std::vector<Cidr>& ranges, const asio::ip::address& address);

  std::vector<Chain> chains_;
  std::unordered_map<uint32_t, std::vector<uint32_t>> by_port_;
  std::vector<uint32_t> any_port_;
};

}  // namespace skiff::server
