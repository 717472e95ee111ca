// Micro-benchmark: one request + response through a FilterManager with no filter and with the documents'
// Wasm filter (tests/wasm/demo_filter.c: replaces User-Agent, adds x-proxy-wasm); the difference is the
// filter's cost per stream. Also the bare cost of one guest call (an empty proxy_on_context_create) and of
// a guest call making one host call (proxy_on_request_headers of the demo filter: random_get, replace,
// log below the level).
#include <benchmark/benchmark.h>
#include <google/protobuf/wrappers.pb.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "envoy/extensions/filters/http/wasm/v3/wasm.pb.h"
#include "filters/http/wasm/wasm_filter.h"
#include "server/http/filter_manager.h"
#include "skiff/common/logging.h"
#include "skiff/stats/stats.h"
#include "support/fake_stream.h"
#include "wasm/plugin.h"

namespace {

using skiff::http::Buffer;
using skiff::http::HeaderMap;

std::string modulePath() {
  return std::string(SKIFF_WASM_DIR) + "/demo_filter.wasm";
}

class Sink : public skiff::server::FilterManagerSink {
 public:
  void writeHeaders(HeaderMap& h, bool) override { benchmark::DoNotOptimize(h.size()); }
  void writeData(Buffer&, bool) override {}
  void writeTrailers(HeaderMap&) override {}
};

// The terminal filter: answers 200 at once.
class Responder : public skiff::http::StreamDecoderFilter {
 public:
  void setDecoderFilterCallbacks(skiff::http::DecoderFilterCallbacks& cb) override { callbacks_ = &cb; }
  skiff::http::HeadersStatus decodeHeaders(HeaderMap&, bool) override {
    auto h = std::make_unique<HeaderMap>();
    h->add(":status", "200");
    h->add("content-length", "0");
    callbacks_->encodeHeaders(std::move(h), true);
    return skiff::http::HeadersStatus::kStop;
  }

