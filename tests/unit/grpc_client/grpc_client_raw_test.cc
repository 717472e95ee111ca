// The side-call client's raw-bytes API (for the Wasm host's proxy_grpc_call / proxy_grpc_stream): unary and
// bidi calls by service/method name, metadata both ways, status, half-close, cancel (also from inside a
// callback), every callback on the worker thread; and the per-method cluster stats.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <asio/io_context.hpp>
#include <chrono>
#include <optional>
#include <thread>

#include "raw_echo_server.h"
#include "skiff/grpc/async_client.h"
#include "skiff/stats/stats.h"
#include "skiff/upstream/cluster_info.h"
#include "skiff/upstream/thread_local_cluster.h"

namespace skiff::grpc {
namespace {

std::string find(const Metadata& md, const std::string& key) {
  for (const auto& [k, v] : md) {
    if (k == key) return v;
  }
  return "<absent>";
}

// Records every callback, in order, and checks each runs on the worker thread.
struct Recorder : RawCallbacks {
  std::thread::id worker = std::this_thread::get_id();
  std::vector<std::string> events;
  Metadata initial, trailing;
  std::vector<std::string> messages;
  std::optional<Status> closed;
  std::function<void()> on_message;  // runs inside onMessage (e.g. cancels)

  void onInitialMetadata(Metadata&& md) override {
    EXPECT_EQ(std::this_thread::get_id(), worker);
    events.push_back("initial");
    initial = std::move(md);
  }
  void onMessage(std::string&& m) override {
    EXPECT_EQ(std::this_thread::get_id(), worker);
    events.push_back("message");
    messages.push_back(std::move(m));
    if (on_message) on_message();
  }
  void onTrailingMetadata(Metadata&& md) override {
    EXPECT_EQ(std::this_thread::get_id(), worker);
    events.push_back("trailing");
    trailing = std::move(md);
  }
  void onClose(const Status& s) override {
    EXPECT_EQ(std::this_thread::get_id(), worker);
    EXPECT_FALSE(closed.has_value()) << "onClose twice";
    events.push_back("close");
    closed = s;
  }
};

class RawCallTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", ::grpc::InsecureServerCredentials(), &port_);
    builder.RegisterCallbackGenericService(&echo_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(port_, 0);
    service_.target = "127.0.0.1:" + std::to_string(port_);
  }
  void TearDown() override { server_->Shutdown(std::chrono::system_clock::now()); }

  void runUntil(const std::function<bool()>& done,
                std::chrono::milliseconds limit = std::chrono::seconds(5)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      io_.restart();
      io_.run_for(std::chrono::milliseconds(5));
    }
  }
  static RawCallOptions mode(const std::string& m) {
    RawCallOptions o;
    o.timeout = std::chrono::seconds(5);
    o.initial_metadata = {{"x-mode", m}};
    return o;
  }

  asio::io_context io_;
  upstream::ThreadLocalClusterManager clusters_;
  testing::RawEchoService echo_;
  std::unique_ptr<::grpc::Server> server_;
  int port_ = 0;
  ServiceConfig service_;
};

TEST_F(RawCallTest, UnaryEchoesBytesAndMetadataInOrder) {
  AsyncClient client(io_, clusters_);
  Recorder r;
  RawCallOptions opts = mode("echo");
  opts.initial_metadata.emplace_back("x-token", "secret");
  const std::string request("\0payload\xff", 9);
  auto call = client.rawUnary(service_, "test.Raw", "Echo", request, r, opts);
  EXPECT_TRUE(r.events.empty());  // never inside the call
  runUntil([&] { return r.closed.has_value(); });
  ASSERT_TRUE(r.closed.has_value());
  EXPECT_TRUE(r.closed->ok()) << r.closed->code << " " << r.closed->message;
  EXPECT_EQ(r.events, (std::vector<std::string>{"initial", "message", "trailing", "close"}));
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_EQ(r.messages[0], request);
  EXPECT_EQ(find(r.initial, "x-echo-path"), "/test.Raw/Echo");
  EXPECT_EQ(find(r.initial, "x-echo-token"), "secret");
  EXPECT_EQ(find(r.trailing, "x-trailer"), "t");
  EXPECT_EQ(find(r.trailing, "x-blob-bin"), std::string("\0\1\2", 3));
  EXPECT_TRUE(call->done());
  EXPECT_FALSE(call->send("more"));
}

TEST_F(RawCallTest, BidiStreamEchoesEachMessageThenHalfCloseEndsIt) {
  AsyncClient client(io_, clusters_);
  Recorder r;
  auto stream = client.rawStream(service_, "test.Raw", "Chat", r, mode("echo"));
  EXPECT_TRUE(stream->send("one"));
  EXPECT_TRUE(stream->send("two"));
  runUntil([&] { return r.messages.size() == 2; });
  EXPECT_FALSE(r.closed.has_value());
  EXPECT_TRUE(stream->send("three", /*end_stream=*/true));
  EXPECT_FALSE(stream->send("late"));  // half-closed
  runUntil([&] { return r.closed.has_value(); });
  ASSERT_TRUE(r.closed.has_value());
  EXPECT_TRUE(r.closed->ok()) << r.closed->message;
  EXPECT_EQ(r.messages, (std::vector<std::string>{"one", "two", "three"}));
  EXPECT_EQ(r.events.front(), "initial");
  EXPECT_EQ(r.events.back(), "close");
  EXPECT_EQ(find(r.initial, "x-echo-path"), "/test.Raw/Chat");
}

