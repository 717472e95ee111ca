// AdsClient against a control plane whose first response is not valid protobuf and whose second is a
// good one: the stream is closed as an error and the client reconnects, without calling any subscriber
// (what the stream read after the bad response is not applied either).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/service/discovery/v3/discovery.pb.h"
#include "skiff/xds/ads_client.h"

namespace skiff::xds {
namespace {

// A valid CDS response with one cluster, in the call's variant (SotW or Delta).
std::string goodResponse(bool delta) {
  envoy::config::cluster::v3::Cluster cluster;
  cluster.set_name("c");
  const std::string type = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
  if (delta) {
    envoy::service::discovery::v3::DeltaDiscoveryResponse r;
    r.set_type_url(type);
    r.set_nonce("n2");
    auto* resource = r.add_resources();
    resource->set_name("c");
    resource->set_version("1");
    resource->mutable_resource()->PackFrom(cluster);
    return r.SerializeAsString();
  }
  envoy::service::discovery::v3::DiscoveryResponse r;
  r.set_type_url(type);
  r.set_version_info("1");
  r.set_nonce("n2");
  r.add_resources()->PackFrom(cluster);
  return r.SerializeAsString();
}

// Answers every call with a message of bytes that no protobuf parser accepts, then a good response.
class GarbageServer {
 public:
  class Reactor : public grpc::ServerGenericBidiReactor {
   public:
    Reactor(std::atomic<int>& calls, bool delta) {
      calls++;
      grpc::Slice garbage(std::string("\x07\xff\xff", 3));  // field 0, wire type 7: invalid
      replies_[0] = grpc::ByteBuffer(&garbage, 1);
      grpc::Slice good(goodResponse(delta));
      replies_[1] = grpc::ByteBuffer(&good, 1);
      StartRead(&request_);
      StartWrite(&replies_[0]);
    }
    void OnReadDone(bool ok) override {
      if (ok) {
        StartRead(&request_);
      } else {
        Finish(grpc::Status::OK);
      }
    }
    void OnWriteDone(bool ok) override {
      if (ok && !second_sent_) {
        second_sent_ = true;
        StartWrite(&replies_[1]);
      }
    }
    void OnDone() override { delete this; }

   private:
    grpc::ByteBuffer request_, replies_[2];
    bool second_sent_ = false;
  };

  class Service : public grpc::CallbackGenericService {
   public:
    explicit Service(std::atomic<int>& calls) : calls_(calls) {}
    grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* context) override {
      return new Reactor(calls_, context->method().find("Delta") != std::string::npos);
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
