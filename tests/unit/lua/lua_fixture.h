// Shared fixture of the Lua filter unit tests: the filter driven through the real FilterManager, with a
// recording terminal filter upstream and a recording downstream sink.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "envoy/extensions/filters/http/lua/v3/lua.pb.h"
#include "filters/http/lua/lua_filter.h"
#include "server/http/filter_manager.h"
#include "skiff/stats/stats.h"
#include "support/fake_stream.h"

namespace skiff::filters::lua::test {

using http::Buffer;
using http::HeaderMap;

using skiff::testing::FakeStream;

// What reached the downstream connection.
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
  void writeTrailers(HeaderMap& t) override {
    trailers = t;
    ended = true;
  }
  HeaderMap headers, trailers;
  std::string body;
  bool ended = false;
};

// The terminal filter: records the request as it arrives.
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
    chunks.push_back(d);
    body += d;
    complete = end;
    return http::DataStatus::kContinue;
  }
  http::TrailersStatus decodeTrailers(HeaderMap& t) override {
    trailers = t;
    complete = true;
    return http::TrailersStatus::kContinue;
  }
  // Sends a response through the encoder filters.
  void respond(std::vector<std::string> body_chunks, std::unique_ptr<HeaderMap> trailers_out = nullptr) {
    auto h = std::make_unique<HeaderMap>();
    h->add(":status", "200");
    h->add("server-header", "yes");
    const bool headers_only = body_chunks.empty() && !trailers_out;
    callbacks->encodeHeaders(std::move(h), headers_only);
    for (size_t i = 0; i < body_chunks.size(); ++i) {
      callbacks->encodeData(body_chunks[i], i + 1 == body_chunks.size() && !trailers_out);
    }
    if (trailers_out) callbacks->encodeTrailers(std::move(trailers_out));
  }

  http::DecoderFilterCallbacks* callbacks = nullptr;
  HeaderMap headers, trailers;
  bool got_headers = false;
  bool complete = false;
  std::string body;
  std::vector<std::string> chunks;
};

class LuaFilterTest : public ::testing::Test {
 protected:
  LuaFilterTest() : store(2), fm(stream, sink, 1 << 20) { stream.fm = &fm; }

  static http::FilterFactorySharedPtr makeFactory(stats::Store& store, const std::string& code,
                                                  const std::map<std::string, std::string>& named = {},
                                                  const std::string& stat_prefix = "") {
    envoy::extensions::filters::http::lua::v3::Lua proto;
    if (!code.empty()) proto.mutable_default_source_code()->set_inline_string(code);
    for (const auto& [name, src] : named) (*proto.mutable_source_codes())[name].set_inline_string(src);
    proto.set_stat_prefix(stat_prefix);
    google::protobuf::Any any;
    any.PackFrom(proto);
    return createLuaFilterFactory(any, FactoryContext{store, "http.test."});
  }

  // The filter built from a typed_config (Envoy's or Skiff's type) under the HCM name `filter_name`.
  void setUpAny(const google::protobuf::Any& any, const std::string& filter_name = "") {
    factory = createLuaFilterFactory(any, FactoryContext{store, "http.test.", filter_name});
    factory->createFilters(fm);
    auto up = std::make_unique<Upstream>();
    upstream = up.get();
    fm.addDecoderFilter(std::move(up));
  }

  void setUp(const std::string& code, const std::map<std::string, std::string>& named = {}) {
    factory = makeFactory(store, code, named);
    factory->createFilters(fm);
    auto up = std::make_unique<Upstream>();
    upstream = up.get();
    fm.addDecoderFilter(std::move(up));
  }

  static std::unique_ptr<HeaderMap> request(std::string_view path = "/") {
    auto h = std::make_unique<HeaderMap>();
    h->add(":method", "POST");
    h->add(":path", path);
    h->add(":authority", "example.com");
    return h;
  }

  void sendBody(std::vector<std::string> chunks) {
    for (size_t i = 0; i < chunks.size(); ++i) fm.decodeData(chunks[i], i + 1 == chunks.size());
  }

  uint64_t counter(const std::string& name) { return store.counter(name).value(); }

  stats::Store store;
  FakeStream stream;
  FakeSink sink;
  server::FilterManager fm;
  http::FilterFactorySharedPtr factory;
  Upstream* upstream = nullptr;
};

}  // namespace skiff::filters::lua::test