TEST_F(RawCallTest, ServerErrorArrivesWithTrailersAndMessage) {
  AsyncClient client(io_, clusters_);
  Recorder r;
  auto call = client.rawUnary(service_, "test.Raw", "Echo", "x", r, mode("fail"));
  runUntil([&] { return r.closed.has_value(); });
  ASSERT_TRUE(r.closed.has_value());
  EXPECT_EQ(r.closed->code, 5);  // NOT_FOUND
  EXPECT_EQ(r.closed->message, "nope");
  EXPECT_EQ(find(r.trailing, "x-trailer"), "t");
  EXPECT_TRUE(r.messages.empty());
}

TEST_F(RawCallTest, UnaryWithoutReplyIsInternal) {
  AsyncClient client(io_, clusters_);
  Recorder r;
  auto call = client.rawUnary(service_, "test.Raw", "Echo", "x", r, mode("empty"));
  runUntil([&] { return r.closed.has_value(); });
  ASSERT_TRUE(r.closed.has_value());
  EXPECT_EQ(r.closed->code, kInternal);
}

TEST_F(RawCallTest, DeadlineAndCancel) {
  AsyncClient client(io_, clusters_);
  Recorder late;
  RawCallOptions opts = mode("silent");
  opts.timeout = std::chrono::milliseconds(100);
  auto a = client.rawStream(service_, "test.Raw", "Chat", late, opts);
  a->send("x");
  runUntil([&] { return late.closed.has_value(); });
  ASSERT_TRUE(late.closed.has_value());
  EXPECT_EQ(late.closed->code, kDeadlineExceeded);

  Recorder quiet;
  auto b = client.rawStream(service_, "test.Raw", "Chat", quiet, mode("silent"));
  b->send("x");
  runUntil([&] { return echo_.messages.load() >= 2; });
  b->cancel();
  b->cancel();  // idempotent
  EXPECT_TRUE(b->done());
  EXPECT_FALSE(b->send("y"));
  runUntil([&] { return echo_.cancelled.load() >= 2; });
  EXPECT_GE(echo_.cancelled.load(), 2);  // the server saw both calls end
  runUntil([] { return false; }, std::chrono::milliseconds(100));
  EXPECT_FALSE(quiet.closed.has_value());
}

TEST_F(RawCallTest, DestroyingTheStreamInsideACallbackStopsEverything) {
  AsyncClient client(io_, clusters_);
  Recorder r;
  RawStreamPtr stream = client.rawStream(service_, "test.Raw", "Chat", r, mode("echo"));
  r.on_message = [&] { stream.reset(); };
  stream->send("a");
  stream->send("b");
  runUntil([&] { return echo_.cancelled.load() >= 1; });
  runUntil([] { return false; }, std::chrono::milliseconds(100));
  EXPECT_EQ(r.messages.size(), 1u);
  EXPECT_FALSE(r.closed.has_value());
  EXPECT_EQ(stream, nullptr);
}

TEST_F(RawCallTest, BadInputFailsCleanly) {
  AsyncClient client(io_, clusters_);
  Recorder bad_md, no_method, no_cluster;
  RawCallOptions opts = mode("echo");
  opts.initial_metadata.emplace_back("Bad Key", "v");
  auto a = client.rawUnary(service_, "test.Raw", "Echo", "x", bad_md, opts);
  auto b = client.rawStream(service_, "test.Raw", "", no_method, mode("echo"));
  ServiceConfig missing;
  missing.cluster = "nope";
  auto c = client.rawUnary(missing, "test.Raw", "Echo", "x", no_cluster);
  EXPECT_FALSE(b->send("x"));
  runUntil([&] { return bad_md.closed && no_method.closed && no_cluster.closed; });
  ASSERT_TRUE(bad_md.closed && no_method.closed && no_cluster.closed);
  EXPECT_EQ(bad_md.closed->code, kInternal);
  EXPECT_EQ(no_method.closed->code, kInternal);
  EXPECT_EQ(no_cluster.closed->code, kUnavailable);
  EXPECT_EQ(echo_.calls.load(), 0);
}

TEST_F(RawCallTest, CallsToAClusterChargeEnvoysGrpcStats) {
  envoy::config::cluster::v3::Cluster proto;
  proto.set_name("raw_echo");
  auto info = std::make_shared<const upstream::ClusterInfo>(proto, stats::defaultStore(), false, "");
  auto hosts = std::make_shared<upstream::HostSet>();
  auto host = std::make_shared<upstream::Host>();
  host->endpoint = asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_);
  hosts->hosts.push_back(host);
  clusters_.update("raw_echo", info, hosts);
  ServiceConfig svc;
  svc.cluster = "raw_echo";
  svc.authority = "raw_echo";

  AsyncClient client(io_, clusters_);
  Recorder ok, bad;
  auto s = client.rawStream(svc, "test.Raw", "Chat", ok, mode("echo"));
  s->send("1");
  s->send("2", true);
  auto u = client.rawUnary(svc, "test.Raw", "Chat", "3", bad, mode("fail"));
  runUntil([&] { return ok.closed && bad.closed; });
  ASSERT_TRUE(ok.closed && bad.closed);
  EXPECT_TRUE(ok.closed->ok()) << ok.closed->message;
  auto& store = stats::defaultStore();
  const std::string p = "cluster.raw_echo.grpc.test.Raw.Chat.";
  EXPECT_EQ(store.counter(p + "0").value(), 1u);
  EXPECT_EQ(store.counter(p + "5").value(), 1u);
  EXPECT_EQ(store.counter(p + "success").value(), 1u);
  EXPECT_EQ(store.counter(p + "failure").value(), 1u);
  EXPECT_EQ(store.counter(p + "total").value(), 2u);
  EXPECT_EQ(store.counter(p + "request_message_count").value(), 3u);
  EXPECT_EQ(store.counter(p + "response_message_count").value(), 2u);
}

}  // namespace
}  // namespace skiff::grpc
