// A grpc++ generic (bytes) test server for the side-call client: every method echoes each message back,
// with behaviour chosen by the client's "x-mode" metadata:
//   echo (default)  initial metadata x-echo-path (the method) and x-echo-token (the client's x-token); each
//                   message echoed; on half-close OK with trailing metadata x-trailer and x-blob-bin
//   fail            no messages, status NOT_FOUND "nope" with the same trailing metadata
//   silent          reads but never replies, ends only when the client cancels or the deadline passes
//   empty           reads until half-close, then OK without any message
//   flaky           the first call carrying a given x-flaky-id fails UNAVAILABLE; later ones echo
#pragma once

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/byte_buffer.h>

#include <atomic>
#include <mutex>
#include <set>
#include <string>

namespace skiff::grpc::testing {

class RawEchoService : public ::grpc::CallbackGenericService {
 public:
  std::atomic<int> calls{0};
  std::atomic<int> cancelled{0};
  std::atomic<int> messages{0};

  ::grpc::ServerGenericBidiReactor* CreateReactor(::grpc::GenericCallbackServerContext* ctx) override {
    ++calls;
    return new Reactor(this, ctx);
  }

 private:
  std::mutex mu_;
  std::set<std::string> flaky_seen_;

  class Reactor : public ::grpc::ServerGenericBidiReactor {
   public:
    Reactor(RawEchoService* svc, ::grpc::GenericCallbackServerContext* ctx) : svc_(svc), ctx_(ctx) {
      const auto& md = ctx->client_metadata();
      if (auto it = md.find("x-mode"); it != md.end())
        mode_ = std::string(it->second.data(), it->second.size());
      ctx->AddTrailingMetadata("x-trailer", "t");
      ctx->AddTrailingMetadata("x-blob-bin", std::string("\0\1\2", 3));
      if (mode_ == "flaky") {
        auto it = md.find("x-flaky-id");
        const std::string id = it == md.end() ? "" : std::string(it->second.data(), it->second.size());
        std::lock_guard<std::mutex> lock(svc->mu_);
        if (svc->flaky_seen_.insert(id).second) {
          finish(::grpc::Status(::grpc::StatusCode::UNAVAILABLE, "try again"));
          return;
        }
      }
      if (mode_ == "fail") {
        finish(::grpc::Status(::grpc::StatusCode::NOT_FOUND, "nope"));
        return;
      }
      ctx->AddInitialMetadata("x-echo-path", ctx->method());
      if (auto it = md.find("x-token"); it != md.end()) {
        ctx->AddInitialMetadata("x-echo-token", std::string(it->second.data(), it->second.size()));
      }
      StartSendInitialMetadata();
      StartRead(&in_);
    }
    void OnReadDone(bool ok) override {
      if (!ok) {
        if (mode_ != "silent") finish(::grpc::Status::OK);
        return;
      }
      ++svc_->messages;
      if (mode_ == "silent" || mode_ == "empty") {
        StartRead(&in_);
        return;
      }
      out_ = in_;
      StartWrite(&out_);
    }
    void OnWriteDone(bool ok) override {
      if (ok) StartRead(&in_);
    }
    void OnCancel() override {
      ++svc_->cancelled;
      finish(::grpc::Status::CANCELLED);
    }
    void OnDone() override { delete this; }

   private:
    void finish(const ::grpc::Status& s) {
      if (finished_.exchange(true)) return;
      Finish(s);
    }
    RawEchoService* svc_;
    ::grpc::GenericCallbackServerContext* ctx_;
    std::string mode_ = "echo";
    ::grpc::ByteBuffer in_, out_;
    std::atomic<bool> finished_{false};
  };
};

}  // namespace skiff::grpc::testing
