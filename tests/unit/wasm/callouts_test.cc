// proxy_http_call (with a fake sender), shared queues with proxy_on_queue_ready on the owner's loop,
// tick + metrics, and the execution-time limit stopping a guest stuck in a loop.
#include <gtest/gtest.h>

#include <asio/io_context.hpp>
#include <chrono>
#include <thread>

#include "skiff/stats/stats.h"
#include "wasm/shared_data.h"
#include "wasm/shared_queue.h"
#include "wasm/watchdog.h"
#include "wasm_test_util.h"

namespace skiff::wasm {
namespace {

using testing::FakeStreamContext;

struct SentCall {
  std::string cluster;
  http::HeaderMap headers;
  std::string body;
  std::chrono::milliseconds timeout;
  CalloutSender::HttpDone done;
  bool cancelled = false;
};

class FakeSender : public CalloutSender {
 public:
  explicit FakeSender(std::vector<SentCall>* calls) : calls_(calls) {}
  WasmResult httpCall(const std::string& cluster, http::HeaderMap headers, std::string body,
                      std::chrono::milliseconds timeout, HttpDone done,
                      std::function<void()>* cancel) override {
    if (cluster == "unknown") return WasmResult::kBadArgument;
    calls_->push_back(SentCall{cluster, std::move(headers), std::move(body), timeout, std::move(done)});
    const size_t index = calls_->size() - 1;
    *cancel = [calls = calls_, index] { (*calls)[index].cancelled = true; };
    return WasmResult::kOk;
  }

 private:
  std::vector<SentCall>* calls_;
};

std::shared_ptr<PluginSpec> spec(const std::string& code, const std::string& config,
                                 const std::string& vm_id) {
  auto s = std::make_shared<PluginSpec>();
  s->name = "callouts";
  s->vm_id = vm_id;
  s->code = code;
  s->plugin_configuration = config;
  return s;
}

HttpCallResponse response(uint32_t status, std::string body, bool trailer) {
  HttpCallResponse r;
  r.headers = std::make_unique<http::HeaderMap>();
  r.headers->add(":status", std::to_string(status));
  r.body = std::move(body);
  if (trailer) {
    r.trailers = std::make_unique<http::HeaderMap>();
    r.trailers->add("grpc-status", "0");
  }
  return r;
}

class HttpCallTest : public ::testing::Test {
 protected:
  void SetUp() override {
    code = testing::readModule("http_call_filter");
    if (code.empty()) GTEST_SKIP() << "wasm test module http_call_filter not built";
    std::string error;
    plugin = PluginVm::create(spec(code, "authz", "http-call"), &store, nullptr, &error,
                              std::make_unique<FakeSender>(&calls));
    ASSERT_TRUE(plugin) << error;
  }
  uint32_t requestHeaders(FakeStreamContext& stream, uint32_t* id) {
    *id = plugin->createStreamContext(&stream);
    return plugin->callStream(&stream, Export::kOnRequestHeaders, {*id, 1, 1}).value_or(99);
  }

  stats::Store store{1};
  std::string code;
  std::vector<SentCall> calls;
  std::unique_ptr<PluginVm> plugin;
};

TEST_F(HttpCallTest, AllowedCallResumesTheStreamWithTheAnswer) {
  FakeStreamContext stream;
  stream.request_headers.add("x-user", "alice");
  uint32_t id = 0;
  EXPECT_EQ(requestHeaders(stream, &id), 1u);  // held until the answer
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].cluster, "authz");
  EXPECT_EQ(calls[0].headers.getOr(":path"), "/auth/alice");
  EXPECT_EQ(calls[0].headers.getOr(":authority"), "auth.local");
  EXPECT_EQ(calls[0].timeout, std::chrono::milliseconds(2000));
  EXPECT_EQ(plugin->pendingCalls(), 1u);
  EXPECT_TRUE(stream.continued.empty());

  calls[0].done(response(200, "granted", true));
  EXPECT_EQ(plugin->pendingCalls(), 0u);
  EXPECT_EQ(stream.request_headers.getOr("x-auth-body"), "granted");
  EXPECT_EQ(stream.request_headers.getOr("x-auth-trailers"), "1");
  EXPECT_EQ(stream.continued, std::vector<uint32_t>{0});
  EXPECT_EQ(stream.reply_status, 0u);
  EXPECT_FALSE(plugin->failed());
}

