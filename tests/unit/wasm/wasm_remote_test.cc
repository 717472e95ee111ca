// Remote Wasm code (vm_config.code.remote) with a fake transport: SHA-256 check (both hashes in the error),
// the cache by hash (no refetch, joined fetches), retries with backoff, and the HTTP filter factory's
// states (pending, loaded, failed open/closed).
#include <google/protobuf/wrappers.pb.h>
#include <gtest/gtest.h>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <chrono>

#include "envoy/extensions/filters/http/wasm/v3/wasm.pb.h"
#include "filters/http/wasm/wasm_filter.h"
#include "filters/http/wasm/wasm_plugin_config.h"
#include "server/http/filter_manager.h"
#include "skiff/stats/stats.h"
#include "support/fake_stream.h"
#include "wasm/remote_code.h"
#include "wasm_test_util.h"

namespace skiff::wasm {
namespace {

// Serves `body` (or fails `failures` times first) from the loop, counting requests.
class FakeTransport : public RemoteTransport {
 public:
  struct State {
    std::string body;
    uint32_t status = 200;
    int failures = 0;  // the first N requests get no response
    int requests = 0;
    std::vector<std::string> uris;
  };
  FakeTransport(asio::io_context& io, std::shared_ptr<State> state) : io_(io), state_(std::move(state)) {}
  void get(const RemoteSource& source, std::function<void(Result)> done) override {
    ++state_->requests;
    state_->uris.push_back(source.uri);
    Result r;
    if (state_->failures > 0) {
      --state_->failures;
      r.error = "connection refused";
    } else {
      r = Result{true, state_->status, state_->body, ""};
    }
    asio::post(io_, [done, r] { done(r); });
  }

 private:
  asio::io_context& io_;
  std::shared_ptr<State> state_;
};

class RemoteCodeTest : public ::testing::Test {
 protected:
  RemoteCodeTest() : store(1) {}
  void SetUp() override {
    state = std::make_shared<FakeTransport::State>();
    io = std::make_unique<asio::io_context>();
    RemoteCodeLoader::install(*io, std::make_unique<FakeTransport>(*io, state), store);
  }
  void TearDown() override { io.reset(); }  // the loader goes with its loop
  void runUntil(const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      io->restart();
      io->run_for(std::chrono::milliseconds(5));
    }
  }
  RemoteSource source(const std::string& code) {
    RemoteSource s;
    s.uri = "http://code.example/plugin.wasm";
    s.cluster = "code";
    s.sha256 = sha256Hex(code);
    s.base_interval = std::chrono::milliseconds(1);
    s.max_interval = std::chrono::milliseconds(4);
    return s;
  }
  uint64_t counter(const std::string& name) { return store.counter("wasm." + name).value(); }

  stats::Store store;
  std::shared_ptr<FakeTransport::State> state;
  std::unique_ptr<asio::io_context> io;
};

TEST(RemoteCodeHash, Sha256HexIsLowerCaseHex) {
  EXPECT_EQ(sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_F(RemoteCodeTest, VerifiedCodeIsCachedByHashAndConcurrentLoadsShareOneFetch) {
  state->body = "module bytes";
  RemoteCodeLoader* loader = RemoteCodeLoader::instance();
  ASSERT_NE(loader, nullptr);
  std::vector<std::string> got;
  for (int i = 0; i < 2; ++i) {
    loader->load(source("module bytes"), [&](std::string code, std::string error) {
      EXPECT_EQ(error, "");
      got.push_back(code);
    });
  }
  runUntil([&] { return got.size() == 2; });
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], "module bytes");
  EXPECT_EQ(got[1], "module bytes");
  EXPECT_EQ(state->requests, 1);  // the second load joined the first fetch
  auto again = loader->cached(sha256Hex("module bytes"));
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, "module bytes");
  EXPECT_EQ(state->requests, 1);
  EXPECT_EQ(counter("remote_load_fetch_successes"), 1u);
  EXPECT_EQ(counter("remote_load_cache_hits"), 1u);
  EXPECT_EQ(counter("remote_load_cache_misses"), 1u);
  EXPECT_EQ(store.gauge("wasm.remote_load_cache_entries").value(), 1);
}

