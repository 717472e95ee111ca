// RetryPolicy: parsing Envoy's retry_on grammar and route RetryPolicy protos.
#include "skiff/router/retry_policy.h"

#include <algorithm>
#include <stdexcept>

#include "envoy/config/route/v3/route_components.pb.h"
#include "skiff/router/route_table.h"

namespace skiff::router {

namespace {

struct Token {
  std::string_view name;
  uint32_t bit;
};

constexpr Token kTokens[] = {
    {"5xx", RetryPolicy::k5xx},
    {"gateway-error", RetryPolicy::kGatewayError},
    {"reset", RetryPolicy::kReset},
    {"reset-before-request", RetryPolicy::kResetBeforeRequest},
    {"connect-failure", RetryPolicy::kConnectFailure},
    {"retriable-4xx", RetryPolicy::kRetriable4xx},
    {"refused-stream", RetryPolicy::kRefusedStream},
    {"retriable-status-codes", RetryPolicy::kRetriableStatusCodes},
    {"retriable-headers", RetryPolicy::kRetriableHeaders},
    {"envoy-ratelimited", RetryPolicy::kEnvoyRateLimited},
    {"http3-post-connect-failure", RetryPolicy::kHttp3PostConnectFailure},
    {"cancelled", RetryPolicy::kGrpcCancelled},
    {"deadline-exceeded", RetryPolicy::kGrpcDeadlineExceeded},
    {"resource-exhausted", RetryPolicy::kGrpcResourceExhausted},
    {"unavailable", RetryPolicy::kGrpcUnavailable},
    {"internal", RetryPolicy::kGrpcInternal},
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

uint32_t RetryPolicy::parseRetryOn(std::string_view list) {
  uint32_t bits = 0;
  while (!list.empty()) {
    const size_t comma = list.find(',');
    std::string_view tok = trim(list.substr(0, comma));
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    for (const Token& t : kTokens) {
      if (t.name == tok) {
        bits |= t.bit;
        break;
      }
    }
  }
  return bits;
}

bool RetryPolicy::shouldRetryStatus(uint32_t status) const {
  if ((retry_on & k5xx) && status >= 500 && status < 600) return true;
  if ((retry_on & kGatewayError) && (status == 502 || status == 503 || status == 504)) return true;
  if ((retry_on & kRetriable4xx) && status == 409) return true;
  if (retry_on & kRetriableStatusCodes) {
    return std::find(retriable_status_codes.begin(), retriable_status_codes.end(), status) !=
           retriable_status_codes.end();
  }
  return false;
}

RetryPolicy RetryPolicy::fromProto(const envoy::config::route::v3::RetryPolicy& proto,
                                   const std::string& path) {
  RetryPolicy p;
  p.retry_on = parseRetryOn(proto.retry_on());
  if (proto.has_num_retries()) p.num_retries = proto.num_retries().value();
  if (proto.has_per_try_timeout()) p.per_try_timeout = toMillis(proto.per_try_timeout());
  if (proto.has_per_try_idle_timeout()) p.per_try_idle_timeout = toMillis(proto.per_try_idle_timeout());
  if (proto.has_retry_back_off()) {
    const auto& b = proto.retry_back_off();
    if (!b.has_base_interval() || toMillis(b.base_interval()).count() <= 0) {
      throw std::invalid_argument(path + ".retry_back_off.base_interval: must be set and greater than 0");
    }
    p.base_interval = toMillis(b.base_interval());
    p.max_interval = b.has_max_interval() ? toMillis(b.max_interval()) : p.base_interval * 10;
    if (p.max_interval < p.base_interval) {
      throw std::invalid_argument(path +
                                  ".retry_back_off.max_interval: must be greater than or equal to "
                                  "base_interval");
    }
  }
  for (uint32_t code : proto.retriable_status_codes()) p.retriable_status_codes.push_back(code);
  if (proto.host_selection_retry_max_attempts() > 0) {
    p.host_selection_retry_max_attempts = static_cast<uint32_t>(proto.host_selection_retry_max_attempts());
  }
  for (const auto& pred : proto.retry_host_predicate()) {
    if (pred.name() == "envoy.retry_host_predicates.previous_hosts" ||
        pred.typed_config().type_url().find("PreviousHostsPredicate") != std::string::npos) {
      p.retry_other_hosts = true;
    }
  }
  return p;
}

}  // namespace skiff::router
