// The Wasm network filter with fake connection callbacks: buffers 2/3 readable and replaceable (growing),
// hold (kStop), proxy_close_stream, the close callbacks, traps under both failure policies, properties,
// config errors, Istio's null-VM network plugins left to the old skip, and a paused new connection or data
// resumed by proxy_continue_stream from a root callback (continueReading on the connection).
#include <google/protobuf/wrappers.pb.h>
#include <gtest/gtest.h>

#include <asio/io_context.hpp>
#include <chrono>

#include "envoy/extensions/filters/network/wasm/v3/wasm.pb.h"
#include "filters/network/wasm/network_wasm.h"
#include "skiff/stats/stats.h"
#include "wasm_test_util.h"

namespace skiff::filters::network::wasm {
namespace {

class FakeCallbacks : public FilterCallbacks {
 public:
  asio::io_context& dispatcher() override { return io; }
  const http::StreamInfo& streamInfo() const override { return info; }
  void closeConnection(std::string_view details) override { closed.emplace_back(details); }
  void continueReading(Filter& filter) override { continued.push_back(&filter); }
  asio::io_context io;
  http::StreamInfo info;
  std::vector<std::string> closed;
  std::vector<Filter*> continued;
};

FilterFactorySharedPtr factory(stats::Store& store, bool fail_open, const std::string& runtime = "",
                               const std::string& vm_id = "net", const std::string& module = "tcp_filter",
                               const std::string& configuration = "") {
  envoy::extensions::filters::network::wasm::v3::Wasm proto;
  auto* config = proto.mutable_config();
  config->set_name("tcp-plugin");
  config->set_fail_open(fail_open);
  if (!configuration.empty()) {
    google::protobuf::StringValue value;
    value.set_value(configuration);
    config->mutable_configuration()->PackFrom(value);
  }
  auto* vm = config->mutable_vm_config();
  vm->set_vm_id(vm_id);
  vm->set_runtime(runtime.empty() ? "envoy.wasm.runtime.v8" : runtime);
  vm->mutable_code()->mutable_local()->set_filename(skiff::wasm::testing::modulePath(module));
  google::protobuf::Any any;
  any.PackFrom(proto);
  registerNetworkWasmFilter();
  const FilterRegistration* reg = findNetworkFilter(kTypeUrl, "");
  EXPECT_NE(reg, nullptr);
  return reg->create(any, store, "filters[0]");
}

TEST(WasmNetworkFilter, RewritesHoldsClosesAndCounts) {
  SKIFF_REQUIRE_MODULE(code, "tcp_filter");
  stats::Store store(1);
  auto f = factory(store, false);
  ASSERT_TRUE(f);
  FakeCallbacks cb;
  cb.info.downstream_remote_address = "10.0.0.7:5555";
  cb.info.connection_id = 42;
  {
    auto filter = f->createFilter();
    ASSERT_TRUE(filter);
    filter->setCallbacks(cb);
    EXPECT_EQ(filter->onNewConnection(), FilterStatus::kContinue);
    std::string data = "abc xyz!";
    EXPECT_EQ(filter->onDownstreamData(data, false), FilterStatus::kContinue);
    EXPECT_EQ(data, "ABC xxYZ!");  // grown
    std::string up = "hi!";
    EXPECT_EQ(filter->onUpstreamData(up, false), FilterStatus::kContinue);
    EXPECT_EQ(up, "hi?");
    std::string held = "hold on";
    EXPECT_EQ(filter->onDownstreamData(held, false), FilterStatus::kStop);
    EXPECT_EQ(held, "hold on");  // untouched while held
    auto* ctx = dynamic_cast<NetworkWasmFilter*>(filter.get());
    ASSERT_NE(ctx, nullptr);
    auto port = ctx->property({"source", "port"});
    ASSERT_TRUE(port);
    int64_t p = 0;
    std::memcpy(&p, port->data(), 8);
    EXPECT_EQ(p, 5555);
    std::string closing = "close now";
    EXPECT_EQ(filter->onDownstreamData(closing, false), FilterStatus::kStop);
    EXPECT_EQ(cb.closed, std::vector<std::string>{"wasm_downstream_close"});
    filter->onClose("wasm_downstream_close");
  }
  EXPECT_EQ(store.counter("wasmcustom.tcp_connections").value(), 1u);
  EXPECT_EQ(store.counter("wasmcustom.tcp_downstream_bytes").value(), 8u);
  EXPECT_EQ(store.counter("wasmcustom.tcp_upstream_bytes").value(), 3u);
  EXPECT_EQ(store.counter("wasmcustom.tcp_downstream_closes").value(), 1u);
  EXPECT_EQ(store.counter("wasmcustom.tcp_upstream_closes").value(), 1u);
}

// A config released off a worker's thread (a listener update) hands the worker's VM to that worker's loop.
TEST(WasmNetworkFilter, ReleasedConfigHandsItsWorkerVmToTheWorkersLoop) {
  SKIFF_REQUIRE_MODULE(code, "tcp_filter");
  stats::Store store(1);
  auto f = factory(store, false);
  ASSERT_TRUE(f);
  FakeCallbacks worker;
  {
    auto filter = f->createFilter();
    ASSERT_TRUE(filter);
    filter->setCallbacks(worker);
    EXPECT_EQ(filter->onNewConnection(), FilterStatus::kContinue);
    filter->onClose("done");
  }
  worker.io.run();
  worker.io.restart();
  f.reset();
  EXPECT_EQ(worker.io.run(), 1u) << "the VM's release runs on its own loop";
}

TEST(WasmNetworkFilter, TrapClosesWhenFailClosedAndPassesWhenFailOpen) {
  SKIFF_REQUIRE_MODULE(code, "tcp_filter");
  stats::Store store(1);
  for (bool fail_open : {false, true}) {
    auto f = factory(store, fail_open, "", fail_open ? "net-open" : "net-closed");
    FakeCallbacks cb;
    auto filter = f->createFilter();
    filter->setCallbacks(cb);
    filter->onNewConnection();
    std::string data = "a trap";
    const FilterStatus status = filter->onDownstreamData(data, false);
    std::string after = "more";
    if (fail_open) {
      EXPECT_EQ(status, FilterStatus::kContinue);
      EXPECT_TRUE(cb.closed.empty());
      EXPECT_EQ(filter->onDownstreamData(after, false), FilterStatus::kContinue);
      EXPECT_EQ(after, "more");  // bypassed from then on
    } else {
      EXPECT_EQ(status, FilterStatus::kStop);
      EXPECT_EQ(cb.closed, std::vector<std::string>{"wasm_fail_stream"});
    }
    filter->onClose("");
    // The next connection gets a fresh VM.
    auto next = f->createFilter();
    FakeCallbacks cb2;
    next->setCallbacks(cb2);
    EXPECT_EQ(next->onNewConnection(), FilterStatus::kContinue);
    std::string again = "again";
    EXPECT_EQ(next->onDownstreamData(again, false), FilterStatus::kContinue);
    EXPECT_EQ(again, "AGAIN");
    next->onClose("");
  }
}

TEST(WasmNetworkFilter, ConfigErrorsAndNullVmSkip) {
  stats::Store store(1);
  // Istio's null-VM network plugins are not run here: no factory (the chain skips them as before).
  EXPECT_EQ(factory(store, false, "envoy.wasm.runtime.null"), nullptr);
  EXPECT_THROW(factory(store, false, "envoy.wasm.runtime.wamr"), std::invalid_argument);
  google::protobuf::Any wrong;
  wrong.PackFrom(google::protobuf::StringValue());
  registerNetworkWasmFilter();
  EXPECT_THROW(findNetworkFilter(kTypeUrl, "")->create(wrong, store, "filters[0]"), std::invalid_argument);
}

// Runs the worker loop until the filter asked the connection to continue (or a deadline passes).
bool waitContinued(FakeCallbacks& cb, size_t count) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (cb.continued.size() < count && std::chrono::steady_clock::now() < deadline) {
    cb.io.restart();
    cb.io.run_for(std::chrono::milliseconds(10));
  }
  return cb.continued.size() >= count;
}

TEST(WasmNetworkFilter, PausedConnectionHeldUntilContinuedFromARootCallback) {
  SKIFF_REQUIRE_MODULE(code, "tcp_callout_filter");
  stats::Store store(1);
  auto f = factory(store, false, "", "net-tick", "tcp_callout_filter", "tick");
  ASSERT_TRUE(f);
  FakeCallbacks cb;
  auto filter = f->createFilter();
  ASSERT_TRUE(filter);
  filter->setCallbacks(cb);
  // Pause from proxy_on_new_connection holds the chain (and so tcp_proxy's upstream connect).
  EXPECT_EQ(filter->onNewConnection(), FilterStatus::kStop);
  std::string early = "early";
  EXPECT_EQ(filter->onDownstreamData(early, false), FilterStatus::kStop);  // still waiting
  EXPECT_TRUE(cb.continued.empty());
  // The tick continues it: the connection is told at once, without another read.
  ASSERT_TRUE(waitContinued(cb, 1));
  EXPECT_EQ(cb.continued[0], filter.get());
  std::string plain = "plain bytes";
  EXPECT_EQ(filter->onDownstreamData(plain, false), FilterStatus::kContinue);
  // A pause on data is continued the same way.
  std::string waiting = "wait for it";
  EXPECT_EQ(filter->onDownstreamData(waiting, true), FilterStatus::kStop);
  ASSERT_TRUE(waitContinued(cb, 2));
  EXPECT_TRUE(cb.closed.empty());
  filter->onClose("");
  EXPECT_EQ(store.counter("wasmcustom.callout_allowed").value(), 2u);
}

TEST(WasmNetworkFilter, CalloutWithoutWorkerClustersIsRefused) {
  SKIFF_REQUIRE_MODULE(code, "tcp_callout_filter");
  stats::Store store(1);
  // No cluster manager on these callbacks: no sender, so proxy_http_call fails and the plugin closes.
  auto f = factory(store, false, "", "net-http", "tcp_callout_filter", "http auth");
  ASSERT_TRUE(f);
  FakeCallbacks cb;
  auto filter = f->createFilter();
  filter->setCallbacks(cb);
  EXPECT_EQ(filter->onNewConnection(), FilterStatus::kStop);
  EXPECT_EQ(cb.closed, std::vector<std::string>{"wasm_downstream_close"});
  filter->onClose("wasm_downstream_close");
  EXPECT_EQ(store.counter("wasmcustom.callout_refused").value(), 1u);
}

}  // namespace
}  // namespace skiff::filters::network::wasm
