// The Lua filter driven through the real FilterManager: header API, respond(), body()/bodyChunks()/
// trailers() on both paths, errors, per-route overrides.
#include "filters/http/lua/lua_filter.h"

#include <gtest/gtest.h>

#include "lua_fixture.h"
#include "support/fake_stream.h"

#include <asio/io_context.hpp>
#include <string>
#include <vector>

#include "envoy/config/core/v3/base.pb.h"
#include "envoy/config/route/v3/route.pb.h"
#include "envoy/extensions/filters/http/lua/v3/lua.pb.h"
#include "server/http/filter_manager.h"
#include "skiff/router/route_table.h"
#include "skiff/stats/stats.h"

namespace skiff::filters::lua {
namespace {

using namespace skiff::filters::lua::test;  // NOLINT(google-build-using-namespace)

TEST_F(LuaFilterTest, HeaderMethodsEditTheRequest) {
  setUp(R"(
function envoy_on_request(h)
  local hs = h:headers()
  hs:add("X-Lua-Processed", "true")
  hs:add("x-num", 42)
  hs:replace("x-replace", "new")
  hs:remove("x-drop")
  hs:add("x-count", hs:getNumValues("x-multi"))
  hs:add("x-first", hs:getAtIndex("x-multi", 0))
  hs:add("x-second", hs:getAtIndex("x-multi", 1))
  hs:add("x-third", tostring(hs:getAtIndex("x-multi", 2)))
  hs:add("x-joined", hs:get("X-Multi"))
  hs:add("x-missing", tostring(hs:get("nope")))
  local n = 0
  for k, v in pairs(hs) do n = n + 1 end
  hs:add("x-pairs", n)
end
)");
  auto req = request();
  req->add("x-replace", "old");
  req->add("x-drop", "gone");
  req->add("x-multi", "a");
  req->add("x-multi", "b");
  const size_t before = req->size();
  fm.decodeHeaders(std::move(req), true);
  ASSERT_TRUE(upstream->got_headers);
  const HeaderMap& h = upstream->headers;
  EXPECT_EQ(h.getOr("x-lua-processed"), "true");
  EXPECT_EQ(h.getOr("x-num"), "42");
  EXPECT_EQ(h.getOr("x-replace"), "new");
  EXPECT_EQ(h.get("x-drop"), nullptr);
  EXPECT_EQ(h.getOr("x-count"), "2");
  EXPECT_EQ(h.getOr("x-first"), "a");
  EXPECT_EQ(h.getOr("x-second"), "b");
  EXPECT_EQ(h.getOr("x-third"), "nil");
  EXPECT_EQ(h.getOr("x-joined"), "a,b");
  EXPECT_EQ(h.getOr("x-missing"), "nil");
  // Entries at the time of the loop: the original ones minus x-drop plus the eight added before.
  EXPECT_EQ(h.getOr("x-pairs"), std::to_string(before - 1 + 8));
  EXPECT_TRUE(upstream->complete);
  EXPECT_GT(stream.route_clears, 0);
  EXPECT_EQ(counter("http.test.lua.executions"), 1u);
}

TEST_F(LuaFilterTest, ClearRouteCacheFalseKeepsTheRoute) {
  envoy::extensions::filters::http::lua::v3::Lua proto;
  proto.set_inline_code(R"(function envoy_on_request(h) h:headers():replace(":path", "/other") end)");
  proto.mutable_clear_route_cache()->set_value(false);
  google::protobuf::Any any;
  any.PackFrom(proto);
  factory = createLuaFilterFactory(any, FactoryContext{store, "http.test."});
  factory->createFilters(fm);
  auto up = std::make_unique<Upstream>();
  upstream = up.get();
  fm.addDecoderFilter(std::move(up));
  fm.decodeHeaders(request(), true);
  EXPECT_EQ(upstream->headers.getOr(":path"), "/other");
  EXPECT_EQ(stream.route_clears, 0);
}

TEST_F(LuaFilterTest, RespondAnswersLocallyAndSkipsTheUpstream) {
  setUp(R"(
function envoy_on_request(h)
  if string.match(h:headers():get(":path"), "^/admin") then
    h:respond({[":status"] = "403", ["x-why"] = {"one", "two"}}, "Forbidden")
    error("not reached")
  end
end
function envoy_on_response(h)
  h:headers():add("x-response-seen", "1")
end
)");
  fm.decodeHeaders(request("/admin/x"), false);
  sendBody({"ignored"});
  EXPECT_FALSE(upstream->got_headers);
  EXPECT_EQ(sink.headers.getOr(":status"), "403");
  EXPECT_EQ(sink.headers.count("x-why"), 2u);
  EXPECT_EQ(sink.headers.getOr("x-response-seen"), "1");
  EXPECT_EQ(sink.body, "Forbidden");
  EXPECT_TRUE(sink.ended);
  EXPECT_EQ(stream.info.response_code_details, "lua_response");
  EXPECT_EQ(counter("http.test.lua.errors"), 0u);
}

TEST_F(LuaFilterTest, ResponseHandleEditsHeadersAndHasNoRespond) {
  setUp(R"(
function envoy_on_response(h)
  h:headers():add("X-Response-Time", os.time())
  local req = h:downstreamRequestHeaders()
  h:headers():add("x-req-path", req:get(":path"))
  h:headers():add("x-req-readonly", tostring(not pcall(function() req:add("a", "b") end)))
  h:headers():add("x-has-respond", tostring(h.respond ~= nil))
end
)");
  fm.decodeHeaders(request(), true);
  upstream->respond({});
  EXPECT_EQ(sink.headers.getOr(":status"), "200");
  EXPECT_FALSE(sink.headers.getOr("x-response-time").empty());
  EXPECT_EQ(sink.headers.getOr("x-has-respond"), "false");
  EXPECT_EQ(sink.headers.getOr("x-req-path"), "/");
  EXPECT_EQ(sink.headers.getOr("x-req-readonly"), "true");
  EXPECT_TRUE(sink.ended);
}

TEST_F(LuaFilterTest, RuntimeErrorIsCountedAndTheStreamContinues) {
  setUp(R"(
function envoy_on_request(h)
  h:headers():add("x-before", "1")
  local t = nil
  t.field = 1
end
)");
  fm.decodeHeaders(request(), true);
  ASSERT_TRUE(upstream->got_headers);
  EXPECT_EQ(upstream->headers.getOr("x-before"), "1");
  EXPECT_EQ(counter("http.test.lua.errors"), 1u);
}

TEST_F(LuaFilterTest, StatPrefixGoesBetweenLuaAndTheStatName) {
  auto f = makeFactory(store, "function envoy_on_request(h) error('boom') end", {}, "mine");
  f->createFilters(fm);
  fm.addDecoderFilter(std::make_unique<Upstream>());
  fm.decodeHeaders(request(), true);
  EXPECT_EQ(counter("http.test.lua.mine.errors"), 1u);
}

TEST_F(LuaFilterTest, CompileErrorIsAConfigErrorNamingScriptAndLine) {
  try {
    makeFactory(store, "", {{"broken", "function envoy_on_request(h)\n  local x = = 1\nend\n"}});
    FAIL() << "expected invalid_argument";
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("broken:2:"), std::string::npos) << what;
  }
  EXPECT_THROW(makeFactory(store, "error('at load')"), std::invalid_argument);
}

TEST_F(LuaFilterTest, BodyBuffersTheWholeRequestAndCanReplaceIt) {
  setUp(R"(
function envoy_on_request(h)
  local body = h:body()
  h:headers():add("x-len", body:length())
  h:headers():add("x-slice", body:getBytes(1, 3))
  body:setBytes("replaced:" .. body:getBytes(0, body:length()))
end
)");
  fm.decodeHeaders(request(), false);
  EXPECT_FALSE(upstream->got_headers);  // held until the body is complete
  fm.decodeData(*std::make_unique<Buffer>("hel"), false);
  EXPECT_FALSE(upstream->got_headers);
  Buffer last("lo");
  fm.decodeData(last, true);
  ASSERT_TRUE(upstream->got_headers);
  EXPECT_EQ(upstream->headers.getOr("x-len"), "5");
  EXPECT_EQ(upstream->headers.getOr("x-slice"), "ell");
  EXPECT_EQ(upstream->body, "replaced:hello");
  EXPECT_TRUE(upstream->complete);
}

TEST_F(LuaFilterTest, BodyIsNilForAHeadersOnlyRequestUnlessWrapped) {
  setUp(R"(
function envoy_on_request(h)
  h:headers():add("x-body", tostring(h:body()))
  h:headers():add("x-wrapped", h:body(true):length())
  h:headers():add("x-trailers", tostring(h:trailers()))
end
)");
  fm.decodeHeaders(request(), true);
  ASSERT_TRUE(upstream->got_headers);
  EXPECT_EQ(upstream->headers.getOr("x-body"), "nil");
  EXPECT_EQ(upstream->headers.getOr("x-wrapped"), "0");
  EXPECT_EQ(upstream->headers.getOr("x-trailers"), "nil");
}

TEST_F(LuaFilterTest, BodyChunksStreamEachChunkThrough) {
  setUp(R"(
function envoy_on_request(h)
  local seen = 0
  for chunk in h:bodyChunks() do
    seen = seen + 1
    chunk:setBytes(string.upper(chunk:getBytes(0, chunk:length())))
  end
end
)");
  fm.decodeHeaders(request(), false);
  EXPECT_FALSE(upstream->got_headers);
  Buffer a("abc");
  fm.decodeData(a, false);
  ASSERT_TRUE(upstream->got_headers);  // the first chunk releases the headers
  EXPECT_EQ(upstream->chunks, (std::vector<std::string>{"ABC"}));
  Buffer b("def");
  fm.decodeData(b, true);
  EXPECT_EQ(upstream->chunks, (std::vector<std::string>{"ABC", "DEF"}));
  EXPECT_TRUE(upstream->complete);
  EXPECT_EQ(counter("http.test.lua.errors"), 0u);
}

TEST_F(LuaFilterTest, TrailersAfterBodyAreReadableAndEditable) {
  setUp(R"(
function envoy_on_request(h)
  local body = h:body()
  local t = h:trailers()
  h:headers():add("x-body", body:getBytes(0, body:length()))
  h:headers():add("x-trailer", t:get("grpc-status"))
  t:add("x-lua-trailer", "yes")
end
)");
  fm.decodeHeaders(request(), false);
  Buffer a("payload");
  fm.decodeData(a, false);
  auto t = std::make_unique<HeaderMap>();
  t->add("grpc-status", "0");
  fm.decodeTrailers(std::move(t));
  ASSERT_TRUE(upstream->got_headers);
  EXPECT_EQ(upstream->headers.getOr("x-body"), "payload");
  EXPECT_EQ(upstream->headers.getOr("x-trailer"), "0");
  EXPECT_EQ(upstream->body, "payload");
  EXPECT_EQ(upstream->trailers.getOr("x-lua-trailer"), "yes");
}

TEST_F(LuaFilterTest, TrailersWaitsForTheEndOfChunks) {
  setUp(R"(
function envoy_on_request(h)
  local n = 0
  for chunk in h:bodyChunks() do n = n + chunk:length() end
  local t = h:trailers()
  t:add("x-bytes", n)
end
)");
  fm.decodeHeaders(request(), false);
  Buffer a("12345");
  fm.decodeData(a, false);
  auto t = std::make_unique<HeaderMap>();
  t->add("x-end", "1");
  fm.decodeTrailers(std::move(t));
  EXPECT_EQ(upstream->body, "12345");
  EXPECT_EQ(upstream->trailers.getOr("x-bytes"), "5");
}

TEST_F(LuaFilterTest, ResponseBodyCanBeRewritten) {
  setUp(R"(
function envoy_on_response(h)
  local body = h:body()
  h:headers():replace("content-length", "3")
  h:headers():add("x-orig-len", body:length())
  body:setBytes("new")
end
)");
  fm.decodeHeaders(request(), true);
  upstream->respond({"good", "bye"});
  EXPECT_EQ(sink.headers.getOr("x-orig-len"), "7");
  EXPECT_EQ(sink.body, "new");
  EXPECT_TRUE(sink.ended);
}

TEST_F(LuaFilterTest, HandleKeptPastItsCoroutineRaisesAnError) {
  setUp(R"(
function envoy_on_request(h)
  saved = h:headers()
end
function envoy_on_response(h)
  local ok = pcall(function() return saved:get(":path") end)
  h:headers():add("x-stale-ok", tostring(ok))
end
)");
  fm.decodeHeaders(request(), true);
  upstream->respond({});
  EXPECT_EQ(sink.headers.getOr("x-stale-ok"), "false");
}

TEST_F(LuaFilterTest, StreamInfoAndUtilities) {
  stream.info.downstream_local_address = "127.0.0.1:10000";
  stream.info.downstream_direct_remote_address = "127.0.0.1:5555";
  stream.info.downstream_remote_address = "10.0.0.1:0";
  stream.info.route_name = "r1";
  setUp(R"(
function envoy_on_request(h)
  local si = h:streamInfo()
  local hs = h:headers()
  hs:add("x-protocol", si:protocol())
  hs:add("x-local", si:downstreamLocalAddress())
  hs:add("x-direct", si:downstreamDirectRemoteAddress())
  hs:add("x-remote", si:downstreamRemoteAddress())
  hs:add("x-sni", "[" .. si:requestedServerName() .. "]")
  hs:add("x-route", si:routeName())
  hs:add("x-b64", h:base64Escape("hello!?"))
  hs:add("x-ts", tostring(h:timestamp() > 1600000000000))
  hs:add("x-ssl", tostring(h:connection():ssl()))
  h:logInfo("hello from lua")
  h:logTrace("trace")
end
)");
  fm.decodeHeaders(request(), true);
  const HeaderMap& h = upstream->headers;
  EXPECT_EQ(h.getOr("x-protocol"), "HTTP/1.1");
  EXPECT_EQ(h.getOr("x-local"), "127.0.0.1:10000");
  EXPECT_EQ(h.getOr("x-direct"), "127.0.0.1:5555");
  EXPECT_EQ(h.getOr("x-remote"), "10.0.0.1:0");
  EXPECT_EQ(h.getOr("x-sni"), "[]");
  EXPECT_EQ(h.getOr("x-route"), "r1");
  EXPECT_EQ(h.getOr("x-b64"), "aGVsbG8hPw==");
  EXPECT_EQ(h.getOr("x-ts"), "true");
  EXPECT_EQ(h.getOr("x-ssl"), "nil");
}

TEST_F(LuaFilterTest, DynamicMetadataIsSharedByBothDirectionsOfAStream) {
  setUp(R"(
function envoy_on_request(h)
  local dm = h:streamInfo():dynamicMetadata()
  dm:set("envoy.lb", "foo", "bar")
  dm:set("envoy.lb", "n", 7)
  dm:set("other", "t", {a = 1})
  h:headers():add("x-dm", dm:get("envoy.lb")["foo"])
  h:headers():add("x-dm-missing", tostring(dm:get("absent")))
end
function envoy_on_response(h)
  local dm = h:streamInfo():dynamicMetadata()
  local names = {}
  for name, _ in pairs(dm) do names[#names + 1] = name end
  table.sort(names)
  h:headers():add("x-dm-n", dm:get("envoy.lb").n)
  h:headers():add("x-dm-t", dm:get("other").t.a)
  h:headers():add("x-dm-names", table.concat(names, ","))
end
)");
  fm.decodeHeaders(request(), true);
  EXPECT_EQ(upstream->headers.getOr("x-dm"), "bar");
  EXPECT_EQ(upstream->headers.getOr("x-dm-missing"), "nil");
  upstream->respond({});
  EXPECT_EQ(sink.headers.getOr("x-dm-n"), "7");
  EXPECT_EQ(sink.headers.getOr("x-dm-t"), "1");
  EXPECT_EQ(sink.headers.getOr("x-dm-names"), "envoy.lb,other");
  EXPECT_EQ(counter("http.test.lua.errors"), 0u);
}

TEST_F(LuaFilterTest, InstructionBudgetStopsARunawayScriptAndTheStateStaysUsable) {
  LuaStats lua_stats{store.counter("t.errors"), store.counter("t.executions"), store.counter("t.budget"),
                     store.gauge("t.memory")};
  auto config = std::make_shared<LuaConfig>(std::map<std::string, std::string>{{"", R"(
function envoy_on_request(h)
  if h:headers():get("x-spin") then
    local i = 0
    while true do i = i + 1 end
  end
  local s = 0
  for i = 1, 100 do s = s + i end
  h:headers():add("x-sum", s)
end
)"}},
                                            lua_stats, 2'000'000);
  config->createFilters(fm);
  auto up = std::make_unique<Upstream>();
  upstream = up.get();
  fm.addDecoderFilter(std::move(up));
  auto req = request();
  req->add("x-spin", "1");
  fm.decodeHeaders(std::move(req), true);
  ASSERT_TRUE(upstream->got_headers);  // the stream continues past the stopped script
  EXPECT_EQ(upstream->headers.get("x-sum"), nullptr);
  EXPECT_EQ(counter("t.budget"), 1u);
  EXPECT_EQ(counter("t.errors"), 1u);

  // The same worker interpreter serves the next stream.
  FakeStream stream2;
  FakeSink sink2;
  server::FilterManager fm2(stream2, sink2, 1 << 20);
  stream2.fm = &fm2;
  config->createFilters(fm2);
  auto up2 = std::make_unique<Upstream>();
  Upstream* upstream2 = up2.get();
  fm2.addDecoderFilter(std::move(up2));
  fm2.decodeHeaders(request(), true);
  EXPECT_EQ(upstream2->headers.getOr("x-sum"), "5050");
  EXPECT_EQ(counter("t.budget"), 1u);
  EXPECT_GT(store.gauge("t.memory").value(), 1000);
}

// Route entries carrying LuaPerRoute configs.
class PerRouteTest : public LuaFilterTest {
 protected:
  void useRoute(const envoy::extensions::filters::http::lua::v3::LuaPerRoute& per_route) {
    any_map[std::string(kFilterName)].PackFrom(per_route);
    entry.typed_per_filter_config = &any_map;
    stream.route_entry = &entry;
  }
  router::TypedPerFilterConfig any_map;
  router::RouteEntry entry;
};

constexpr const char* kDefault = R"(function envoy_on_request(h) h:headers():add("x-script", "default") end)";
constexpr const char* kOther = R"(function envoy_on_request(h) h:headers():add("x-script", "other") end)";

TEST_F(PerRouteTest, DisabledSkipsTheFilter) {
  envoy::extensions::filters::http::lua::v3::LuaPerRoute pr;
  pr.set_disabled(true);
  useRoute(pr);
  setUp(kDefault);
  fm.decodeHeaders(request(), true);
  ASSERT_TRUE(upstream->got_headers);
  EXPECT_EQ(upstream->headers.get("x-script"), nullptr);
}

TEST_F(PerRouteTest, NameSelectsANamedSourceCode) {
  envoy::extensions::filters::http::lua::v3::LuaPerRoute pr;
  pr.set_name("other");
  useRoute(pr);
  setUp(kDefault, {{"other", kOther}});
  fm.decodeHeaders(request(), true);
  EXPECT_EQ(upstream->headers.getOr("x-script"), "other");
}

TEST_F(PerRouteTest, InlineSourceCodeRunsInsteadOfTheDefault) {
  envoy::extensions::filters::http::lua::v3::LuaPerRoute pr;
  pr.mutable_source_code()->set_inline_string(
      R"(function envoy_on_request(h) h:headers():add("x-script", "inline") end)");
  useRoute(pr);
  setUp(kDefault);
  fm.decodeHeaders(request(), true);
  EXPECT_EQ(upstream->headers.getOr("x-script"), "inline");
}

TEST_F(PerRouteTest, FoundUnderAnotherFilterNameAndInsideFilterConfig) {
  envoy::extensions::filters::http::lua::v3::LuaPerRoute pr;
  pr.set_name("other");
  envoy::config::route::v3::FilterConfig wrapper;
  wrapper.mutable_config()->PackFrom(pr);
  any_map["my-lua"].PackFrom(pr);
  entry.typed_per_filter_config = &any_map;
  stream.route_entry = &entry;
  setUp(kDefault, {{"other", kOther}});
  fm.decodeHeaders(request(), true);
  EXPECT_EQ(upstream->headers.getOr("x-script"), "other");

  // A FilterConfig wrapper under the well-known name, disabled: the filter is skipped.
  wrapper.set_disabled(true);
  any_map[std::string(kFilterName)].PackFrom(wrapper);
  FakeStream stream2;
  FakeSink sink2;
  server::FilterManager fm2(stream2, sink2, 1 << 20);
  stream2.fm = &fm2;
  stream2.route_entry = &entry;
  factory->createFilters(fm2);
  auto up2 = std::make_unique<Upstream>();
  Upstream* upstream2 = up2.get();
  fm2.addDecoderFilter(std::move(up2));
  fm2.decodeHeaders(request(), true);
  ASSERT_TRUE(upstream2->got_headers);
  EXPECT_EQ(upstream2->headers.get("x-script"), nullptr);
}

TEST_F(PerRouteTest, MetadataReadsTheRouteFilterMetadata) {
  envoy::config::core::v3::Metadata md;
  auto& fields = *(*md.mutable_filter_metadata())[std::string(kFilterName)].mutable_fields();
  auto& nested = *fields["foo.bar"].mutable_struct_value()->mutable_fields();
  nested["foo"].set_string_value("bar");
  nested["baz"].set_string_value("bat");
  fields["n"].set_number_value(7);
  fields["flag"].set_bool_value(true);
  auto& list = *fields["list"].mutable_list_value();
  list.add_values()->set_string_value("x");
  list.add_values()->set_number_value(2);
  (*md.mutable_filter_metadata())["other.filter"].mutable_fields()->operator[]("hidden").set_string_value(
      "no");
  entry.metadata = &md;
  stream.route_entry = &entry;
  setUp(R"(
function envoy_on_request(h)
  local m = h:metadata()
  local hs = h:headers()
  hs:add("x-foo", m:get("foo.bar")["foo"])
  hs:add("x-baz", m:get("foo.bar").baz)
  hs:add("x-n", tostring(m:get("n")))
  hs:add("x-flag", tostring(m:get("flag")))
  hs:add("x-list", m:get("list")[1] .. tostring(m:get("list")[2]) .. #m:get("list"))
  hs:add("x-missing", tostring(m:get("hidden")))
  local keys = 0
  for k, v in pairs(m) do keys = keys + 1 end
  hs:add("x-keys", tostring(keys))
end
function envoy_on_response(h)
  h:headers():add("x-resp-foo", h:metadata():get("foo.bar").foo)
end
)");
  fm.decodeHeaders(request(), true);
  const HeaderMap& h = upstream->headers;
  EXPECT_EQ(h.getOr("x-foo"), "bar");
  EXPECT_EQ(h.getOr("x-baz"), "bat");
  EXPECT_EQ(h.getOr("x-n"), "7");
  EXPECT_EQ(h.getOr("x-flag"), "true");
  EXPECT_EQ(h.getOr("x-list"), "x22");
  EXPECT_EQ(h.getOr("x-missing"), "nil");
  EXPECT_EQ(h.getOr("x-keys"), "4");
  upstream->respond({});
  EXPECT_EQ(sink.headers.getOr("x-resp-foo"), "bar");
}

TEST_F(LuaFilterTest, MetadataIsEmptyWithoutRouteMetadata) {
  setUp(R"(
function envoy_on_request(h)
  local keys = 0
  for k, v in pairs(h:metadata()) do keys = keys + 1 end
  h:headers():add("x-md", tostring(h:metadata():get("foo")) .. keys)
end
)");
  fm.decodeHeaders(request(), true);
  EXPECT_EQ(upstream->headers.getOr("x-md"), "nil0");
}

TEST_F(PerRouteTest, NoOverrideRunsTheDefault) {
  setUp(kDefault);
  fm.decodeHeaders(request(), true);
  EXPECT_EQ(upstream->headers.getOr("x-script"), "default");
}

}  // namespace
}  // namespace skiff::filters::lua
