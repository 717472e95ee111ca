// Asynchronous gRPC calls for worker threads (ext_authz, ext_proc, the Wasm host's proxy_grpc_*): grpc++'s
// callback API underneath, every completion posted back to the calling worker's io_context, so a worker
// never blocks on gRPC. Clusters with a TLS transport socket, GrpcService.retry_policy and Envoy's
// per-method cluster stats are handled here (see sidecar/src/grpc/README.md).
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
namespace detail {
struct CallSetup;
}

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
  // GrpcService.retry_policy as gRPC's own retry policy (a service config JSON for the channel); empty: no
  // retries. Transport failures (connect failure, reset, refused stream) surface as UNAVAILABLE, which is
  // what is retried, num_retries (default 1) times with Envoy's backoff defaults (base 1 s, max 10x base).
  std::string retry_service_config;
  // google_grpc.channel_credentials.ssl_credentials, read and checked at config time (the TLS library's
  // DataSource and PEM handling); null: plaintext. Empty root_certs: gRPC's default roots.
  struct SslPem {
    std::string root_certs, private_key, cert_chain;
  };
  std::shared_ptr<const SslPem> google_ssl;

  // Throws std::invalid_argument naming `path` when the service has no target or asks for what Skiff
  // cannot do (google_grpc channel credentials other than ssl_credentials; unreadable PEM).
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
  // The send queue fell to the mark given to AsyncStream::notifyWhenQueuedBelow().
  virtual void onSendQueueLow() {}
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
  // Serialized bytes queued but not yet handed to the transport (flow control for big bodies).
  virtual size_t queuedBytes() const { return 0; }
  // One onSendQueueLow() (posted, never inline) once queuedBytes() <= `bytes`.
  virtual void notifyWhenQueuedBelow(size_t /*bytes*/) {}
};
using AsyncStreamPtr = std::unique_ptr<AsyncStream>;

// ---- Raw calls: serialized message bytes by service and method name (the Wasm host's proxy_grpc_*). ----

// gRPC metadata as (lower-case key, value) pairs in wire order; "-bin" keys carry raw (decoded) bytes.
using Metadata = std::vector<std::pair<std::string, std::string>>;

// What a raw call reports, always on the worker that started it and never inside a RawStream method.
// Order: onInitialMetadata (at most once, before any message), onMessage*, onTrailingMetadata (at most
// once), onClose (exactly once unless cancelled). A callback may cancel or destroy its RawStream; nothing
// more is delivered after that.
class RawCallbacks {
 public:
  virtual ~RawCallbacks() = default;
  virtual void onInitialMetadata(Metadata&& /*metadata*/) {}
  virtual void onMessage(std::string&& message) = 0;
  virtual void onTrailingMetadata(Metadata&& /*metadata*/) {}
  // The call ended: the server's status, a transport failure (UNAVAILABLE), the deadline
  // (DEADLINE_EXCEEDED), or config problems found before the call started (unknown cluster: UNAVAILABLE).
  virtual void onClose(const Status& status) = 0;
  // The send queue fell to the mark given to RawStream::notifyWhenQueuedBelow().
  virtual void onSendQueueLow() {}
};

// A raw call in flight; worker-only. Destroying it cancels it (RST_STREAM CANCEL) if still open.
class RawStream {
 public:
  virtual ~RawStream() = default;
  // Queues one serialized message; `end_stream` also half-closes. False once closed for sending or ended
  // (the message is dropped).
  virtual bool send(std::string message, bool end_stream = false) = 0;
  // Half-close: no more messages from us; replies may still arrive.
  virtual void closeSend() = 0;
  // Abandons the call; no callbacks after this (not even onClose). Idempotent.
  virtual void cancel() = 0;
  // True once onClose was delivered or cancel() was called.
  virtual bool done() const = 0;
  // Serialized bytes queued but not yet handed to the transport.
  virtual size_t queuedBytes() const { return 0; }
  // Arms one onSendQueueLow() (posted) for when queuedBytes() <= `bytes`; re-arming replaces the mark.
  virtual void notifyWhenQueuedBelow(size_t /*bytes*/) {}
};
using RawStreamPtr = std::unique_ptr<RawStream>;

struct RawCallOptions {
  std::chrono::milliseconds timeout{0};  // zero: the service's GrpcService.timeout (streams: none)
  Metadata initial_metadata;             // sent after the service's own initial_metadata
};

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

  // Raw bidi stream on "/<service_name>/<method_name>". `callbacks` must stay valid until onClose ran or the
  // stream was cancelled/destroyed. Returns a stream even on failure (then onClose comes later).
  RawStreamPtr rawStream(const ServiceConfig& service, std::string_view service_name,
                         std::string_view method_name, RawCallbacks& callbacks, RawCallOptions options = {});
  // Raw unary call: sends `request` and half-closes at once. A reply is one onMessage, then onClose(OK); an
  // OK status without exactly one message is reported as INTERNAL. cancel()/destroying works as for streams.
  RawStreamPtr rawUnary(const ServiceConfig& service, std::string_view service_name,
                        std::string_view method_name, std::string request, RawCallbacks& callbacks,
                        RawCallOptions options = {});

  // Channels currently cached (tests).
  size_t channelCount() const;

 private:
  detail::CallSetup setup(const ServiceConfig& service, std::string_view service_name,
                          std::string_view method_name, std::chrono::milliseconds timeout);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace skiff::grpc
