// AsyncClient: per-worker channels, unary calls and bidi streams on grpc++'s callback API, completions
// posted back to the worker.
#include "skiff/grpc/async_client.h"

#include <google/protobuf/message_lite.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/byte_buffer.h>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <deque>
#include <mutex>
#include <unordered_map>

#include "skiff/common/logging.h"
#include "skiff/upstream/thread_local_cluster.h"
#include "skiff/upstream/transport_socket.h"

namespace skiff::grpc {
namespace {

// A worker keeps at most this many channels; beyond it the oldest goes (hosts come and go with EDS).
constexpr size_t kMaxChannels = 64;

::grpc::ByteBuffer serialize(const google::protobuf::MessageLite& message) {
  std::string bytes = message.SerializeAsString();
  ::grpc::Slice slice(bytes);
  return ::grpc::ByteBuffer(&slice, 1);
}

std::string flatten(const ::grpc::ByteBuffer& buffer) {
  std::vector<::grpc::Slice> slices;
  std::string out;
  if (!buffer.Dump(&slices).ok()) return out;
  out.reserve(buffer.Length());
  for (const auto& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

Status fromGrpc(const ::grpc::Status& s) {
  return Status{static_cast<int>(s.error_code()), s.error_message()};
}

void applyMetadata(::grpc::ClientContext& ctx, const ServiceConfig& service,
                   std::chrono::milliseconds timeout) {
  for (const auto& [k, v] : service.initial_metadata) ctx.AddMetadata(k, v);
  if (timeout.count() > 0) ctx.set_deadline(std::chrono::system_clock::now() + timeout);
}

// State shared between the worker and gRPC's threads. `mu` orders "post a completion" against cancel(), so
// nothing is posted to a worker after it stopped listening (its io_context may be gone by then).
struct Shared {
  explicit Shared(asio::io_context& io) : io(io) {}
  asio::io_context& io;
  std::mutex mu;
  bool cancelled = false;  // under mu on gRPC threads; the worker writes it under mu too

  template <class F>
  void post(F&& f) {
    std::lock_guard<std::mutex> lock(mu);
    if (!cancelled) asio::post(io, std::forward<F>(f));
  }
  void cancel() {
    std::lock_guard<std::mutex> lock(mu);
    cancelled = true;
  }
};

class UnaryCallImpl : public UnaryCall, public std::enable_shared_from_this<UnaryCallImpl> {
 public:
  UnaryCallImpl(asio::io_context& io, std::shared_ptr<::grpc::Channel> channel, UnaryCallback cb)
      : shared_(std::make_shared<Shared>(io)), channel_(std::move(channel)), callback_(std::move(cb)) {}

  void start(const std::string& method, const google::protobuf::MessageLite& request) {
    request_ = serialize(request);
    ::grpc::GenericStub stub(channel_);
    auto self = shared_from_this();
    stub.UnaryCall(&ctx_, method, ::grpc::StubOptions(), &request_, &response_,
                   [self](::grpc::Status status) {
                     Status st = fromGrpc(status);
                     std::string body = status.ok() ? flatten(self->response_) : std::string();
                     self->shared_->post([self, st = std::move(st), body = std::move(body)]() mutable {
                       self->finish(st, std::move(body));
                     });
                   });
  }

  void cancel() override {
    if (done_) return;
    done_ = true;
    callback_ = nullptr;
    shared_->cancel();
    ctx_.TryCancel();
  }

  // For failures found before the call could start (no cluster, no host).
  void failLater(Status status) {
    auto self = shared_from_this();
    shared_->post([self, status] { self->finish(status, {}); });
  }

  ::grpc::ClientContext& context() { return ctx_; }

 private:
  void finish(const Status& status, std::string body) {
    if (done_) return;
    done_ = true;
    UnaryCallback cb = std::move(callback_);
    callback_ = nullptr;
    if (cb) cb(status, std::move(body));
  }

  std::shared_ptr<Shared> shared_;
  std::shared_ptr<::grpc::Channel> channel_;
  ::grpc::ClientContext ctx_;
  ::grpc::ByteBuffer request_, response_;
  UnaryCallback callback_;
  bool done_ = false;  // worker only
};

// The gRPC side of a stream. It deletes itself in OnDone, which cannot run before the worker's handle
// released its hold, so the handle may use it freely until then. The handle releases the hold when it
// cancels, or when the read side closed (the call is ending: OnDone then reports the final status).
class StreamReactor : public ::grpc::ClientBidiReactor<::grpc::ByteBuffer, ::grpc::ByteBuffer> {
 public:
  StreamReactor(std::shared_ptr<Shared> shared, std::shared_ptr<::grpc::Channel> channel, StreamCallbacks& cb,
                std::shared_ptr<bool> worker_alive)
      : shared_(std::move(shared)),
        channel_(std::move(channel)),
        callbacks_(&cb),
        worker_alive_(std::move(worker_alive)) {}

  void start(const std::string& method) {
    ::grpc::GenericStub stub(channel_);
    stub.PrepareBidiStreamingCall(&ctx_, method, ::grpc::StubOptions(), this);
    AddHold();  // released by the worker's handle
    StartRead(&in_);
    StartCall();
  }

  ::grpc::ClientContext& context() { return ctx_; }
  // Posted to the worker (if it still listens) when no more messages will arrive.
  void setReadClosed(std::function<void()> cb) { read_closed_ = std::move(cb); }

  // Worker side.
  bool send(const google::protobuf::MessageLite& message) {
    const ::grpc::ByteBuffer* next = nullptr;
    {
      std::lock_guard<std::mutex> lock(write_mu_);
      if (close_requested_ || finished_) return false;
      out_.push_back(serialize(message));
      if (!writing_) {
        writing_ = true;
        next = &out_.front();
      }
    }
    if (next != nullptr) StartWrite(next);
    return true;
  }
  void closeSend() {
    bool now = false;
    {
      std::lock_guard<std::mutex> lock(write_mu_);
      if (close_requested_) return;
      close_requested_ = true;
      now = !writing_ && !finished_;
      writes_done_sent_ = now;
    }
    if (now) StartWritesDone();
  }
  void release() { RemoveHold(); }

  // gRPC side.
  void OnReadDone(bool ok) override {
    if (!ok) {
      std::weak_ptr<bool> alive = worker_alive_;
      shared_->post([alive, cb = read_closed_] {
        if (auto a = alive.lock(); a && *a) cb();
      });
      return;
    }
    std::string message = flatten(in_);
    std::weak_ptr<bool> alive = worker_alive_;
    StreamCallbacks* cb = callbacks_;
    shared_->post([alive, cb, message = std::move(message)]() mutable {
      if (auto a = alive.lock(); a && *a) cb->onReceiveMessage(std::move(message));
    });
    StartRead(&in_);
  }
  void OnWriteDone(bool ok) override {
    const ::grpc::ByteBuffer* next = nullptr;
    bool writes_done = false;
    {
      std::lock_guard<std::mutex> lock(write_mu_);
      out_.pop_front();
      if (!ok) finished_ = true;
      if (!finished_ && !out_.empty()) {
        next = &out_.front();
      } else {
        writing_ = false;
        if (close_requested_ && !writes_done_sent_ && !finished_) writes_done = writes_done_sent_ = true;
      }
    }
    if (next != nullptr) StartWrite(next);
    if (writes_done) StartWritesDone();
  }
  void OnDone(const ::grpc::Status& status) override {
    Status st = fromGrpc(status);
    std::weak_ptr<bool> alive = worker_alive_;
    StreamCallbacks* cb = callbacks_;
    shared_->post([alive, cb, st] {
      if (auto a = alive.lock(); a && *a) cb->onRemoteClose(st);
    });
    delete this;
  }

 private:
  std::shared_ptr<Shared> shared_;
  std::shared_ptr<::grpc::Channel> channel_;
  StreamCallbacks* callbacks_;
  std::weak_ptr<bool> worker_alive_;
  std::function<void()> read_closed_;
  ::grpc::ClientContext ctx_;
  ::grpc::ByteBuffer in_;
  std::mutex write_mu_;
  std::deque<::grpc::ByteBuffer> out_;  // front is being written; deque keeps references stable
  bool writing_ = false;
  bool close_requested_ = false;
  bool writes_done_sent_ = false;
  bool finished_ = false;
};

class AsyncStreamImpl : public AsyncStream {
 public:
  AsyncStreamImpl(asio::io_context& io, StreamCallbacks& cb)
      : io_(io),
        callbacks_(cb),
        shared_(std::make_shared<Shared>(io)),
        alive_(std::make_shared<bool>(true)) {}
  ~AsyncStreamImpl() override { cancel(); }

  void start(std::shared_ptr<::grpc::Channel> channel, const ServiceConfig& service,
             const std::string& method, std::chrono::milliseconds timeout) {
    reactor_ = new StreamReactor(shared_, std::move(channel), callbacks_, alive_);
    applyMetadata(reactor_->context(), service, timeout);
    if (!service.authority.empty()) reactor_->context().set_authority(service.authority);
    reactor_->setReadClosed([this] { onReadClosed(); });
    reactor_->start(method);
  }
  void failLater(Status status) {
    std::weak_ptr<bool> alive = alive_;
    StreamCallbacks* cb = &callbacks_;
    shared_->post([alive, cb, status] {
      if (auto a = alive.lock(); a && *a) cb->onRemoteClose(status);
    });
  }

  bool sendMessage(const google::protobuf::MessageLite& message) override {
    return reactor_ != nullptr && reactor_->send(message);
  }
  void closeSend() override {
    if (reactor_ != nullptr) reactor_->closeSend();
  }
  // The call is ending: let OnDone run, which reports the status through onRemoteClose.
  void onReadClosed() {
    if (reactor_ == nullptr) return;
    StreamReactor* r = reactor_;
    reactor_ = nullptr;
    r->release();
  }

  void cancel() override {
    if (!*alive_) return;
    *alive_ = false;
    shared_->cancel();
    if (reactor_ != nullptr) {
      reactor_->context().TryCancel();
      StreamReactor* r = reactor_;
      reactor_ = nullptr;
      r->release();  // after this the reactor may be gone
    }
  }

 private:
  asio::io_context& io_;
  StreamCallbacks& callbacks_;
  std::shared_ptr<Shared> shared_;
  std::shared_ptr<bool> alive_;  // worker-owned; weak copies let posted handlers check for cancel
  StreamReactor* reactor_ = nullptr;
};

}  // namespace

struct AsyncClient::Impl {
  asio::io_context& io;
  upstream::ThreadLocalClusterManager& clusters;
  std::unordered_map<std::string, std::shared_ptr<::grpc::Channel>> channels;
  std::deque<std::string> order;  // insertion order, for eviction

  // The channel for the service's next call, or nullptr with `error` set.
  std::shared_ptr<::grpc::Channel> channelFor(const ServiceConfig& service, Status& error) {
    std::string target;
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
      // The channel is grpc++'s own plaintext one: rather than bypass the cluster's TLS (Istio mTLS), refuse.
      const auto& transport = cluster->info().transport;
      if (transport && transport->select(*host).context) {
        error = Status{kUnavailable, "gRPC cluster '" + service.cluster +
                                         "' uses a TLS transport socket, which the side-call client does not "
                                         "support yet"};
        return nullptr;
      }
      target = (host->endpoint.address().is_v6() ? "ipv6:" : "ipv4:") + host->address;
    } else {
      target = service.target;
    }
    std::string key = service.authority + '|' + target;
    if (auto it = channels.find(key); it != channels.end()) return it->second;
    ::grpc::ChannelArguments args;
    // Each worker its own connection, and quick recovery when a processor comes back.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
    if (!service.authority.empty()) args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, service.authority);
    auto channel = ::grpc::CreateCustomChannel(target, ::grpc::InsecureChannelCredentials(), args);
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
    : impl_(new Impl{io, clusters, {}, {}}) {}

AsyncClient::~AsyncClient() = default;

size_t AsyncClient::channelCount() const {
  return impl_->channels.size();
}

UnaryCallPtr AsyncClient::unary(const ServiceConfig& service, std::string_view method,
                                const google::protobuf::MessageLite& request,
                                std::chrono::milliseconds timeout, UnaryCallback callback) {
  Status error;
  auto channel = impl_->channelFor(service, error);
  auto call = std::make_shared<UnaryCallImpl>(impl_->io, channel, std::move(callback));
  if (!channel) {
    call->failLater(error);
    return call;
  }
  applyMetadata(call->context(), service, timeout.count() > 0 ? timeout : service.timeout);
  if (!service.authority.empty()) call->context().set_authority(service.authority);
  call->start(std::string(method), request);
  return call;
}

AsyncStreamPtr AsyncClient::stream(const ServiceConfig& service, std::string_view method,
                                   StreamCallbacks& callbacks, std::chrono::milliseconds timeout) {
  Status error;
  auto channel = impl_->channelFor(service, error);
  auto stream = std::make_unique<AsyncStreamImpl>(impl_->io, callbacks);
  if (!channel) {
    stream->failLater(error);
  } else {
    stream->start(std::move(channel), service, std::string(method), timeout);
  }
  return stream;
}

}  // namespace skiff::grpc