 private:
  skiff::http::DecoderFilterCallbacks* callbacks_ = nullptr;
};

// Every stream of the benchmark runs on one loop, as on a worker.
asio::io_context& loop() {
  static asio::io_context io;
  return io;
}
class Stream : public skiff::testing::FakeStream {
 public:
  asio::io_context& dispatcher() override { return loop(); }
};

void runStreams(benchmark::State& state, const skiff::http::FilterFactory* filter) {
  for (auto _ : state) {
    Stream stream;
    Sink sink;
    skiff::server::FilterManager fm(stream, sink, 1 << 20);
    stream.fm = &fm;
    if (filter != nullptr) filter->createFilters(fm);
    fm.addDecoderFilter(std::make_unique<Responder>());
    auto h = std::make_unique<HeaderMap>();
    h->add(":method", "GET");
    h->add(":path", "/");
    h->add(":authority", "example.com");
    h->add("user-agent", "wrk");
    fm.decodeHeaders(std::move(h), true);
    fm.destroyFilters();
  }
}

void BM_NoFilter(benchmark::State& state) {
  runStreams(state, nullptr);
}
BENCHMARK(BM_NoFilter);

// One filter config for the whole run (as a listener keeps it), its worker VM on loop().
const skiff::http::FilterFactory& demoFactory() {
  static skiff::stats::Store* store = new skiff::stats::Store(2);
  static skiff::http::FilterFactorySharedPtr* factory = [] {
    envoy::extensions::filters::http::wasm::v3::Wasm proto;
    auto* config = proto.mutable_config();
    config->set_name("my-wasm-filter");
    google::protobuf::StringValue value;
    value.set_value("User-Agent");
    config->mutable_configuration()->PackFrom(value);
    config->mutable_vm_config()->set_vm_id("my-vm");
    config->mutable_vm_config()->set_runtime("envoy.wasm.runtime.v8");
    config->mutable_vm_config()->mutable_code()->mutable_local()->set_filename(modulePath());
    google::protobuf::Any any;
    any.PackFrom(proto);
    return new skiff::http::FilterFactorySharedPtr(
        skiff::filters::wasm::createWasmFilterFactory(any, {*store, "http.bench."}));
  }();
  return **factory;
}

void BM_WasmDemoFilter(benchmark::State& state) {
  skiff::log::setAllLevels(spdlog::level::warn);  // the filter logs two info lines per request
  runStreams(state, &demoFactory());
}
BENCHMARK(BM_WasmDemoFilter);

std::unique_ptr<skiff::wasm::PluginVm> demoVm(skiff::stats::Store& store) {
  auto spec = std::make_shared<skiff::wasm::PluginSpec>();
  std::ifstream in(modulePath(), std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  spec->code = bytes.str();
  spec->name = "bench";
  spec->plugin_configuration = "User-Agent";
  std::string error;
  auto vm = skiff::wasm::PluginVm::create(spec, &store, nullptr, &error);
  if (!vm) std::fprintf(stderr, "cannot create the VM: %s\n", error.c_str());
  return vm;
}

// One guest call of an empty export.
void BM_GuestCallEmpty(benchmark::State& state) {
  skiff::stats::Store store(2);
  auto vm = demoVm(store);
  if (!vm) return state.SkipWithError("no VM");
  for (auto _ : state)
    benchmark::DoNotOptimize(vm->callStream(nullptr, skiff::wasm::Export::kOnContextCreate, {7, 1}));
}
BENCHMARK(BM_GuestCallEmpty);

// One guest call making three host calls (random_get, replace_header_map_value, log below the level).
class Headers : public skiff::wasm::StreamContext {
 public:
  HeaderMap* headerMap(skiff::wasm::MapType type) override {
    return type == skiff::wasm::MapType::kRequestHeaders ? &headers : nullptr;
  }
  Buffer* buffer(skiff::wasm::BufferType) override { return nullptr; }
  void sendLocalResponse(uint32_t, std::string_view, std::string_view,
                         std::vector<std::pair<std::string, std::string>>) override {}
  skiff::wasm::WasmResult continueStream(skiff::wasm::StreamType) override { return {}; }
  skiff::wasm::WasmResult closeStream(skiff::wasm::StreamType) override { return {}; }
  std::optional<std::string> property(const std::vector<std::string_view>&) override { return std::nullopt; }
  skiff::wasm::WasmResult setProperty(std::string_view, std::string_view) override { return {}; }
  HeaderMap headers;
};

void BM_GuestCallThreeHostCalls(benchmark::State& state) {
  skiff::log::setAllLevels(spdlog::level::warn);
  skiff::stats::Store store(2);
  auto vm = demoVm(store);
  if (!vm) return state.SkipWithError("no VM");
  Headers stream;
  stream.headers.add("user-agent", "wrk");
  for (auto _ : state) {
    benchmark::DoNotOptimize(vm->callStream(&stream, skiff::wasm::Export::kOnRequestHeaders, {7, 1, 1}));
  }
}
BENCHMARK(BM_GuestCallThreeHostCalls);

}  // namespace

// SKIFF_WASM_MICRO_STREAMS=N: runs N streams through the Wasm filter (N through none with
// SKIFF_WASM_MICRO_NONE=1) and exits, for instruction counts under valgrind --tool=callgrind (the
// difference between two N is the per-stream cost, free of the machine's noise).
// SKIFF_WASM_MICRO_CALLS=N: N empty guest calls (proxy_on_context_create) and N calls of the demo's
// proxy_on_request_headers (3 host calls), for instructions per guest call and per host call.
int main(int argc, char** argv) {
  if (const char* n = std::getenv("SKIFF_WASM_MICRO_CALLS")) {
    skiff::log::setAllLevels(spdlog::level::warn);
    skiff::stats::Store store(2);
    auto vm = demoVm(store);
    if (!vm) return 1;
    Headers stream;
    stream.headers.add("user-agent", "wrk");
    const bool empty = std::getenv("SKIFF_WASM_MICRO_HOST") == nullptr;
    for (long i = std::atol(n); i > 0; --i) {
      if (empty) {
        vm->callStream(nullptr, skiff::wasm::Export::kOnContextCreate, {7, 1});
      } else {
        vm->callStream(&stream, skiff::wasm::Export::kOnRequestHeaders, {7, 1, 1});
      }
    }
    return 0;
  }
  if (const char* n = std::getenv("SKIFF_WASM_MICRO_STREAMS")) {
    skiff::log::setAllLevels(spdlog::level::warn);
    const bool none = std::getenv("SKIFF_WASM_MICRO_NONE") != nullptr;
    const auto* filter = none ? nullptr : &demoFactory();
    for (long i = std::atol(n); i > 0; --i) {
      Stream stream;
      Sink sink;
      skiff::server::FilterManager fm(stream, sink, 1 << 20);
      stream.fm = &fm;
      if (filter != nullptr) filter->createFilters(fm);
      fm.addDecoderFilter(std::make_unique<Responder>());
      auto h = std::make_unique<HeaderMap>();
      h->add(":method", "GET");
      h->add(":path", "/");
      h->add(":authority", "example.com");
      h->add("user-agent", "wrk");
      fm.decodeHeaders(std::move(h), true);
      fm.destroyFilters();
    }
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
