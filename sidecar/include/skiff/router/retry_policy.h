// Envoy's route RetryPolicy in a flat, precomputed form for the router filter.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace envoy::config::route::v3 {
class RetryPolicy;
}

namespace skiff::router {

struct RetryPolicy {
  enum On : uint32_t {
    k5xx = 1,
    kGatewayError = 2,
    kReset = 4,
    kConnectFailure = 8,
    kRetriable4xx = 16,
    kRefusedStream = 32,
    kRetriableStatusCodes = 64,
    kRetriableHeaders = 128,
    kEnvoyRateLimited = 256,
    kHttp3PostConnectFailure = 512,  // parsed, ignored (no HTTP/3)
    kGrpcCancelled = 1024,
    kGrpcDeadlineExceeded = 2048,
    kGrpcResourceExhausted = 4096,
    kGrpcUnavailable = 8192,
    kGrpcInternal = 16384,
    kResetBeforeRequest = 32768,
  };

  uint32_t retry_on = 0;
  uint32_t num_retries = 1;  // Envoy's default when retry_on is set
  std::chrono::milliseconds per_try_timeout{0};
  std::chrono::milliseconds per_try_idle_timeout{0};
  std::chrono::milliseconds base_interval{25};
  std::chrono::milliseconds max_interval{250};  // default 10x base_interval
  std::vector<uint32_t> retriable_status_codes;
  uint32_t host_selection_retry_max_attempts = 1;
  bool retry_other_hosts = false;  // envoy.retry_host_predicates.previous_hosts configured

  // Throws std::invalid_argument naming `path` on bad durations (base > max etc).
  static RetryPolicy fromProto(const envoy::config::route::v3::RetryPolicy& proto, const std::string& path);
  // "5xx,gateway-error,..." → bits; unknown tokens are ignored (as Envoy ignores them in x-envoy-retry-on).
  static uint32_t parseRetryOn(std::string_view comma_list);
  // Whether an upstream response status qualifies: 5xx, gateway-error (502/503/504), retriable-4xx (409),
  // retriable-status-codes.
  bool shouldRetryStatus(uint32_t status) const;
};

}  // namespace skiff::router
