// AdsClient against a control plane whose responses are not valid protobuf: the stream is closed as an
// error and the client reconnects, without calling any subscriber.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "skiff/xds/ads_client.h"

namespace skiff::xds {
namespace {

// Answers every call on any method with one message of bytes that no protobuf parser accepts.
class GarbageServer {
 public:
  class Reactor : public grpc::ServerGenericBidiReactor {
   public:
    explicit Reactor(std::atomic<int>& calls) {
      calls++;
      grpc::Slice slice(std::string("\x07\xff\xff", 3));  // field 0, wire type 7: invalid
      reply_ = grpc::ByteBuffer(&slice, 1);
      StartRead(&request_);
      StartWrite(&reply_);
    }
    void OnReadDone(bool ok) override {
      if (ok) {
        StartRead(&request_);
      } else {
        Finish(grpc::Status::OK);
      }
    }
    void OnWriteDone(bool) override {}
    void OnDone() override { delete this; }

   private:
    grpc::ByteBuffer request_, reply_;
  };

  class Service : public grpc::CallbackGenericService {
   public:
    explicit Service(std::atomic<int>& calls) : calls_(calls) {}
    grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext*) override {
      return new Reactor(calls_);
    }

   private:
    std::atomic<int>& calls_;
  };

  GarbageServer() : service_(calls) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterCallbackGenericService(&service_);
    server_ = builder.BuildAndStart();
  }
  ~GarbageServer() { server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1)); }

  std::atomic<int> calls{0};
  int port = 0;

 private:
  Service service_;
  std::unique_ptr<grpc::Server> server_;
};

// The owner's thread.
class Loop {
 public:
  Loop() : thread_([this] { run(); }) {}
  ~Loop() {
    post({});
    thread_.join();
  }
  void post(std::function<void()> fn) {
    std::lock_guard lock(mu_);
    queue_.push_back(std::move(fn));
    cv_.notify_one();
  }
  void sync(std::function<void()> fn) {
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    post([&] {
      fn();
      std::lock_guard lock(m);
      done = true;
      cv.notify_one();
    });
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return done; });
  }

 private:
  void run() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return !queue_.empty(); });
        fn = std::move(queue_.front());
        queue_.pop_front();
      }
      if (!fn) return;
      fn();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  std::thread thread_;
};

class AdsBadResponseTest : public ::testing::TestWithParam<bool> {};

TEST_P(AdsBadResponseTest, UnparsableResponseClosesTheStreamAndTheClientReconnects) {
  GarbageServer server;
  ASSERT_NE(server.port, 0);
  Loop loop;
  std::atomic<int> updates{0};
  AdsClientOptions options;
  options.target = "127.0.0.1:" + std::to_string(server.port);
  options.delta = GetParam();
  options.node.set_id("sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local");
  options.executor = [&loop](std::function<void()> fn) { loop.post(std::move(fn)); };
  options.backoff_base = std::chrono::milliseconds(10);
  options.backoff_max = std::chrono::milliseconds(40);
  auto client = std::make_unique<AdsClient>(std::move(options));
  SubscriptionCallbacks cb;
  cb.on_update = [&](const ConfigUpdate&) -> std::string {
    updates++;
    return "";
  };
  loop.sync([&] {
    client->subscribe("type.googleapis.com/envoy.config.cluster.v3.Cluster", {}, std::move(cb));
    client->start();
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  uint64_t closed = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    loop.sync([&] { closed = client->stats().streams_closed; });
    if (closed >= 2 && server.calls >= 3) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_GE(closed, 2u);
  EXPECT_GE(server.calls.load(), 3);
  EXPECT_EQ(updates.load(), 0);
  loop.sync([&] { client.reset(); });
}

INSTANTIATE_TEST_SUITE_P(SotwAndDelta, AdsBadResponseTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Delta" : "Sotw"; });

}  // namespace
}  // namespace skiff::xds
