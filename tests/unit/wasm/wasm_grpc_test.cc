// gRPC callouts through a fake sender: tokens (low bits 1 = call, 2 = stream), the request as the sender
// sees it, events delivered as proxy_on_grpc_* with maps 4/5 and buffer 5, proxy_get_status on close,
// send/close/cancel result codes, and no events after a cancel.
#include <gtest/gtest.h>

#include <asio/io_context.hpp>

#include "skiff/stats/stats.h"
#include "wasm/plugin.h"
#include "wasm_test_util.h"

namespace skiff::wasm {
namespace {

using testing::FakeStreamContext;

struct FakeGrpc {
  GrpcRequest request;
  GrpcEvents events;
  std::vector<std::pair<std::string, bool>> sent;
  int closed_send = 0;
  bool destroyed = false;
};

class FakeCallout : public GrpcCallout {
 public:
  explicit FakeCallout(FakeGrpc* state) : state_(state) {}
  ~FakeCallout() override { state_->destroyed = true; }
  bool send(std::string message, bool end_stream) override {
    state_->sent.emplace_back(std::move(message), end_stream);
    return true;
  }
  void closeSend() override { ++state_->closed_send; }

 private:
  FakeGrpc* state_;
};

class FakeGrpcSender : public CalloutSender {
 public:
  explicit FakeGrpcSender(std::vector<std::unique_ptr<FakeGrpc>>* calls) : calls_(calls) {}
  WasmResult httpCall(const std::string&, http::HeaderMap, std::string, std::chrono::milliseconds, HttpDone,
                      std::function<void()>*) override {
    return WasmResult::kInternalFailure;
  }
  WasmResult grpcCall(GrpcRequest request, GrpcEvents events, std::unique_ptr<GrpcCallout>* call) override {
    if (request.service == "nope") return WasmResult::kParseFailure;
    calls_->push_back(std::make_unique<FakeGrpc>());
    calls_->back()->request = std::move(request);
    calls_->back()->events = std::move(events);
    *call = std::make_unique<FakeCallout>(calls_->back().get());
    return WasmResult::kOk;
  }

 private:
  std::vector<std::unique_ptr<FakeGrpc>>* calls_;
};

class WasmGrpcTest : public ::testing::Test {
 protected:
  WasmGrpcTest() : store(1) {}
  void SetUp() override {
    code = skiff::wasm::testing::readModule("grpc_call_filter");
    if (code.empty()) GTEST_SKIP() << "wasm test module grpc_call_filter not built";
    auto spec = std::make_shared<PluginSpec>();
    spec->name = "grpc";
    spec->vm_id = "grpc-test";
    spec->code = code;
    spec->plugin_configuration = "echo";
    std::string error;
    plugin = PluginVm::create(spec, &store, nullptr, &error, std::make_unique<FakeGrpcSender>(&calls));
    ASSERT_TRUE(plugin) << error;
  }
  // Runs proxy_on_request_headers for a stream with `headers`; returns its status.
  uint32_t start(FakeStreamContext& stream, std::vector<std::pair<std::string, std::string>> headers) {
    for (auto& [k, v] : headers) stream.request_headers.add(k, v);
    id = plugin->createStreamContext(&stream);
    return plugin->callStream(&stream, Export::kOnRequestHeaders, {id, 1, 1}).value_or(99);
  }

