#pragma once

// A bidi ADS stream on gRPC's callback API. gRPC's threads only queue events to the owner through `post`;
// writes may be started from any thread (a small internal lock orders them with the end of the call).

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>

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
class AdsStream : public grpc::ClientBidiReactor<Req, Resp>, public AdsStreamBase {
 public:
  struct Handlers {
    std::function<void()> on_established;         // posted: the server answered (initial metadata)
    std::function<void(Resp)> on_message;         // posted
    std::function<void(grpc::Status)> on_closed;  // posted, once
  };
  using Post = std::function<void(std::function<void()>)>;

  AdsStream(Post post, Handlers handlers) : post_(std::move(post)), handlers_(std::move(handlers)) {}

  // `start_call(context, reactor)` is the stub's async()->XxxAggregatedResources.
  template <class StartCall>
  static std::shared_ptr<AdsStream> open(Post post, Handlers handlers, StartCall&& start_call) {
    auto stream = std::make_shared<AdsStream>(std::move(post), std::move(handlers));
    stream->self_ = stream;  // released in OnDone
    start_call(&stream->context_, stream.get());
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
    post_([h = handlers_.on_message, msg = std::move(incoming_)]() mutable { h(std::move(msg)); });
    incoming_ = Resp();
    this->StartRead(&incoming_);
  }

  void OnDone(const grpc::Status& status) override {
    post_([h = handlers_.on_closed, status] { h(status); });
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
  Resp incoming_;
  std::mutex mu_;
  std::condition_variable done_cv_;
  std::deque<Req> queue_;
  bool writing_ = false;
  bool writes_closed_ = false;
  bool done_ = false;
  std::shared_ptr<AdsStream> self_;
};

}  // namespace skiff::xds
