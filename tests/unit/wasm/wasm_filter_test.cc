// The Wasm HTTP filter through the real FilterManager: the documents' filter, local responses, body
// buffering, failure policies (trap fail-closed/open, VM replaced), and config errors.
#include "filters/http/wasm/wasm_filter.h"

#include <google/protobuf/wrappers.pb.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <set>

#include "envoy/extensions/filters/http/wasm/v3/wasm.pb.h"
#include "server/http/filter_manager.h"
#include "skiff/common/logging.h"
#include "skiff/stats/stats.h"
#include "support/fake_stream.h"
#include "wasm/shared_data.h"
#include "wasm_test_util.h"

namespace skiff::filters::wasm {
namespace {

using http::Buffer;
using http::HeaderMap;

class FakeSink : public server::FilterManagerSink {
 public:
  void writeHeaders(HeaderMap& h, bool end) override {
    headers = h;
    ended |= end;
  }
  void writeData(Buffer& d, bool end) override {
    body += d;
    ended |= end;
  }
  void writeTrailers(HeaderMap&) override { ended = true; }
  HeaderMap headers;
  std::string body;
  bool ended = false;
};

class Upstream : public http::StreamDecoderFilter {
 public:
  void setDecoderFilterCallbacks(http::DecoderFilterCallbacks& cb) override { callbacks = &cb; }
  http::HeadersStatus decodeHeaders(HeaderMap& h, bool end) override {
    headers = h;
    got_headers = true;
    complete = end;
    return http::HeadersStatus::kContinue;
  }
  http::DataStatus decodeData(Buffer& d, bool end) override {
    body += d;
    complete = end;
    return http::DataStatus::kContinue;
  }
  void respond(uint32_t status = 200, std::vector<std::pair<std::string, std::string>> extra = {}) {
    auto h = std::make_unique<HeaderMap>();
    h->add(":status", std::to_string(status));
    for (auto& [k, v] : extra) h->add(k, v);
    callbacks->encodeHeaders(std::move(h), true);
  }
  http::DecoderFilterCallbacks* callbacks = nullptr;
  HeaderMap headers;
  bool got_headers = false, complete = false;
  std::string body;
};

// One request through [wasm filter, upstream].
struct Exchange {
  explicit Exchange(const http::FilterFactory& factory) : fm(stream, sink, 1 << 20) {
    stream.fm = &fm;
    factory.createFilters(fm);
    auto up = std::make_unique<Upstream>();
    upstream = up.get();
    fm.addDecoderFilter(std::move(up));
  }
  ~Exchange() { fm.destroyFilters(); }
  void send(std::vector<std::pair<std::string, std::string>> extra = {}, bool end = true) {
    auto h = std::make_unique<HeaderMap>();
    h->add(":method", "GET");
    h->add(":path", "/");
    h->add(":authority", "example.com");
    h->add("user-agent", "curl/8");
    for (auto& [k, v] : extra) h->add(k, v);
    fm.decodeHeaders(std::move(h), end);
  }
  skiff::testing::FakeStream stream;
  FakeSink sink;
  server::FilterManager fm;
  Upstream* upstream = nullptr;
};

class WasmFilterTest : public ::testing::Test {
 protected:
  WasmFilterTest() : store(2) {}

  http::FilterFactorySharedPtr factory(const std::string& module, const std::string& configuration,
                                       bool fail_open = false,
                                       const std::string& runtime = "envoy.wasm.runtime.v8",
                                       const std::string& filename = "") {
    envoy::extensions::filters::http::wasm::v3::Wasm proto;
    auto* config = proto.mutable_config();
    config->set_name("my-plugin");
    config->set_fail_open(fail_open);
    google::protobuf::StringValue value;
    value.set_value(configuration);
    config->mutable_configuration()->PackFrom(value);
    auto* vm = config->mutable_vm_config();
    vm->set_vm_id("my-vm");
    vm->set_runtime(runtime);
    vm->mutable_code()->mutable_local()->set_filename(
        filename.empty() ? skiff::wasm::testing::modulePath(module) : filename);
    google::protobuf::Any any;
    any.PackFrom(proto);
    return createWasmFilterFactory(any, FactoryContext{store, "http.test."});
  }

