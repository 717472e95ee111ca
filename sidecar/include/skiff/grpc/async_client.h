// Asynchronous gRPC calls for worker threads (ext_authz, ext_proc): grpc++'s callback API underneath, every
// completion posted back to the calling worker's io_context, so a worker never blocks on gRPC.
//
// One AsyncClient per worker thread holds that worker's channels (one per cluster host or target), so each
// worker keeps its own HTTP/2 connections to a service, as Envoy's per-worker async clients do.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace asio {
class io_context;
}
namespace google::protobuf {
class MessageLite;
}
namespace envoy::config::core::v3 {
class GrpcService;
}
namespace skiff::upstream {
class ThreadLocalClusterManager;
}

namespace skiff::grpc {

// gRPC status codes the filters look at (the wire values).
enum StatusCode : int {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kDeadlineExceeded = 4,
  kPermissionDenied = 7,
  kInternal = 13,
  kUnavailable = 14,
  kUnauthenticated = 16,
};

struct Status {
  int code = kOk;
  std::string message;
  bool ok() const { return code == kOk; }
};

// Where calls go: an Envoy config.core.v3.GrpcService, checked once at config time.
struct ServiceConfig {
  std::string cluster;                   // envoy_grpc.cluster_name; empty for google_grpc
  std::string target;                    // google_grpc.target_uri (a gRPC target such as "127.0.0.1:9000")
  std::string authority;                 // :authority; envoy_grpc.authority, else the cluster name
  std::chrono::milliseconds timeout{0};  // GrpcService.timeout; zero = none
  std::vector<std::pair<std::string, std::string>> initial_metadata;

  // Throws std::invalid_argument naming `path` when the service has no target or asks for what Skiff
  // cannot do (google_grpc channel credentials other than none).
  static ServiceConfig fromProto(const envoy::config::core::v3::GrpcService& proto, const std::string& path);
  // "cluster 'x'" or "target 'y'", for logs.
  std::string describe() const;
};

// A unary call in flight. cancel() (on the worker) guarantees the callback will not run.
class UnaryCall {
 public:
  virtual ~UnaryCall() = default;
  virtual void cancel() = 0;
};
using UnaryCallPtr = std::shared_ptr<UnaryCall>;
// Runs on the worker. `response` holds the serialized reply when status.ok().
using UnaryCallback = std::function<void(const Status& status, std::string response)>;

// The receiving side of a stream; runs on the worker.
class StreamCallbacks {
 public:
  virtual ~StreamCallbacks() = default;
  virtual void onReceiveMessage(std::string message) = 0;
  // The stream ended (server status, transport failure, deadline). Called once; no calls after it.
  virtual void onRemoteClose(const Status& status) = 0;
};

// A bidirectional stream in flight, used from the worker only. Destroying it cancels it.
class AsyncStream {
 public:
  virtual ~AsyncStream() = default;
  // Queues one message; false once the stream is closed for sending or finished.
  virtual bool sendMessage(const google::protobuf::MessageLite& message) = 0;
  // Half-close: no more messages from us; replies may still arrive.
  virtual void closeSend() = 0;
  // Abandons the stream (RST_STREAM with CANCEL); no callbacks after this.
  virtual void cancel() = 0;
};
using AsyncStreamPtr = std::unique_ptr<AsyncStream>;

class AsyncClient {
 public:
  // The calling thread's client for `io` (created on first use). The cluster manager must be that worker's.
  static AsyncClient& forWorker(asio::io_context& io, upstream::ThreadLocalClusterManager& clusters);

  AsyncClient(asio::io_context& io, upstream::ThreadLocalClusterManager& clusters);
  ~AsyncClient();

  // `method` is the full path, e.g. "/envoy.service.auth.v3.Authorization/Check". `timeout` zero uses the
  // service's. The callback always runs later on the worker (never inside this call), unless cancelled.
  UnaryCallPtr unary(const ServiceConfig& service, std::string_view method,
                     const google::protobuf::MessageLite& request, std::chrono::milliseconds timeout,
                     UnaryCallback callback);
  // Opens a stream; `callbacks` must outlive it (or cancel it first). Failures to reach the service arrive
  // as onRemoteClose(UNAVAILABLE) later on the worker. `timeout` zero: no deadline for the stream.
  AsyncStreamPtr stream(const ServiceConfig& service, std::string_view method, StreamCallbacks& callbacks,
                        std::chrono::milliseconds timeout = std::chrono::milliseconds(0));

  // Channels currently cached (tests).
  size_t channelCount() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace skiff::grpc
