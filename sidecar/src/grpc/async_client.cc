// AsyncClient: per-worker channels, unary calls and bidi streams on grpc++'s callback API, completions
// posted back to the worker.
#include "skiff/grpc/async_client.h"

#include <google/protobuf/message_lite.h>
#include <grpc/grpc.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/server_builder.h>
#include <grpcpp/support/byte_buffer.h>

#include <absl/synchronization/mutex.h>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <deque>
#include <mutex>
#include <unordered_map>

#include "grpc/channel_credentials.h"
#include "grpc/grpc_stats.h"
#include "grpc/raw_call.h"
#include "skiff/common/logging.h"
#include "skiff/upstream/thread_local_cluster.h"
#include "skiff/upstream/transport_socket.h"

namespace skiff::grpc {
namespace {

// A worker keeps at most this many channels; beyond it the oldest goes (hosts come and go with EDS).
constexpr size_t kMaxChannels = 64;
// And at most this many per-method stat sets (Wasm may call arbitrary methods).
constexpr size_t kMaxMethodStats = 256;

// "/pkg.Service/Method" -> ("pkg.Service", "Method"); empty views when the path has no such shape.
std::pair<std::string_view, std::string_view> splitPath(std::string_view path) {
  if (path.size() < 4 || path[0] != '/') return {};
  const size_t slash = path.rfind('/');
  if (slash == 0 || slash + 1 == path.size()) return {};
  return {path.substr(1, slash - 1), path.substr(slash + 1)};
}

// The proto stream API over a raw call.
class ProtoStream : public AsyncStream, public RawCallbacks {
 public:
  explicit ProtoStream(StreamCallbacks& callbacks) : callbacks_(callbacks) {}
  void attach(RawStreamPtr raw) { raw_ = std::move(raw); }

  bool sendMessage(const google::protobuf::MessageLite& message) override {
    return raw_->send(message.SerializeAsString());
  }
  void closeSend() override { raw_->closeSend(); }
  void cancel() override { raw_->cancel(); }
  size_t queuedBytes() const override { return raw_->queuedBytes(); }
  void notifyWhenQueuedBelow(size_t bytes) override { raw_->notifyWhenQueuedBelow(bytes); }

  void onMessage(std::string&& message) override { callbacks_.onReceiveMessage(std::move(message)); }
  void onSendQueueLow() override { callbacks_.onSendQueueLow(); }
  void onClose(const Status& status) override { callbacks_.onRemoteClose(status); }

 private:
  StreamCallbacks& callbacks_;
  RawStreamPtr raw_;
};

// The proto unary API over a raw call. It owns itself until the call ends or is cancelled, so the callback
// runs even if the caller dropped its UnaryCallPtr (as grpc++'s own unary calls behave).
class UnaryCallImpl : public UnaryCall,
                      public RawCallbacks,
                      public std::enable_shared_from_this<UnaryCallImpl> {
 public:
  explicit UnaryCallImpl(UnaryCallback cb) : callback_(std::move(cb)) {}
  void attach(RawStreamPtr raw) {
    raw_ = std::move(raw);
    self_ = shared_from_this();
  }

  void cancel() override {
    auto keep = std::move(self_);
    callback_ = nullptr;
    if (raw_) raw_->cancel();
  }
  void onMessage(std::string&& message) override { response_ = std::move(message); }
  void onClose(const Status& status) override {
    auto keep = std::move(self_);
    UnaryCallback cb = std::move(callback_);
    callback_ = nullptr;
    if (cb) cb(status, status.ok() ? std::move(response_) : std::string());
  }

 private:
  UnaryCallback callback_;
  RawStreamPtr raw_;
  std::string response_;
  std::shared_ptr<UnaryCallImpl> self_;
};

}  // namespace

struct AsyncClient::Impl {
  asio::io_context& io;
  upstream::ThreadLocalClusterManager& clusters;
  std::unordered_map<std::string, std::shared_ptr<::grpc::Channel>> channels;
  std::deque<std::string> order;  // insertion order, for eviction
  std::unordered_map<std::string, std::shared_ptr<const detail::MethodStats>> method_stats;

  std::shared_ptr<const detail::MethodStats> methodStats(const std::string& cluster_name,
                                                         std::string_view service, std::string_view method) {
    upstream::ThreadLocalCluster* cluster = clusters.get(cluster_name);
    std::string prefix = "cluster.";
    prefix
        .append(cluster != nullptr ? cluster->info().stat_name
                                   : upstream::sanitizeClusterStatName(cluster_name))
        .append(".grpc.")
        .append(service)
        .append(".")
        .append(method)
        .append(".");
    if (auto it = method_stats.find(prefix); it != method_stats.end()) return it->second;
    if (method_stats.size() >= kMaxMethodStats) method_stats.clear();
    auto stats = std::make_shared<const detail::MethodStats>(stats::defaultStore(), prefix);
    method_stats.emplace(std::move(prefix), stats);
    return stats;
  }