  stats::Store store;
  std::string code;
  std::vector<std::unique_ptr<FakeGrpc>> calls;
  std::unique_ptr<PluginVm> plugin;
  uint32_t id = 0;
};

TEST_F(WasmGrpcTest, UnaryCallDeliversMetadataMessageAndCloseToTheRootContext) {
  FakeStreamContext stream;
  ASSERT_EQ(start(stream, {{"x-grpc", "ping"}}), 1u);  // held while the call runs
  ASSERT_EQ(calls.size(), 1u);
  FakeGrpc& call = *calls[0];
  EXPECT_EQ(call.request.service, "echo");
  EXPECT_EQ(call.request.service_name, "skiff.test.Echo");
  EXPECT_EQ(call.request.method, "Unary");
  ASSERT_TRUE(call.request.message.has_value());
  EXPECT_EQ(*call.request.message, std::string("\x0a\x04ping", 6));
  EXPECT_EQ(call.request.timeout, std::chrono::milliseconds(2000));
  ASSERT_EQ(call.request.initial_metadata.size(), 1u);
  EXPECT_EQ(call.request.initial_metadata[0], std::make_pair(std::string("x-md"), std::string("from-wasm")));

  call.events.initial_metadata({{"x-echo-initial", "i"}});
  call.events.message(std::string("\x0a\x04pong", 6));
  call.events.trailing_metadata({{"x-echo-trailer", "t-ping"}});
  EXPECT_TRUE(stream.continued.empty());
  call.events.close(0, "");
  EXPECT_TRUE(call.destroyed);  // released once closed
  EXPECT_EQ(stream.request_headers.getOr("x-grpc-reply"), "pong");
  EXPECT_EQ(stream.request_headers.getOr("x-grpc-initial"), "i");
  EXPECT_EQ(stream.request_headers.getOr("x-grpc-trailer"), "t-ping");
  EXPECT_EQ(stream.continued, std::vector<uint32_t>{0});
  EXPECT_FALSE(plugin->failed());
}

TEST_F(WasmGrpcTest, ErrorStatusIsReadableWithProxyGetStatus) {
  FakeStreamContext stream;
  ASSERT_EQ(start(stream, {{"x-grpc", "e"}}), 1u);
  calls[0]->events.close(7, "denied");
  EXPECT_EQ(stream.reply_status, 503u);
  EXPECT_EQ(stream.reply_body, "grpc 7: denied");
}

TEST_F(WasmGrpcTest, StreamTokensSendAndHalfClose) {
  FakeStreamContext stream;
  ASSERT_EQ(start(stream, {{"x-grpc-stream", "s"}}), 1u);
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_FALSE(calls[0]->request.message.has_value());  // a stream
  EXPECT_EQ(calls[0]->request.method, "Stream");
  ASSERT_EQ(calls[0]->sent.size(), 1u);
  EXPECT_TRUE(calls[0]->sent[0].second);  // end_stream
  for (int i = 0; i < 3; ++i) calls[0]->events.message(std::string("\x0a\x01s", 3));
  calls[0]->events.close(0, "");
  EXPECT_EQ(stream.request_headers.getOr("x-grpc-reply"), "s,s,s");
}

TEST_F(WasmGrpcTest, CancelStopsEventsAndBadTokensAreRefused) {
  FakeStreamContext stream;
  ASSERT_EQ(start(stream, {{"x-grpc-cancel", "1"}}), 0u);
  EXPECT_EQ(stream.request_headers.getOr("x-grpc-cancel-result"), "0,0,1");  // Ok, Ok, NotFound
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_TRUE(calls[0]->destroyed);

  // Direct API: tokens carry the type; sending on a unary call or an unknown token is refused.
  GrpcRequest unary;
  unary.service = "echo";
  unary.message = "m";
  uint32_t call_token = 0, stream_token = 0;
  ASSERT_EQ(plugin->grpcCall(unary, &call_token), WasmResult::kOk);
  EXPECT_EQ(call_token & 3, 1u);
  GrpcRequest streaming;
  streaming.service = "echo";
  ASSERT_EQ(plugin->grpcCall(streaming, &stream_token), WasmResult::kOk);
  EXPECT_EQ(stream_token & 3, 2u);
  EXPECT_EQ(plugin->grpcSend(call_token, "x", false), WasmResult::kBadArgument);
  EXPECT_EQ(plugin->grpcSend(stream_token + 4, "x", false), WasmResult::kNotFound);
  EXPECT_EQ(plugin->grpcSend(stream_token, "x", false), WasmResult::kOk);
  EXPECT_EQ(plugin->grpcClose(stream_token), WasmResult::kOk);  // half-close: still open for answers
  EXPECT_EQ(calls.back()->closed_send, 1);
  EXPECT_FALSE(calls.back()->destroyed);
  EXPECT_EQ(plugin->grpcClose(call_token), WasmResult::kOk);  // unary: close == cancel
  EXPECT_TRUE(calls[1]->destroyed);
  EXPECT_EQ(plugin->grpcCancel(4), WasmResult::kBadArgument);  // an HTTP call token
  GrpcRequest bad;
  bad.service = "nope";
  EXPECT_EQ(plugin->grpcCall(bad, &call_token), WasmResult::kParseFailure);
}

TEST(WasmGrpcNoSender, ConfigTimeVmRefusesCalls) {
  SKIFF_REQUIRE_MODULE(code, "grpc_call_filter");
  stats::Store store(1);
  auto spec = std::make_shared<PluginSpec>();
  spec->vm_id = "grpc-none";
  spec->code = code;
  spec->plugin_configuration = "echo";
  std::string error;
  auto plugin = PluginVm::create(spec, &store, nullptr, &error);
  ASSERT_TRUE(plugin) << error;
  EXPECT_TRUE(plugin->wantsCalloutSender());  // it exports proxy_on_grpc_close
  GrpcRequest request;
  request.service = "echo";
  request.message = "m";
  uint32_t token = 0;
  EXPECT_EQ(plugin->grpcCall(request, &token), WasmResult::kInternalFailure);
}

}  // namespace
}  // namespace skiff::wasm
