// skiff-grpc-test-server: the Echo service for proxying tests. Prints "PORT <n>" once listening.
//   skiff-grpc-test-server [--port N]   (0 = any free port)
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "echo.grpc.pb.h"

namespace {

using skiff::test::Echo;
using skiff::test::EchoReply;
using skiff::test::EchoRequest;

int64_t deadlineMs(grpc::ServerContext* ctx) {
  const auto deadline = ctx->deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return -1;
  return std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::system_clock::now())
      .count();
}

class EchoService final : public Echo::Service {
 public:
  grpc::Status Unary(grpc::ServerContext* ctx, const EchoRequest* rq, EchoReply* reply) override {
    if (auto s = prologue(ctx, *rq); !s.ok()) return s;
    reply->set_message(rq->message());
    reply->set_deadline_ms(deadlineMs(ctx));
    if (rq->pad_bytes() > 0) reply->set_pad(std::string(static_cast<size_t>(rq->pad_bytes()), 'p'));
    return finish(ctx, *rq);
  }

  grpc::Status Stream(grpc::ServerContext* ctx, const EchoRequest* rq,
                      grpc::ServerWriter<EchoReply>* writer) override {
    if (auto s = prologue(ctx, *rq); !s.ok()) return s;
    for (int i = 0; i < rq->count(); ++i) {
      EchoReply reply;
      reply.set_message(rq->message());
      reply.set_index(i);
      reply.set_deadline_ms(deadlineMs(ctx));
      if (!writer->Write(reply)) return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
    }
    return finish(ctx, *rq);
  }

 private:
  grpc::Status prologue(grpc::ServerContext* ctx, const EchoRequest& rq) {
    if (rq.sleep_ms() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(rq.sleep_ms()));
    if (rq.fail_first() > 0) {
      std::lock_guard<std::mutex> lock(mu_);
      if (calls_[rq.message()]++ < rq.fail_first()) {
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "failing on purpose");  // trailers-only
      }
    }
    ctx->AddInitialMetadata("x-echo-initial", "i");
    return grpc::Status::OK;
  }

  grpc::Status finish(grpc::ServerContext* ctx, const EchoRequest& rq) {
    ctx->AddTrailingMetadata("x-echo-trailer", "t-" + rq.message());
    if (rq.status() != 0) {
      return grpc::Status(static_cast<grpc::StatusCode>(rq.status()),
                          "requested status " + std::to_string(rq.status()));
    }
    return grpc::Status::OK;
  }

  std::mutex mu_;
  std::map<std::string, int> calls_;
};

}  // namespace

int main(int argc, char** argv) {
  int port = 0;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--port") == 0) port = std::atoi(argv[i + 1]);
  }
  EchoService service;
  grpc::ServerBuilder builder;
  int selected = 0;
  builder.AddListeningPort("127.0.0.1:" + std::to_string(port), grpc::InsecureServerCredentials(), &selected);
  builder.RegisterService(&service);
  auto server = builder.BuildAndStart();
  if (!server || selected == 0) {
    std::cerr << "cannot listen\n";
    return 1;
  }
  std::cout << "PORT " << selected << std::endl;
  server->Wait();
  return 0;
}