  // The channel for the service's next call, or nullptr with `error` set.
  // `minimal`: calls without a deadline get grpc's minimal channel stack (fewer filters per call; the
  // deadline filter is one of those left out), on a channel of their own.
  std::shared_ptr<::grpc::Channel> channelFor(const ServiceConfig& service, bool minimal, Status& error) {
    std::string target, tls_key, tls_sni;
    tls::ContextSnapshotConstSharedPtr tls_snapshot;
    if (!service.cluster.empty()) {
      upstream::ThreadLocalCluster* cluster = clusters.get(service.cluster);
      if (cluster == nullptr) {
        error = Status{kUnavailable, "gRPC cluster '" + service.cluster + "' not found"};
        return nullptr;
      }
      upstream::HostSharedPtr host = cluster->chooseHost(upstream::LbContext{});
      if (!host) {
        error = Status{kUnavailable, "gRPC cluster '" + service.cluster + "' has no healthy host"};
        return nullptr;
      }
      target = (host->endpoint.address().is_v6() ? "ipv6:" : "ipv4:") + host->address();
      // TLS clusters (Istio mTLS, an UpstreamTlsContext): credentials from the cluster's own TLS context,
      // a new channel whenever its secrets change (SDS rotation bumps the generation).
      if (const auto& transport = cluster->info().transport; transport) {
        const upstream::UpstreamTransport& chosen = transport->select(*host);
        if (chosen.context) {
          tls_snapshot = chosen.context->current();
          if (!tls_snapshot) {
            error = Status{kUnavailable, "gRPC cluster '" + service.cluster + "': TLS secrets not ready"};
            return nullptr;
          }
          tls_sni = transport->handshakeOptions(*host).sni;
          tls_key = fmt::format("|tls:{}:{}:{}", static_cast<const void*>(chosen.context.get()),
                                chosen.context->generation(), tls_sni);
        }
      }
    } else {
      target = service.target;
      if (service.google_ssl) {
        tls_key = fmt::format("|ssl:{}", static_cast<const void*>(service.google_ssl.get()));
      }
    }
    std::string key = service.authority + '|' + target + tls_key + service.retry_service_config;
    if (minimal) key += "|min";
    if (auto it = channels.find(key); it != channels.end()) return it->second;
    ::grpc::ChannelArguments args;
    // Each worker its own connection, and quick recovery when a processor comes back.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    if (minimal) args.SetInt(GRPC_ARG_MINIMAL_STACK, 1);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    if (service.retry_service_config.empty()) {
      args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
    } else {
      args.SetInt(GRPC_ARG_ENABLE_RETRIES, 1);
      args.SetServiceConfigJSON(service.retry_service_config);
    }
    if (!service.authority.empty()) args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, service.authority);
    std::shared_ptr<::grpc::ChannelCredentials> credentials = ::grpc::InsecureChannelCredentials();
    if (service.cluster.empty() && service.google_ssl) {
      ::grpc::SslCredentialsOptions ssl;
      ssl.pem_root_certs = service.google_ssl->root_certs;
      ssl.pem_private_key = service.google_ssl->private_key;
      ssl.pem_cert_chain = service.google_ssl->cert_chain;
      credentials = ::grpc::SslCredentials(ssl);
    }
    if (tls_snapshot) {
      detail::TlsChannel tls = detail::tlsChannel(detail::tlsMaterial(*tls_snapshot), tls_sni);
      credentials = std::move(tls.credentials);
      if (!tls.sni.empty()) args.SetSslTargetNameOverride(tls.sni);
    }
    auto channel = ::grpc::CreateCustomChannel(target, credentials, args);
    if (channels.size() >= kMaxChannels && !order.empty()) {
      channels.erase(order.front());
      order.pop_front();
    }
    channels.emplace(key, channel);
    order.push_back(std::move(key));
    return channel;
  }
};

AsyncClient& AsyncClient::forWorker(asio::io_context& io, upstream::ThreadLocalClusterManager& clusters) {
  // Usually one entry: a worker thread runs one io_context (tests may run several in turn).
  thread_local std::vector<std::pair<asio::io_context*, std::unique_ptr<AsyncClient>>> clients;
  for (auto& [ctx, client] : clients) {
    if (ctx == &io && &client->impl_->clusters == &clusters) return *client;
  }
  clients.emplace_back(&io, std::make_unique<AsyncClient>(io, clusters));
  return *clients.back().second;
}

