// Micro-benchmark: one request + response through a FilterManager with and without the Lua filter running
// bench/configs/lua/headers.lua (one header added per direction); the difference is the filter's cost.
#include <benchmark/benchmark.h>

#include <memory>
#include <string>

#include "envoy/extensions/filters/http/lua/v3/lua.pb.h"
#include "filters/http/lua/lua_filter.h"
#include "server/http/filter_manager.h"
#include "skiff/stats/stats.h"
#include "support/fake_stream.h"

namespace {

using skiff::http::Buffer;
using skiff::http::HeaderMap;

constexpr const char* kHeaderScript = R"(
function envoy_on_request(request_handle)
  request_handle:headers():add("x-bench-lua", "1")
end
function envoy_on_response(response_handle)
  response_handle:headers():add("x-bench-lua", "1")
end
)";

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

void runStreams(benchmark::State& state, const skiff::http::FilterFactory* lua) {
  for (auto _ : state) {
    skiff::testing::FakeStream stream;
    Sink sink;
    skiff::server::FilterManager fm(stream, sink, 1 << 20);
    stream.fm = &fm;
    if (lua != nullptr) lua->createFilters(fm);
    fm.addDecoderFilter(std::make_unique<Responder>());
    auto h = std::make_unique<HeaderMap>();
    h->add(":method", "GET");
    h->add(":path", "/");
    h->add(":authority", "example.com");
    fm.decodeHeaders(std::move(h), true);
  }
}

void BM_NoFilter(benchmark::State& state) {
  runStreams(state, nullptr);
}
BENCHMARK(BM_NoFilter);

void BM_LuaHeaderScript(benchmark::State& state) {
  skiff::stats::Store store(2);
  envoy::extensions::filters::http::lua::v3::Lua proto;
  proto.mutable_default_source_code()->set_inline_string(kHeaderScript);
  google::protobuf::Any any;
  any.PackFrom(proto);
  auto factory = skiff::filters::lua::createLuaFilterFactory(any, {store, "http.bench."});
  runStreams(state, factory.get());
}
BENCHMARK(BM_LuaHeaderScript);

}  // namespace

BENCHMARK_MAIN();