TEST_F(HttpCallTest, DeniedAndFailedCallsAnswerLocally) {
  FakeStreamContext denied, failed;
  uint32_t a = 0, b = 0;
  requestHeaders(denied, &a);
  requestHeaders(failed, &b);
  ASSERT_EQ(calls.size(), 2u);
  calls[1].done(HttpCallResponse{});  // reset / timeout: num_headers 0
  EXPECT_EQ(failed.reply_status, 503u);
  EXPECT_EQ(plugin->statusCode(), static_cast<uint32_t>(WasmResult::kBrokenConnection));
  calls[0].done(response(401, "", false));
  EXPECT_EQ(denied.reply_status, 403u);
  EXPECT_EQ(denied.reply_details, "wasm_auth");
  EXPECT_EQ(plugin->statusCode(), 0u);
}

TEST_F(HttpCallTest, BadArgumentsAreRefused) {
  FakeStreamContext stream;
  stream.request_headers.add("x-cluster", "unknown");
  uint32_t id = 0;
  requestHeaders(stream, &id);
  EXPECT_EQ(stream.reply_status, 500u);
  EXPECT_EQ(stream.reply_body, "http_call=2");  // BadArgument

  FakeStreamContext oob;
  oob.request_headers.add("x-oob", "1");
  requestHeaders(oob, &id);
  EXPECT_EQ(oob.reply_body, "http_call=6");  // InvalidMemoryAccess, nothing read

  FakeStreamContext no_path;
  no_path.request_headers.add("x-no-path", "1");
  requestHeaders(no_path, &id);
  EXPECT_EQ(no_path.reply_body, "http_call=2");  // :path missing
  EXPECT_TRUE(calls.empty());
  EXPECT_FALSE(plugin->failed());
}

TEST_F(HttpCallTest, AnswerForADetachedStreamIsDroppedAndPendingCallsAreCancelled) {
  FakeStreamContext gone, waiting;
  uint32_t a = 0, b = 0;
  requestHeaders(gone, &a);
  requestHeaders(waiting, &b);
  plugin->detachStream(a);
  calls[0].done(response(200, "x", false));  // set_effective_context fails: nothing touches `gone`
  EXPECT_FALSE(gone.request_headers.get("x-auth-body"));
  EXPECT_FALSE(plugin->failed());
  plugin.reset();
  EXPECT_TRUE(calls[1].cancelled);
}

TEST(HttpCallWithoutSender, IsAnInternalFailure) {
  SKIFF_REQUIRE_MODULE(code, "http_call_filter");
  stats::Store store(1);
  std::string error;
  auto plugin = PluginVm::create(spec(code, "authz", "no-sender"), &store, nullptr, &error);
  ASSERT_TRUE(plugin) << error;
  FakeStreamContext stream;
  const uint32_t id = plugin->createStreamContext(&stream);
  plugin->callStream(&stream, Export::kOnRequestHeaders, {id, 1, 1});
  EXPECT_EQ(stream.reply_body, "http_call=10");
}

TEST(SharedQueues, RegisterResolveEnqueueDequeue) {
  SharedQueues& q = SharedQueues::instance();
  const uint32_t id = q.registerQueue("qvm", "a", nullptr, {}, nullptr);
  EXPECT_EQ(q.registerQueue("qvm", "a", nullptr, {}, nullptr), id);  // idempotent
  EXPECT_NE(q.registerQueue("other-vm", "a", nullptr, {}, nullptr), id);
  EXPECT_EQ(q.resolve("qvm", "a"), id);
  EXPECT_FALSE(q.resolve("qvm", "b"));
  std::string item;
  EXPECT_EQ(q.dequeue(id, &item), WasmResult::kEmpty);
  EXPECT_EQ(q.enqueue(id, "one"), WasmResult::kOk);
  EXPECT_EQ(q.enqueue(id, "two"), WasmResult::kOk);
  EXPECT_EQ(q.registerQueue("qvm", "a", nullptr, {}, nullptr), id);  // items survive re-registration
  EXPECT_EQ(q.dequeue(id, &item), WasmResult::kOk);
  EXPECT_EQ(item, "one");
  EXPECT_EQ(q.dequeue(id, &item), WasmResult::kOk);
  EXPECT_EQ(item, "two");
  EXPECT_EQ(q.dequeue(id, &item), WasmResult::kEmpty);
  EXPECT_EQ(q.enqueue(999999, "x"), WasmResult::kNotFound);
  EXPECT_EQ(q.dequeue(999999, &item), WasmResult::kNotFound);
}

