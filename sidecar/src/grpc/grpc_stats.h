// Internal: the counters of one (cluster, service, method) for side calls, Envoy's gRPC stat names:
// cluster.<cluster>.grpc.<service>.<method>.{<status code>,success,failure,total,request_message_count,
// response_message_count}. One object per worker (lazy code counters need no synchronisation).
#pragma once

#include <array>
#include <string>

#include "grpc/raw_call.h"
#include "skiff/stats/stats.h"

namespace skiff::grpc::detail {

struct MethodStats {
  // `prefix` ends with '.', e.g. "cluster.authz.grpc.envoy.service.auth.v3.Authorization.Check.".
  MethodStats(stats::Store& store, std::string prefix);
  // The counter of one gRPC status code (created on first use, as Envoy's dynamic status names).
  const stats::Counter& code(int status) const;

 private:
  static constexpr int kKnownCodes = 17;
  stats::Store& store_;
  std::string prefix_;
  mutable std::array<stats::Counter, kKnownCodes + 1> codes_{};

 public:
  stats::Counter success, failure, total, request_message_count, response_message_count;
};

}  // namespace skiff::grpc::detail
