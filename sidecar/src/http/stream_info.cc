// Response-flag names (Envoy's short and long forms) for access logs.
#include "skiff/http/stream_info.h"

#include <array>

namespace skiff::http {
namespace {

struct FlagName {
  const char* short_name;
  const char* long_name;
};

// Indexed by ResponseFlag's bit.
constexpr std::array<FlagName, 30> kFlagNames = {{
    {"LH", "FailedLocalHealthCheck"},
    {"UH", "NoHealthyUpstream"},
    {"UT", "UpstreamRequestTimeout"},
    {"LR", "LocalReset"},
    {"UR", "UpstreamRemoteReset"},
    {"UF", "UpstreamConnectionFailure"},
    {"UC", "UpstreamConnectionTermination"},
    {"UO", "UpstreamOverflow"},
    {"NR", "NoRouteFound"},
    {"DI", "DelayInjected"},
    {"FI", "FaultInjected"},
    {"RL", "RateLimited"},
    {"UAEX", "UnauthorizedExternalService"},
    {"RLSE", "RateLimitServiceError"},
    {"DC", "DownstreamConnectionTermination"},
    {"URX", "UpstreamRetryLimitExceeded"},
    {"SI", "StreamIdleTimeout"},
    {"IH", "InvalidEnvoyRequestHeaders"},
    {"DPE", "DownstreamProtocolError"},
    {"UMSDR", "UpstreamMaxStreamDurationReached"},
    {"RFCF", "ResponseFromCacheFilter"},
    {"NFCF", "NoFilterConfigFound"},
    {"DT", "DurationTimeout"},
    {"UPE", "UpstreamProtocolError"},
    {"NC", "NoClusterFound"},
    {"OM", "OverloadManagerTerminated"},
    {"DF", "DnsResolutionFailed"},
    {"DO", "DropOverload"},
    {"DR", "DownstreamRemoteReset"},
    {"UDO", "UnconditionalDropOverload"},
}};

std::string join(uint32_t flags, bool long_form) {
  if (flags == 0) return "-";
  std::string out;
  for (size_t bit = 0; bit < kFlagNames.size(); ++bit) {
    if (!(flags & (1u << bit))) continue;
    if (!out.empty()) out += ',';
    out += long_form ? kFlagNames[bit].long_name : kFlagNames[bit].short_name;
  }
  return out;
}

}  // namespace

std::string responseFlagsShort(uint32_t flags) {
  return join(flags, false);
}
std::string responseFlagsLong(uint32_t flags) {
  return join(flags, true);
}

}  // namespace skiff::http