TEST_F(RemoteCodeTest, Sha256MismatchIsNotLoadedAndNamesBothHashes) {
  state->body = "evil bytes";
  std::string error = "none yet";
  RemoteCodeLoader::instance()->load(source("good bytes"), [&](std::string code, std::string e) {
    EXPECT_EQ(code, "");
    error = e;
  });
  runUntil([&] { return error != "none yet"; });
  EXPECT_NE(error.find("sha256 mismatch"), std::string::npos) << error;
  EXPECT_NE(error.find(sha256Hex("good bytes")), std::string::npos) << error;
  EXPECT_NE(error.find(sha256Hex("evil bytes")), std::string::npos) << error;
  EXPECT_EQ(state->requests, 1);  // the same bytes would come again: no retry
  EXPECT_FALSE(RemoteCodeLoader::instance()->cached(sha256Hex("good bytes")));
  EXPECT_EQ(counter("remote_load_fetch_failures"), 1u);
}

TEST_F(RemoteCodeTest, FailuresAreRetriedWithBackoffThenReported) {
  state->body = "module";
  state->failures = 2;
  auto s = source("module");
  s.num_retries = 2;
  std::string code;
  RemoteCodeLoader::instance()->load(s, [&](std::string c, std::string e) {
    EXPECT_EQ(e, "");
    code = c;
  });
  runUntil([&] { return !code.empty(); });
  EXPECT_EQ(code, "module");
  EXPECT_EQ(state->requests, 3);

  // Out of retries: the error says why and how many attempts were made.
  state->failures = 5;
  auto other = source("other");
  other.num_retries = 1;
  std::string error;
  RemoteCodeLoader::instance()->load(other, [&](std::string, std::string e) { error = e; });
  runUntil([&] { return !error.empty(); });
  EXPECT_NE(error.find("connection refused"), std::string::npos) << error;
  EXPECT_NE(error.find("after 2 attempts"), std::string::npos) << error;
  EXPECT_NE(error.find("http://code.example/plugin.wasm"), std::string::npos) << error;

  // A non-200 answer is a failure too.
  state->failures = 0;
  state->status = 404;
  auto missing = source("missing");
  missing.num_retries = 0;
  error.clear();
  RemoteCodeLoader::instance()->load(missing, [&](std::string, std::string e) { error = e; });
  runUntil([&] { return !error.empty(); });
  EXPECT_NE(error.find("HTTP status 404"), std::string::npos) << error;
}

// ---- the HTTP filter factory ----

class CollectingBuilder : public http::FilterChainBuilder {
 public:
  void addDecoderFilter(std::unique_ptr<http::StreamDecoderFilter>) override { ++filters; }
  void addEncoderFilter(std::unique_ptr<http::StreamEncoderFilter>) override { ++filters; }
  void addStreamFilter(std::unique_ptr<http::StreamFilter> f) override {
    ++filters;
    fail_closed += dynamic_cast<filters::wasm::FailClosedFilter*>(f.get()) != nullptr;
    wasm += dynamic_cast<filters::wasm::WasmFilter*>(f.get()) != nullptr;
  }
  int filters = 0, fail_closed = 0, wasm = 0;
};