AsyncClient::AsyncClient(asio::io_context& io, upstream::ThreadLocalClusterManager& clusters)
    : impl_(new Impl{io, clusters, {}, {}, {}}) {
  // grpc's absl mutexes track lock-order graphs for deadlock reports unless told not to: measurable CPU
  // on every side call, and nothing acts on the reports. Process-wide, set once.
  // The library also stays initialised for good: when the last grpc object goes, grpc shuts down and a
  // later call re-initialises it while the old callback completion queue may still be finishing on its
  // own thread (a double free seen under ASan between tests).
  static const bool once = [] {
    absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
    grpc_init();
    // grpc++ 1.51 runs callback-API calls on a shared "alternative" completion queue, reference-counted by
    // the channels and servers using it. When the count drops to zero (the last channel closed, say by
    // the channel cache) and a new call takes it again at once, the old queue's threads can free it twice.
    // A port-less server with a callback service, kept for the process, keeps the count above zero.
    static auto* keep_service = new ::grpc::CallbackGenericService();
    ::grpc::ServerBuilder builder;
    builder.RegisterCallbackGenericService(keep_service);
    static auto* keep_server = builder.BuildAndStart().release();
    (void)keep_server;
    return true;
  }();
  (void)once;
}

AsyncClient::~AsyncClient() = default;

size_t AsyncClient::channelCount() const {
  return impl_->channels.size();
}

detail::CallSetup AsyncClient::setup(const ServiceConfig& service, std::string_view service_name,
                                     std::string_view method_name, std::chrono::milliseconds timeout) {
  detail::CallSetup setup;
  if (service_name.empty() || method_name.empty()) {
    setup.error = Status{kInternal, "gRPC call needs a service and a method name"};
    return setup;
  }
  setup.channel = impl_->channelFor(service, timeout.count() == 0, setup.error);
  setup.path.reserve(service_name.size() + method_name.size() + 2);
  setup.path.append("/").append(service_name).append("/").append(method_name);
  setup.authority = service.authority;
  setup.service_metadata = &service.initial_metadata;
  setup.timeout = timeout;
  if (setup.channel && !service.cluster.empty())
    setup.stats = impl_->methodStats(service.cluster, service_name, method_name);
  return setup;
}

UnaryCallPtr AsyncClient::unary(const ServiceConfig& service, std::string_view method,
                                const google::protobuf::MessageLite& request,
                                std::chrono::milliseconds timeout, UnaryCallback callback) {
  auto call = std::make_shared<UnaryCallImpl>(std::move(callback));
  auto [svc, name] = splitPath(method);
  detail::CallSetup s = setup(service, svc, name, timeout.count() > 0 ? timeout : service.timeout);
  s.unary = true;
  s.want_metadata = false;
  auto raw = detail::startRawCall(impl_->io, std::move(s), *call);
  raw->send(request.SerializeAsString(), true);
  call->attach(std::move(raw));
  return call;
}

AsyncStreamPtr AsyncClient::stream(const ServiceConfig& service, std::string_view method,
                                   StreamCallbacks& callbacks, std::chrono::milliseconds timeout) {
  auto stream = std::make_unique<ProtoStream>(callbacks);
  auto [svc, name] = splitPath(method);
  detail::CallSetup s = setup(service, svc, name, timeout);
  s.want_metadata = false;
  stream->attach(detail::startRawCall(impl_->io, std::move(s), *stream));
  return stream;
}

RawStreamPtr AsyncClient::rawStream(const ServiceConfig& service, std::string_view service_name,
                                    std::string_view method_name, RawCallbacks& callbacks,
                                    RawCallOptions options) {
  detail::CallSetup s = setup(service, service_name, method_name, options.timeout);
  s.extra_metadata = std::move(options.initial_metadata);
  return detail::startRawCall(impl_->io, std::move(s), callbacks);
}

RawStreamPtr AsyncClient::rawUnary(const ServiceConfig& service, std::string_view service_name,
                                   std::string_view method_name, std::string request, RawCallbacks& callbacks,
                                   RawCallOptions options) {
  detail::CallSetup s = setup(service, service_name, method_name,
                              options.timeout.count() > 0 ? options.timeout : service.timeout);
  s.extra_metadata = std::move(options.initial_metadata);
  s.unary = true;
  auto raw = detail::startRawCall(impl_->io, std::move(s), callbacks);
  raw->send(std::move(request), true);
  return raw;
}

}  // namespace skiff::grpc
