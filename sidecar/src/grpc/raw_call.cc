// The call engine: a grpc++ generic bidi reactor per call, its events posted to the worker, and the
// worker-side handle (RawStream) that sends, half-closes and cancels.
#include "grpc/raw_call.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/byte_buffer.h>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <atomic>
#include <deque>
#include <mutex>

namespace skiff::grpc::detail {
namespace {

std::string flatten(const ::grpc::ByteBuffer& buffer) {
  std::vector<::grpc::Slice> slices;
  std::string out;
  if (!buffer.Dump(&slices).ok()) return out;
  out.reserve(buffer.Length());
  for (const auto& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

Metadata toMetadata(const std::multimap<::grpc::string_ref, ::grpc::string_ref>& in) {
  Metadata out;
  out.reserve(in.size());
  for (const auto& [k, v] : in)
    out.emplace_back(std::string(k.data(), k.size()), std::string(v.data(), v.size()));
  return out;
}

// Posting to the worker, ordered against cancel(): once the worker stopped listening nothing more is
// posted (its io_context may be gone by then).
struct Relay {
  explicit Relay(asio::io_context& io) : io(io) {}
  asio::io_context& io;
  std::mutex mu;
  bool cancelled = false;

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

class Reactor;

// Worker-only state of one call, kept alive by the handle and by every posted event.
struct CallState {
  RawCallbacks* callbacks = nullptr;  // null once cancelled or closed
  Reactor* reactor = nullptr;         // valid while we hold the reactor (until the read side closed)
  bool unary = false;
  bool want_metadata = true;
  uint64_t sent = 0, received = 0;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::shared_ptr<const MethodStats> stats;

  bool done() const { return callbacks == nullptr; }
  void finish(Status status, Metadata trailers);
};

// The gRPC side. It deletes itself in OnDone, which cannot run before the worker released its hold, so the
// worker may use it freely until then. The worker releases the hold when it cancels or when the read side
// closed (the call is ending: OnDone then reports the final status).
class Reactor : public ::grpc::ClientBidiReactor<::grpc::ByteBuffer, ::grpc::ByteBuffer> {
 public:
  Reactor(std::shared_ptr<Relay> relay, std::shared_ptr<CallState> state,
          std::shared_ptr<::grpc::Channel> channel)
      : relay_(std::move(relay)), state_(std::move(state)), channel_(std::move(channel)) {}

  ::grpc::ClientContext& context() { return ctx_; }

  void start(const std::string& path) {
    ::grpc::GenericStub stub(channel_);
    stub.PrepareBidiStreamingCall(&ctx_, path, ::grpc::StubOptions(), this);
    AddHold();  // released by the worker
    StartCall();
    // The first read starts once initial metadata is in, so that it is always reported before messages.
  }

  // Worker side.
  bool send(std::string bytes, bool last) {
    const ::grpc::ByteBuffer* next = nullptr;
    bool writes_done = false;
    {
      std::lock_guard<std::mutex> lock(write_mu_);
      if (close_requested_ || failed_) return false;
      queued_.fetch_add(bytes.size(), std::memory_order_relaxed);
      ::grpc::Slice slice(bytes);
      out_.emplace_back(&slice, 1);
      if (last) close_requested_ = true;
      if (!writing_) {
        writing_ = true;
        next = &out_.front();
      }
    }
    if (next != nullptr) StartWrite(next);
    if (writes_done) StartWritesDone();
    return true;
  }
  void closeSend() {
    bool now = false;
    {
      std::lock_guard<std::mutex> lock(write_mu_);
      if (close_requested_) return;
      close_requested_ = true;
      now = !writing_ && !failed_;
      writes_done_sent_ = now;
    }
    if (now) StartWritesDone();
  }
  void release() { RemoveHold(); }
  size_t queuedBytes() const { return queued_.load(std::memory_order_relaxed); }
  void notifyWhenQueuedBelow(size_t bytes) {
    bool now = false;
    {
      std::lock_guard<std::mutex> lock(write_mu_);
      now = queued_.load(std::memory_order_relaxed) <= bytes;
      low_armed_ = !now;
      low_mark_ = bytes;
    }
    if (now) postQueueLow();
  }

  // gRPC side.
  void OnReadInitialMetadataDone(bool ok) override {
    if (ok && want_metadata_) {
      Metadata md = toMetadata(ctx_.GetServerInitialMetadata());
      relay_->post([state = state_, md = std::move(md)]() mutable {
        if (!state->done() && state->want_metadata) state->callbacks->onInitialMetadata(std::move(md));
      });
    }
    StartRead(&in_);
  }
  void OnReadDone(bool ok) override {
    if (!ok) {
      relay_->post([state = state_] {
        if (state->reactor == nullptr) return;  // cancelled: the hold is gone already
        Reactor* r = state->reactor;
        state->reactor = nullptr;
        r->release();
      });
      return;
    }
    std::string message = flatten(in_);
    relay_->post([state = state_, message = std::move(message)]() mutable {
      if (state->done()) return;
      ++state->received;
      state->callbacks->onMessage(std::move(message));
    });
    StartRead(&in_);
  }
  void OnWriteDone(bool ok) override {
    const ::grpc::ByteBuffer* next = nullptr;
    bool writes_done = false;
    bool low = false;
    {
      std::lock_guard<std::mutex> lock(write_mu_);
      queued_.fetch_sub(out_.front().Length(), std::memory_order_relaxed);
      out_.pop_front();
      if (low_armed_ && queued_.load(std::memory_order_relaxed) <= low_mark_) {
        low_armed_ = false;
        low = true;
      }
      if (!ok) failed_ = true;
      if (!failed_ && !out_.empty()) {
        next = &out_.front();
      } else {
        writing_ = false;
        if (close_requested_ && !writes_done_sent_ && !failed_) writes_done = writes_done_sent_ = true;
      }
    }
    if (low) postQueueLow();
    if (next != nullptr) StartWrite(next);
    if (writes_done) StartWritesDone();
  }
  void OnDone(const ::grpc::Status& status) override {
    Status st{static_cast<int>(status.error_code()), status.error_message()};
    Metadata trailers;
    if (want_metadata_) trailers = toMetadata(ctx_.GetServerTrailingMetadata());
    relay_->post([state = state_, st = std::move(st), trailers = std::move(trailers)]() mutable {
      state->finish(std::move(st), std::move(trailers));
    });
    delete this;
  }

  bool want_metadata_ = true;

 private:
  void postQueueLow() {
    relay_->post([state = state_] {
      if (!state->done()) state->callbacks->onSendQueueLow();
    });
  }

  std::shared_ptr<Relay> relay_;
  std::shared_ptr<CallState> state_;
  std::shared_ptr<::grpc::Channel> channel_;
  ::grpc::ClientContext ctx_;
  ::grpc::ByteBuffer in_;
  std::mutex write_mu_;
  std::deque<::grpc::ByteBuffer> out_;  // front is being written; deque keeps references stable
  bool writing_ = false;
  bool close_requested_ = false;
  bool writes_done_sent_ = false;
  bool failed_ = false;
  std::atomic<size_t> queued_{0};  // bytes in out_; read by the worker without the lock
  size_t low_mark_ = 0;            // onSendQueueLow once queued_ <= this, while low_armed_
  bool low_armed_ = false;
};

void CallState::finish(Status status, Metadata trailers) {
  if (done()) return;
  if (unary && status.ok() && received != 1) {
    status = Status{kInternal, received == 0 ? "no message returned for a unary call"
                                             : "more than one message returned for a unary call"};
  }
  if (stats) chargeStats(*stats, status, sent, received, std::chrono::steady_clock::now() - started);
  if (want_metadata) {
    callbacks->onTrailingMetadata(std::move(trailers));
    if (done()) return;  // cancelled from the callback
  }
  RawCallbacks* cb = callbacks;
  callbacks = nullptr;
  cb->onClose(status);
}

class RawStreamImpl : public RawStream {
 public:
  RawStreamImpl(asio::io_context& io, RawCallbacks& callbacks, const CallSetup& setup)
      : relay_(std::make_shared<Relay>(io)), state_(std::make_shared<CallState>()) {
    state_->callbacks = &callbacks;
    state_->unary = setup.unary;
    state_->want_metadata = setup.want_metadata;
    state_->stats = setup.stats;
  }
  ~RawStreamImpl() override { cancel(); }

  void start(CallSetup& setup) {
    auto* r = new Reactor(relay_, state_, std::move(setup.channel));
    r->want_metadata_ = setup.want_metadata;
    auto& ctx = r->context();
    if (setup.service_metadata != nullptr) {
      for (const auto& [k, v] : *setup.service_metadata) ctx.AddMetadata(k, v);
    }
    for (const auto& [k, v] : setup.extra_metadata) ctx.AddMetadata(k, v);
    if (setup.timeout.count() > 0) ctx.set_deadline(std::chrono::system_clock::now() + setup.timeout);
    if (!setup.authority.empty()) ctx.set_authority(setup.authority);
    state_->reactor = r;
    r->start(setup.path);
  }
  void failLater(Status status) {
    relay_->post(
        [state = state_, status = std::move(status)]() mutable { state->finish(std::move(status), {}); });
  }

  bool send(std::string message, bool end_stream) override {
    if (state_->done() || state_->reactor == nullptr) return false;
    if (!state_->reactor->send(std::move(message), end_stream)) return false;
    ++state_->sent;
    return true;
  }
  void closeSend() override {
    if (!state_->done() && state_->reactor != nullptr) state_->reactor->closeSend();
  }
  void cancel() override {
    if (state_->done() && state_->reactor == nullptr) return;
    state_->callbacks = nullptr;
    relay_->cancel();
    if (Reactor* r = state_->reactor; r != nullptr) {
      state_->reactor = nullptr;
      r->context().TryCancel();
      r->release();  // after this the reactor may be gone
    }
  }
  bool done() const override { return state_->done(); }
  size_t queuedBytes() const override {
    return state_->reactor != nullptr ? state_->reactor->queuedBytes() : 0;
  }
  void notifyWhenQueuedBelow(size_t bytes) override {
    if (!state_->done() && state_->reactor != nullptr) state_->reactor->notifyWhenQueuedBelow(bytes);
  }

 private:
  std::shared_ptr<Relay> relay_;
  std::shared_ptr<CallState> state_;
};

}  // namespace

bool validMetadata(const std::string& key, const std::string& value) {
  if (key.empty() || key.rfind("grpc-", 0) == 0) return false;
  for (char c : key) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.')) return false;
  }
  if (key.size() > 4 && key.compare(key.size() - 4, 4, "-bin") == 0) return true;
  for (char c : value) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

RawStreamPtr startRawCall(asio::io_context& io, CallSetup setup, RawCallbacks& callbacks) {
  auto stream = std::make_unique<RawStreamImpl>(io, callbacks, setup);
  if (!setup.channel) {
    stream->failLater(std::move(setup.error));
    return stream;
  }
  auto check = [&](const Metadata& md) {
    for (const auto& [k, v] : md) {
      if (!validMetadata(k, v)) {
        stream->failLater(Status{kInternal, "invalid gRPC initial metadata '" + k + "'"});
        return false;
      }
    }
    return true;
  };
  if ((setup.service_metadata != nullptr && !check(*setup.service_metadata)) ||
      !check(setup.extra_metadata)) {
    return stream;
  }
  stream->start(setup);
  return stream;
}

}  // namespace skiff::grpc::detail
