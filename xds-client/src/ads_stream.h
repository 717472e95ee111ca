#pragma once

// A bidi ADS stream on gRPC's callback API. gRPC's threads only queue events to the owner through `post`;
// writes may be started from any thread (a small internal lock orders them with the end of the call).
// Responses are read as raw bytes and parsed by the owner, on its thread: a decoded 10,000-cluster response
// is several MB of small objects, and made on gRPC's reader thread they would grow that thread's malloc
// arena, whose top glibc's malloc_trim() does not shrink (only the main arena's).

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/client_callback.h>

namespace skiff::xds {

class AdsStreamBase {
 public:
  virtual ~AdsStreamBase() = default;
  virtual void cancel() = 0;
  // Blocks until gRPC has finished with the call (OnDone ran).
  virtual void waitDone() = 0;
};

template <class Req, class Resp>
class AdsStream : public grpc::ClientBidiReactor<Req, grpc::ByteBuffer>, public AdsStreamBase {
 public:
  struct Handlers {
    std::function<void()> on_established;         // posted: the server answered (initial metadata)
    std::function<void(Resp)> on_message;         // posted
    std::function<void(grpc::Status)> on_closed;  // posted, once
  };
  using Post = std::function<void(std::function<void()>)>;

  AdsStream(Post post, Handlers handlers) : post_(std::move(post)), handlers_(std::move(handlers)) {}

  // Responses as bytes, requests as messages.
  using Stub = grpc::TemplatedGenericStub<Req, grpc::ByteBuffer>;

  // `method` is the full gRPC method name ("/envoy.service.discovery.v3.AggregatedDiscoveryService/...");
  // it must outlive the call (gRPC keeps a pointer to its characters).
  static std::shared_ptr<AdsStream> open(Post post, Handlers handlers, Stub& stub,
                                         const std::string& method) {
    auto stream = std::make_shared<AdsStream>(std::move(post), std::move(handlers));
    stream->self_ = stream;  // released in OnDone
    stream->weak_self_ = stream;
    stub.PrepareBidiStreamingCall(&stream->context_, method, grpc::StubOptions(), stream.get());
    stream->StartRead(&stream->incoming_);
    stream->StartCall();
    return stream;
  }

  void write(Req request) {
    std::lock_guard lock(mu_);
    if (done_ || writes_closed_) return;
    queue_.push_back(std::move(request));
    if (!writing_) {
      writing_ = true;
      this->StartWrite(&queue_.front());
    }
  }

  void cancel() override { context_.TryCancel(); }

  void waitDone() override {
    std::unique_lock lock(mu_);
    done_cv_.wait(lock, [this] { return done_; });
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mu_);
    queue_.pop_front();
    if (!ok) {
      writes_closed_ = true;  // the call is ending; OnDone reports why
      writing_ = false;
      return;
    }
    if (queue_.empty()) {
      writing_ = false;
    } else {
      this->StartWrite(&queue_.front());
    }
  }

  void OnReadInitialMetadataDone(bool ok) override {
    if (ok) post_(handlers_.on_established);
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // no more messages; OnDone follows
    post_([h = handlers_.on_message, bytes = incoming_, failed = parse_failed_, weak = weak_self_]() mutable {
      if (*failed) return;  // the stream is being closed: what it read after the bad response is not applied
      Resp msg;
      if (grpc::SerializationTraits<Resp>::Deserialize(&bytes, &msg).ok()) {
        h(std::move(msg));
        return;
      }
      *failed = true;  // OnDone reports it instead of CANCELLED
      if (auto stream = weak.lock()) stream->cancel();
    });
    incoming_.Clear();
    this->StartRead(&incoming_);
  }

  void OnDone(const grpc::Status& status) override {
    grpc::Status result = *parse_failed_
                              ? grpc::Status(grpc::StatusCode::INTERNAL, "ADS response could not be parsed")
                              : status;
    post_([h = handlers_.on_closed, result] { h(result); });
    std::shared_ptr<AdsStream> keep;
    {
      std::lock_guard lock(mu_);
      done_ = true;
      keep = std::move(self_);
    }
    done_cv_.notify_all();
    // `keep` may hold the last reference: the object dies here, after everything else touched it.
  }

 private:
  Post post_;
  Handlers handlers_;
  grpc::ClientContext context_;
  grpc::ByteBuffer incoming_;
  std::mutex mu_;
  std::condition_variable done_cv_;
  std::deque<Req> queue_;
  bool writing_ = false;
  bool writes_closed_ = false;
  bool done_ = false;
  std::shared_ptr<AdsStream> self_;
  std::weak_ptr<AdsStream> weak_self_;
  // Set on the owner's thread, read in OnDone and by the responses still queued to the owner.
  std::shared_ptr<std::atomic<bool>> parse_failed_ = std::make_shared<std::atomic<bool>>(false);
};

}  // namespace skiff::xds
