// What happened to one HTTP stream (or one TCP connection): timings, outcome, peers. Filled by the
// connection manager and the router, read by access logs, stats and (later) Lua/WASM property accessors.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "skiff/http/header_map.h"
#include "skiff/network/connection_info.h"

namespace envoy::config::core::v3 {
class Metadata;
}

namespace skiff::http {

// Envoy's response flags, with Envoy's bit order (CoreResponseFlag) so values match across tools.
enum class ResponseFlag : uint32_t {
  kFailedLocalHealthCheck = 0,
  kNoHealthyUpstream = 1,
  kUpstreamRequestTimeout = 2,
  kLocalReset = 3,
  kUpstreamRemoteReset = 4,
  kUpstreamConnectionFailure = 5,
  kUpstreamConnectionTermination = 6,
  kUpstreamOverflow = 7,
  kNoRouteFound = 8,
  kDelayInjected = 9,
  kFaultInjected = 10,
  kRateLimited = 11,
  kUnauthorizedExternalService = 12,
  kRateLimitServiceError = 13,
  kDownstreamConnectionTermination = 14,
  kUpstreamRetryLimitExceeded = 15,
  kStreamIdleTimeout = 16,
  kInvalidEnvoyRequestHeaders = 17,
  kDownstreamProtocolError = 18,
  kUpstreamMaxStreamDurationReached = 19,
  kResponseFromCacheFilter = 20,
  kNoFilterConfigFound = 21,
  kDurationTimeout = 22,
  kUpstreamProtocolError = 23,
  kNoClusterFound = 24,
  kOverloadManager = 25,
  kDnsResolutionFailed = 26,
  kDropOverload = 27,
  kDownstreamRemoteReset = 28,
  kUnconditionalDropOverload = 29,
  kLastFlag = kUnconditionalDropOverload,
};

// Short ("UF") and long ("UpstreamConnectionFailure") names, comma-joined; "-" when no flag is set.
std::string responseFlagsShort(uint32_t flags);
std::string responseFlagsLong(uint32_t flags);

struct StreamInfo {
  using Clock = std::chrono::steady_clock;

  std::chrono::system_clock::time_point start_time = std::chrono::system_clock::now();
  Clock::time_point start = Clock::now();
  // Offsets from `start`; unset until the event happens.
  std::optional<Clock::duration> last_downstream_rx;  // request fully received
  std::optional<Clock::duration> first_upstream_rx;   // first response byte from upstream
  std::optional<Clock::duration> last_downstream_tx;  // response fully sent

  uint32_t response_code = 0;
  std::string response_code_details;
  std::string connection_termination_details;
  uint32_t response_flags = 0;

  uint64_t bytes_received = 0;  // request body bytes (HTTP) or connection bytes (TCP)
  uint64_t bytes_sent = 0;

  std::string_view protocol = "HTTP/1.1";  // "-" for TCP
  std::string upstream_host;               // ip:port of the chosen host
  std::string upstream_cluster;
  std::string upstream_local_address;
  std::string upstream_transport_failure_reason;
  std::string downstream_local_address;
  std::string downstream_remote_address;
  std::string downstream_direct_remote_address;
  std::string requested_server_name;
  std::string route_name;
  // A custom HTTP/1 reason phrase for the response (Lua's setHttp1ReasonPhrase); empty = the standard one.
  std::string http1_reason_phrase;
  uint32_t attempt_count = 0;
  uint64_t connection_id = 0;
  // The downstream connection (addresses as restored by original_dst, SNI, original_src); null in tests.
  network::ConnectionInfoConstSharedPtr connection;
  // The upstream connection's TLS session (peer certificate SANs, ALPN); null for plaintext or before it
  // is connected. Shared with the pooled connection, so setting it costs no copy.
  std::shared_ptr<const tls::TlsConnectionInfo> upstream_tls;
  // Envoy's dynamic metadata (filter_metadata by namespace), shared by the stream's filters; null until a
  // filter writes some (ext_authz, ext_proc). Worker-only, like the rest of the stream.
  std::shared_ptr<envoy::config::core::v3::Metadata> dynamic_metadata;
  // The Istio peer workload (a filters::istio::WorkloadInfo) that istio.metadata_exchange found for
  // istio.stats: per-stream filter state, typed by those filters; null when there is no peer.
  std::shared_ptr<const void> istio_peer;

  // Set by the connection manager for the formatter; owned by the stream.
  const HeaderMap* request_headers = nullptr;
  const HeaderMap* response_headers = nullptr;
  const HeaderMap* response_trailers = nullptr;

  void setFlag(ResponseFlag f) { response_flags |= (1u << static_cast<uint32_t>(f)); }
  bool hasFlag(ResponseFlag f) const { return response_flags & (1u << static_cast<uint32_t>(f)); }
  Clock::duration elapsed() const { return Clock::now() - start; }
};

}  // namespace skiff::http