  stats::Store store;
};

TEST_F(WasmFilterTest, DocumentsFilterReplacesTheConfiguredHeader) {
  SKIFF_REQUIRE_MODULE(code, "demo_filter");
  auto f = factory("demo_filter", "User-Agent");
  Exchange ex(*f);
  ex.send();
  ASSERT_TRUE(ex.upstream->got_headers);
  const std::string ua(ex.upstream->headers.getOr("user-agent"));
  EXPECT_TRUE(ua == "hello" || ua == "world") << ua;
  EXPECT_EQ(ex.upstream->headers.count("user-agent"), 1u);
  ex.upstream->respond();
  EXPECT_EQ(ex.sink.headers.getOr("x-proxy-wasm"), "my-wasm-filter");
  EXPECT_TRUE(ex.sink.ended);
  // Time inside the plugin, per phase.
  auto samples = [&](const std::string& name) -> uint64_t {
    for (const auto& st : store.snapshot([&](std::string_view n) { return n == name; })) {
      return st.histogram.sample_count;
    }
    return 0;
  };
  EXPECT_EQ(samples("http.test.wasm.my-plugin.request_headers_us"), 1u);
  EXPECT_EQ(samples("http.test.wasm.my-plugin.response_headers_us"), 1u);
}

TEST_F(WasmFilterTest, BothValuesShowUp) {
  SKIFF_REQUIRE_MODULE(code, "demo_filter");
  auto f = factory("demo_filter", "User-Agent");
  std::set<std::string> seen;
  for (int i = 0; i < 64 && seen.size() < 2; ++i) {
    Exchange ex(*f);
    ex.send();
    seen.insert(std::string(ex.upstream->headers.getOr("user-agent")));
  }
  EXPECT_EQ(seen, (std::set<std::string>{"hello", "world"}));
}

// A config replaced by a listener update is often released on some worker's thread; the VM it started on a
// worker (shared there, so bound to that loop) is handed to that loop to be destroyed, not freed in place.
TEST_F(WasmFilterTest, ReleasedConfigHandsItsWorkerVmToTheWorkersLoop) {
  SKIFF_REQUIRE_MODULE(code, "demo_filter");
  auto f = factory("demo_filter", "User-Agent");
  skiff::testing::FakeStream worker;  // its loop stands for the worker's
  std::weak_ptr<skiff::wasm::PluginVm> vm = dynamic_cast<const WasmFilterConfig&>(*f).workerVm(worker);
  ASSERT_FALSE(vm.expired());
  ASSERT_TRUE(vm.lock()->bound());
  f.reset();
  EXPECT_FALSE(vm.expired()) << "the VM must wait for its own loop";
  worker.io.run();
  EXPECT_TRUE(vm.expired()) << "its loop ran the release";
}

// Two configs of the same vm_id stand for two workers' VMs: a 4xx for "hello" on one makes the other skip it.
TEST_F(WasmFilterTest, StatefulVariantEvictsAcrossVms) {
  SKIFF_REQUIRE_MODULE(code, "stateful_filter");
  skiff::wasm::SharedData::instance().clearForTest();
  auto worker1 = factory("stateful_filter", "User-Agent");
  auto worker2 = factory("stateful_filter", "User-Agent");
  bool evicted = false;
  for (int i = 0; i < 64 && !evicted; ++i) {
    Exchange ex(*worker1);
    ex.send();
    ASSERT_TRUE(ex.upstream->got_headers);
    const bool hello = ex.upstream->headers.getOr("user-agent") == "hello";
    ex.upstream->respond(hello ? 404 : 200);
    EXPECT_EQ(ex.sink.headers.getOr("x-proxy-wasm"), "my-wasm-filter");
    evicted = hello;
  }
  ASSERT_TRUE(evicted);
  for (int i = 0; i < 20; ++i) {
    Exchange ex(i % 2 ? *worker1 : *worker2);
    ex.send();
    EXPECT_EQ(ex.upstream->headers.getOr("user-agent"), "world");
    ex.upstream->respond(200);
  }
  EXPECT_EQ(store.counter("wasmcustom.wasm_demo_evictions").value(), 1u);
}

TEST_F(WasmFilterTest, LocalResponseStopsTheRequest) {
  SKIFF_REQUIRE_MODULE(code, "exerciser");
  auto f = factory("exerciser", "");
  Exchange ex(*f);
  ex.send({{"x-action", "local"}});
  EXPECT_FALSE(ex.upstream->got_headers);
  EXPECT_EQ(ex.stream.local_replies, std::vector<uint32_t>{403});
  EXPECT_EQ(ex.sink.headers.getOr(":status"), "403");
  EXPECT_EQ(ex.sink.headers.getOr("x-local"), "1");
  EXPECT_EQ(ex.sink.body, "denied");
  EXPECT_EQ(ex.stream.info.response_code_details, "denied_by_wasm");
}

TEST_F(WasmFilterTest, HeadersAndResponsePropertyReachThePlugin) {
  SKIFF_REQUIRE_MODULE(code, "exerciser");
  auto f = factory("exerciser", "");
  Exchange ex(*f);
  ex.send();
  ASSERT_TRUE(ex.upstream->got_headers);
  EXPECT_EQ(ex.upstream->headers.getOr("x-exerciser"), "4");  // entry count of the request headers
  ex.upstream->respond(201);
  EXPECT_EQ(ex.sink.headers.getOr("x-response-code"), "201");
}

TEST_F(WasmFilterTest, BufferedBodyIsRewrittenAtItsEnd) {
  SKIFF_REQUIRE_MODULE(code, "exerciser");
  auto f = factory("exerciser", "");
  Exchange ex(*f);
  ex.send({{"x-action", "body"}}, false);
  Buffer a("ab"), b("cd");
  ex.fm.decodeData(a, false);
  EXPECT_EQ(ex.upstream->body, "");
  ex.fm.decodeData(b, true);
  EXPECT_EQ(ex.upstream->body, "wasm:abcd");
  EXPECT_TRUE(ex.upstream->complete);
}

TEST_F(WasmFilterTest, StopIterationHoldsTheRequest) {
  SKIFF_REQUIRE_MODULE(code, "exerciser");
  auto f = factory("exerciser", "");
  Exchange ex(*f);
  ex.send({{"x-action", "stop"}});
  EXPECT_FALSE(ex.upstream->got_headers);
  EXPECT_TRUE(ex.stream.local_replies.empty());
}

TEST_F(WasmFilterTest, CloseStreamResetsIt) {
  SKIFF_REQUIRE_MODULE(code, "exerciser");
  auto f = factory("exerciser", "");
  Exchange ex(*f);
  ex.send({{"x-action", "close"}});
  EXPECT_EQ(ex.stream.resets, 1);
  EXPECT_FALSE(ex.upstream->got_headers);
}

TEST_F(WasmFilterTest, TrapFailClosedAnswers503AndTheVmIsReplaced) {
  SKIFF_REQUIRE_MODULE(code, "trap_filter");
  auto f = factory("trap_filter", "");
  {
    Exchange ex(*f);
    ex.send({{"x-trap", "1"}});
    EXPECT_FALSE(ex.upstream->got_headers);
    EXPECT_EQ(ex.sink.headers.getOr(":status"), "503");
    EXPECT_EQ(ex.stream.info.response_code_details, "wasm_fail_stream");
  }
  Exchange next(*f);
  next.send();
  ASSERT_TRUE(next.upstream->got_headers);
  next.upstream->respond();
  EXPECT_EQ(next.sink.headers.getOr("x-trap-module"), "ok");  // a fresh VM runs the plugin again
}

TEST_F(WasmFilterTest, TrapOnTheResponsePathFailClosedResetsTheStream) {
  SKIFF_REQUIRE_MODULE(code, "trap_filter");
  auto f = factory("trap_filter", "");
  Exchange ex(*f);
  ex.send();
  ASSERT_TRUE(ex.upstream->got_headers);
  ex.upstream->respond(200, {{"x-trap", "1"}});
  EXPECT_EQ(ex.stream.resets, 1);
  EXPECT_EQ(ex.stream.info.response_code_details, "wasm_fail_stream");
  EXPECT_TRUE(ex.stream.local_replies.empty());
}

TEST_F(WasmFilterTest, TrapFailOpenLetsTheRequestThrough) {
  SKIFF_REQUIRE_MODULE(code, "trap_filter");
  auto f = factory("trap_filter", "", /*fail_open=*/true);
  Exchange ex(*f);
  ex.send({{"x-trap", "1"}});
  ASSERT_TRUE(ex.upstream->got_headers);
  ex.upstream->respond();
  EXPECT_EQ(ex.sink.headers.getOr(":status"), "200");
  EXPECT_EQ(ex.sink.headers.count("x-trap-module"), 0u);  // bypassed for the rest of the stream
}

TEST_F(WasmFilterTest, ConfigErrorsNameTheField) {
  SKIFF_REQUIRE_MODULE(code, "demo_filter");
  auto expectError = [&](auto&& make, const std::string& needle) {
    try {
      make();
      ADD_FAILURE() << "expected invalid_argument containing " << needle;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expectError([&] { factory("demo_filter", "", false, "envoy.wasm.runtime.wamr"); },
              "config.vm_config.runtime");
  expectError([&] { factory("demo_filter", "", false, "envoy.wasm.runtime.null"); },
              "envoy.wasm.runtime.null");
  expectError([&] { factory("", "", false, "envoy.wasm.runtime.v8", "/nonexistent/x.wasm"); },
              "config.vm_config.code.local");
  expectError([&] { factory("trap_filter", "reject-configure"); }, "proxy_on_configure returned false");
  // An empty runtime means the default (V8).
  EXPECT_TRUE(factory("demo_filter", "User-Agent", false, ""));
}

TEST_F(WasmFilterTest, LoadFailureFailOpenBypassesTheFilter) {
  auto f = factory("", "", /*fail_open=*/true, "envoy.wasm.runtime.v8", "/nonexistent/x.wasm");
  Exchange ex(*f);
  ex.send();
  ASSERT_TRUE(ex.upstream->got_headers);
  EXPECT_EQ(ex.upstream->headers.getOr("user-agent"), "curl/8");
}

// Not a test: the plugin's cost per request in-process (run with --gtest_also_run_disabled_tests).
TEST_F(WasmFilterTest, DISABLED_PerRequestCost) {
  SKIFF_REQUIRE_MODULE(code, "demo_filter");
  log::get(log::Component::kWasm).set_level(spdlog::level::warn);
  struct Nothing : http::FilterFactory {
    void createFilters(http::FilterChainBuilder&) const override {}
  } nothing;
  auto wasm = factory("demo_filter", "User-Agent");
  auto measure = [](const http::FilterFactory& f) {
    constexpr int kRequests = 20000;
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kRequests; ++i) {
      Exchange ex(f);
      ex.send();
      ex.upstream->respond();
    }
    return std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count() /
           kRequests;
  };
  measure(*wasm);  // warm-up (VM start, tier-up)
  const double base = measure(nothing), with = measure(*wasm);
  std::printf("per request: no filter %.0f ns, demo wasm filter %.0f ns (+%.0f ns)\n", base, with,
              with - base);
}

}  // namespace
}  // namespace skiff::filters::wasm