http::FilterFactorySharedPtr remoteFactory(stats::Store& store, const std::string& sha256, bool fail_open,
                                           const std::string& name = "remote-plugin") {
  envoy::extensions::filters::http::wasm::v3::Wasm proto;
  auto* config = proto.mutable_config();
  config->set_name(name);
  config->set_fail_open(fail_open);
  google::protobuf::StringValue value;
  value.set_value("User-Agent");
  config->mutable_configuration()->PackFrom(value);
  auto* vm = config->mutable_vm_config();
  vm->set_vm_id("remote");
  auto* remote = vm->mutable_code()->mutable_remote();
  remote->mutable_http_uri()->set_uri("http://code.example/demo.wasm");
  remote->mutable_http_uri()->set_cluster("code");
  remote->mutable_http_uri()->mutable_timeout()->set_seconds(1);
  remote->set_sha256(sha256);
  remote->mutable_retry_policy()->mutable_num_retries()->set_value(0);
  google::protobuf::Any any;
  any.PackFrom(proto);
  return filters::wasm::createWasmFilterFactory(any, filters::FactoryContext{store, "http.test."});
}

CollectingBuilder build(const http::FilterFactory& factory) {
  CollectingBuilder b;
  factory.createFilters(b);
  return b;
}

TEST_F(RemoteCodeTest, FilterFactoryLoadsTheModuleWhenItArrivesAndReloadsHitTheCache) {
  SKIFF_REQUIRE_MODULE(code, "demo_filter");
  state->body = code;
  auto closed = remoteFactory(store, sha256Hex(code), false);
  EXPECT_EQ(build(*closed).fail_closed, 1);  // fail-closed while the code is on its way
  auto open = remoteFactory(store, sha256Hex(code), true, "open-plugin");
  EXPECT_EQ(build(*open).filters, 0);  // fail-open: bypassed meanwhile
  runUntil([&] { return build(*closed).wasm == 1 && build(*open).wasm == 1; });
  EXPECT_EQ(build(*closed).wasm, 1);
  EXPECT_EQ(build(*open).wasm, 1);
  EXPECT_EQ(state->requests, 1);

  // A reload with the same hash: loaded at once from the cache, no fetch.
  auto reloaded = remoteFactory(store, sha256Hex(code), false);
  EXPECT_EQ(build(*reloaded).wasm, 1);
  EXPECT_EQ(state->requests, 1);
  EXPECT_GE(counter("remote_load_cache_hits"), 1u);
}

TEST_F(RemoteCodeTest, FilterFactoryFollowsTheFailurePolicyWhenTheCodeNeverComes) {
  SKIFF_REQUIRE_MODULE(code, "demo_filter");
  state->body = code;
  const std::string wrong(64, 'a');
  auto closed = remoteFactory(store, wrong, false);
  auto open = remoteFactory(store, wrong, true, "open-plugin");
  runUntil([&] { return state->requests >= 1 && counter("remote_load_fetch_failures") >= 1; });
  io->restart();
  io->poll();
  EXPECT_EQ(build(*closed).fail_closed, 1);
  EXPECT_EQ(build(*open).filters, 0);

  // The fail-closed stand-in answers 503 wasm_fail_stream.
  skiff::testing::FakeStream stream;
  struct Sink : server::FilterManagerSink {
    void writeHeaders(http::HeaderMap& h, bool) override { status = std::string(h.getOr(":status")); }
    void writeData(http::Buffer&, bool) override {}
    void writeTrailers(http::HeaderMap&) override {}
    std::string status;
  } sink;
  server::FilterManager fm(stream, sink, 1 << 20);
  stream.fm = &fm;
  closed->createFilters(fm);
  auto h = std::make_unique<http::HeaderMap>();
  h->add(":method", "GET");
  h->add(":path", "/");
  h->add(":authority", "x");
  fm.decodeHeaders(std::move(h), true);
  EXPECT_EQ(sink.status, "503");
  EXPECT_EQ(stream.info.response_code_details, "wasm_fail_stream");
  fm.destroyFilters();
}

TEST(RemoteCodeConfig, BadRemoteSourcesAreConfigErrors) {
  stats::Store store(1);
  EXPECT_THROW(remoteFactory(store, "not-a-hash", true), std::invalid_argument);
  EXPECT_THROW(remoteFactory(store, std::string(63, 'a'), true), std::invalid_argument);
  try {
    remoteFactory(store, "xyz", false);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("code.remote.sha256"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace skiff::wasm
