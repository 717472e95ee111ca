// The Lua filter and the route cache (Lua.clear_route_cache): a script's change to :path or to a header a
// route matches on makes the stream route again, an edit of any other header does not re-match; and the
// light response handle keeps Envoy's method set (no respond(), downstreamRequestHeaders()).
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "envoy/config/route/v3/route.pb.h"
#include "lua_fixture.h"
#include "support/caching_route_stream.h"

namespace skiff::filters::lua {
namespace {

using namespace skiff::filters::lua::test;  // NOLINT(google-build-using-namespace)
using skiff::testing::CachingRouteStream;

// The terminal filter, reading the route as the router does.
class RoutingUpstream : public Upstream {
 public:
  http::HeadersStatus decodeHeaders(HeaderMap& h, bool end) override {
    const router::RouteEntry* r = callbacks->route();
    route = r != nullptr ? r->name : "<none>";
    return Upstream::decodeHeaders(h, end);
  }
  std::string route;
};

constexpr const char* kRoutes = R"({"virtual_hosts":[{"name":"v","domains":["*"],"routes":[
  {"name":"moved","match":{"prefix":"/moved"},"route":{"cluster":"b"}},
  {"name":"tenant","match":{"prefix":"/","headers":[{"name":"x-tenant","string_match":{"exact":"blue"}}]},
   "route":{"cluster":"b"}},
  {"name":"default","match":{"prefix":"/"},"route":{"cluster":"a"}}]}]})";

constexpr const char* kScript = R"(
function envoy_on_request(h)
  local hs = h:headers()
  local action = hs:get("x-action")
  if action == "path" then hs:replace(":path", "/moved")
  elseif action == "tenant" then hs:add("X-Tenant", "blue")
  elseif action == "untenant" then hs:remove("x-tenant")
  elseif action == "both" then
    hs:add("x-a", "1")
    hs:replace(":path", "/moved")
    hs:add("x-b", "1")
  end
  hs:add("x-bench-lua", "1")
  hs:replace("x-other", "2")
  hs:remove("x-gone")
end
)";

class LuaRouteCacheTest : public ::testing::Test {
 protected:
  LuaRouteCacheTest() : store(2), fm(stream, sink, 1 << 20) {
    stream.fm = &fm;
    envoy::config::route::v3::RouteConfiguration config;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(kRoutes, &config).ok());
    stream.table = router::RouteTable::create(config);
  }

  void run(const std::string& action, bool clear_route_cache = true, const char* extra = nullptr) {
    envoy::extensions::filters::http::lua::v3::Lua proto;
    proto.mutable_default_source_code()->set_inline_string(kScript);
    proto.mutable_clear_route_cache()->set_value(clear_route_cache);
    google::protobuf::Any any;
    any.PackFrom(proto);
    factory = createLuaFilterFactory(any, FactoryContext{store, "http.test."});
    factory->createFilters(fm);
    auto up = std::make_unique<RoutingUpstream>();
    upstream = up.get();
    fm.addDecoderFilter(std::move(up));
    auto h = std::make_unique<HeaderMap>();
    h->add(":method", "GET");
    h->add(":path", "/start");
    h->add(":authority", "example.com");
    h->add("x-action", action);
    if (extra != nullptr) h->add(extra, "blue");
    fm.decodeHeaders(std::move(h), true);
    ASSERT_TRUE(upstream->got_headers);
    EXPECT_EQ(store.counter("http.test.lua.errors").value(), 0u);
  }

  stats::Store store;
  CachingRouteStream stream;
  FakeSink sink;
  server::FilterManager fm;
  http::FilterFactorySharedPtr factory;
  RoutingUpstream* upstream = nullptr;
};

TEST_F(LuaRouteCacheTest, EditsOfUnroutedHeadersKeepTheRouteWithoutAMatch) {
  run("none");
  EXPECT_EQ(upstream->route, "default");
  EXPECT_EQ(stream.route_matches, 1);  // the filter's lookup at decodeHeaders, reused by the router
  EXPECT_EQ(stream.route_clears, 0);
  EXPECT_EQ(upstream->headers.getOr("x-bench-lua"), "1");
}

