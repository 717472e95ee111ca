// Per-method stats of side calls, named as Envoy's gRPC stats: cluster.<name>.grpc.<service>.<method>.*
#include "grpc/grpc_stats.h"

namespace skiff::grpc::detail {

MethodStats::MethodStats(stats::Store& store, std::string prefix)
    : store_(store),
      prefix_(std::move(prefix)),
      success(store.counter(prefix_ + "success")),
      failure(store.counter(prefix_ + "failure")),
      total(store.counter(prefix_ + "total")),
      request_message_count(store.counter(prefix_ + "request_message_count")),
      response_message_count(store.counter(prefix_ + "response_message_count")) {}

const stats::Counter& MethodStats::code(int status) const {
  const size_t i = status >= 0 && status < kKnownCodes ? static_cast<size_t>(status) : kKnownCodes;
  if (!codes_[i].valid()) {
    codes_[i] =
        store_.counter(prefix_ + (i == kKnownCodes ? std::string("unknown_status") : std::to_string(status)));
  }
  return codes_[i];
}

void chargeStats(const MethodStats& stats, const Status& status, uint64_t request_messages,
                 uint64_t response_messages, std::chrono::steady_clock::duration) {
  stats.code(status.code).inc();
  (status.ok() ? stats.success : stats.failure).inc();
  stats.total.inc();
  if (request_messages > 0) stats.request_message_count.inc(request_messages);
  if (response_messages > 0) stats.response_message_count.inc(response_messages);
}

}  // namespace skiff::grpc::detail
