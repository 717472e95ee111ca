// Internal: the one call engine under every AsyncClient call (raw, proto streams, unary), a grpc++ bidi
// reactor whose events are posted to the calling worker.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "skiff/grpc/async_client.h"

namespace grpc {
class Channel;
}

namespace skiff::grpc::detail {

// Per (cluster, service, method) counters; charged on the worker when a call ends (grpc_stats.cc).
struct MethodStats;
void chargeStats(const MethodStats& stats, const Status& status, uint64_t request_messages,
                 uint64_t response_messages, std::chrono::steady_clock::duration elapsed);

struct CallSetup {
  std::shared_ptr<::grpc::Channel> channel;  // null: fail with `error` (later, on the worker)
  Status error;
  std::string path;  // "/service/method"
  std::string authority;
  const Metadata* service_metadata = nullptr;  // GrpcService.initial_metadata (outlives start())
  Metadata extra_metadata;
  std::chrono::milliseconds timeout{0};  // zero: no deadline
  bool unary = false;
  bool want_metadata = true;  // deliver initial/trailing metadata callbacks
  std::shared_ptr<const MethodStats> stats;
};

// Starts the call; every callback comes later through `io`.
RawStreamPtr startRawCall(asio::io_context& io, CallSetup setup, RawCallbacks& callbacks);

// A metadata key/value grpc core accepts (it aborts the process on others): lower-case [0-9a-z_.-] keys
// not starting with "grpc-" or ':', and printable ASCII values unless the key ends in "-bin".
bool validMetadata(const std::string& key, const std::string& value);

}  // namespace skiff::grpc::detail