TEST_F(LuaRouteCacheTest, APathChangeRoutesAgain) {
  run("path");
  EXPECT_EQ(upstream->route, "moved");
  EXPECT_EQ(upstream->headers.getOr(":path"), "/moved");
}

TEST_F(LuaRouteCacheTest, AMatchedHeaderAddedInAnyCaseRoutesAgain) {
  run("tenant");
  EXPECT_EQ(upstream->route, "tenant");
}

TEST_F(LuaRouteCacheTest, AMatchedHeaderRemovedRoutesAgain) {
  run("untenant", true, "x-tenant");
  EXPECT_EQ(upstream->route, "default");
}

TEST_F(LuaRouteCacheTest, UnroutedEditsAroundAPathChangeDoNotHideIt) {
  run("both");
  EXPECT_EQ(upstream->route, "moved");
}

TEST_F(LuaRouteCacheTest, ClearRouteCacheFalseNeverRoutesAgain) {
  run("path", false);
  EXPECT_EQ(upstream->route, "default");  // Envoy keeps the first route
  EXPECT_EQ(stream.route_clears, 0);
}

// The response handle is a light object too, with the response path's method set.
TEST_F(LuaFilterTest, ResponseHandleHasTheResponseMethodsOnly) {
  setUp(R"(
local kept_respond
function envoy_on_request(h)
  kept_respond = h.respond
  h:headers():add("x-req-has-respond", tostring(h.respond ~= nil))
  h:headers():add("x-req-has-drh", tostring(h.downstreamRequestHeaders ~= nil))
end
function envoy_on_response(h)
  local hs = h:headers()
  hs:add("x-resp-has-respond", tostring(h.respond ~= nil))
  hs:add("x-resp-drh", h:downstreamRequestHeaders():get(":path"))
  local ok, err = pcall(kept_respond, h, {[":status"] = "200"})
  hs:add("x-kept-respond-fails", tostring(not ok))
  hs:add("x-resp-log", tostring(pcall(h.logDebug, h, "fine")))
  hs:add("x-resp-type", type(h))
end
)");
  fm.decodeHeaders(request("/p"), true);
  ASSERT_TRUE(upstream->got_headers);
  EXPECT_EQ(upstream->headers.getOr("x-req-has-respond"), "true");
  EXPECT_EQ(upstream->headers.getOr("x-req-has-drh"), "false");
  upstream->respond({});
  EXPECT_EQ(sink.headers.getOr(":status"), "200");
  EXPECT_EQ(sink.headers.getOr("x-resp-has-respond"), "false");
  EXPECT_EQ(sink.headers.getOr("x-resp-drh"), "/p");
  EXPECT_EQ(sink.headers.getOr("x-kept-respond-fails"), "true");
  EXPECT_EQ(sink.headers.getOr("x-resp-log"), "true");
  EXPECT_EQ(sink.headers.getOr("x-resp-type"), "userdata");
  EXPECT_TRUE(stream.local_replies.empty());
  EXPECT_EQ(counter("http.test.lua.errors"), 0u);
}

// Calling respond() in envoy_on_response is a runtime error (a nil method), counted, and the response
// goes on.
TEST_F(LuaFilterTest, RespondInTheResponseScriptIsAnError) {
  setUp(R"(
function envoy_on_response(h)
  h:headers():add("x-before", "1")
  h:respond({[":status"] = "403"}, "no")
end
)");
  fm.decodeHeaders(request(), true);
  upstream->respond({"body"});
  EXPECT_EQ(sink.headers.getOr(":status"), "200");
  EXPECT_EQ(sink.headers.getOr("x-before"), "1");
  EXPECT_EQ(sink.body, "body");
  EXPECT_EQ(counter("http.test.lua.errors"), 1u);
}

}  // namespace
}  // namespace skiff::filters::lua