template <typename F>
bool runUntil(asio::io_context& io, F done, std::chrono::milliseconds limit = std::chrono::seconds(5)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    io.restart();
    io.run_for(std::chrono::milliseconds(5));
  }
  return true;
}

TEST(QueueFilter, QueueReadyRunsOnTheOwnersLoopAndTicksCount) {
  SKIFF_REQUIRE_MODULE(code, "queue_filter");
  stats::Store store(1);
  asio::io_context io;
  std::string error;
  auto plugin = PluginVm::create(spec(code, "10", "queue-vm"), &store, &io, &error);
  ASSERT_TRUE(plugin) << error;
  EXPECT_TRUE(plugin->bound());  // owns a queue and ticks: destroyed on its loop

  // Another worker's VM of the same vm_id enqueues; the owner hears about it on its own loop.
  auto producer = PluginVm::create(spec(code, "0", "queue-vm"), &store, nullptr, &error);
  ASSERT_TRUE(producer) << error;
  FakeStreamContext stream;
  stream.request_headers.add(":path", "/first");
  const uint32_t id = producer->createStreamContext(&stream);
  ASSERT_EQ(producer->callStream(&stream, Export::kOnRequestHeaders, {id, 1, 1}), 0u);

  auto items = [&] { return store.counter("wasmcustom.wasm_test.queue_items").value(); };
  auto ticks = [&] { return store.counter("wasmcustom.wasm_test.ticks").value(); };
  ASSERT_TRUE(runUntil(io, [&] { return items() == 1 && ticks() >= 2; })) << items() << " " << ticks();
  auto last = SharedData::instance().get("queue-vm", "last_item");
  ASSERT_TRUE(last);
  EXPECT_EQ(last->first, "/first");
  EXPECT_EQ(store.counter("wasmcustom.wasm_test.requests").value(), 1u);
  EXPECT_EQ(store.gauge("wasmcustom.wasm_test.last_path_length").value(), 6);
}

class WatchdogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    saved_ = executionTimeLimit();
    setExecutionTimeLimit(std::chrono::milliseconds(100));
  }
  void TearDown() override { setExecutionTimeLimit(saved_); }
  std::chrono::milliseconds saved_;
};

TEST_F(WatchdogTest, LoopingGuestIsStoppedAndTheVmFails) {
  SKIFF_REQUIRE_MODULE(code, "loop_filter");
  stats::Store store(1);
  std::string error;
  auto plugin = PluginVm::create(spec(code, "", "loop"), &store, nullptr, &error);
  ASSERT_TRUE(plugin) << error;
  FakeStreamContext stream;
  stream.request_headers.add("x-loop", "1");
  const uint32_t id = plugin->createStreamContext(&stream);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(plugin->callStream(&stream, Export::kOnRequestHeaders, {id, 1, 1}));
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, std::chrono::milliseconds(100));
  EXPECT_LT(took, std::chrono::seconds(3));
  EXPECT_TRUE(plugin->failed());
  EXPECT_TRUE(plugin->vm().timedOut());
  EXPECT_NE(plugin->vm().error().find("execution time limit"), std::string::npos) << plugin->vm().error();
  EXPECT_TRUE(plugin->claimFailure());
  EXPECT_FALSE(plugin->claimFailure());
}

TEST_F(WatchdogTest, ShortCallsAreNeverStopped) {
  SKIFF_REQUIRE_MODULE(code, "loop_filter");
  stats::Store store(1);
  std::string error;
  auto plugin = PluginVm::create(spec(code, "", "loop"), &store, nullptr, &error);
  ASSERT_TRUE(plugin) << error;
  // Many short calls over several watchdog periods: the generation changes, nothing is terminated.
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(400);
  size_t n = 0;
  while (std::chrono::steady_clock::now() < until) {
    FakeStreamContext stream;
    const uint32_t id = plugin->createStreamContext(&stream);
    ASSERT_EQ(plugin->callStream(&stream, Export::kOnRequestHeaders, {id, 1, 1}), 0u) << plugin->vm().error();
    plugin->detachStream(id);
    ++n;
  }
  EXPECT_GT(n, 10u);
  EXPECT_FALSE(plugin->failed());
}

}  // namespace
}  // namespace skiff::wasm
