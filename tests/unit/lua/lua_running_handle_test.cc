// A handle kept in a Lua global and used by another run: methods that yield (and respond(),
// downstreamRequestHeaders()) refuse it instead of suspending the wrong coroutine.
#include "lua_fixture.h"

namespace skiff::filters::lua::test {
namespace {

// One stream of the same filter (and so the same worker's Lua state) as the fixture's.
struct OtherStream {
  explicit OtherStream(const http::FilterFactorySharedPtr& factory) : fm(stream, sink, 1 << 20) {
    stream.fm = &fm;
    factory->createFilters(fm);
    auto up = std::make_unique<Upstream>();
    upstream = up.get();
    fm.addDecoderFilter(std::move(up));
  }
  FakeStream stream;
  FakeSink sink;
  server::FilterManager fm;
  Upstream* upstream = nullptr;
};

// Stream 1 keeps its handle and waits in body(); stream 2 calls the yielding methods on it. Each is a
// runtime error in stream 2 (caught by pcall here) and neither stream hangs.
TEST_F(LuaFilterTest, KeptHandleOfAnotherStreamCannotYield) {
  setUp(R"(
kept = nil
function envoy_on_request(h)
  local hs = h:headers()
  if hs:get("x-first") then
    kept = h
    local b = h:body()
    hs:add("x-body", b:getBytes(0, b:length()))
    return
  end
  local function try(f)
    local ok, err = pcall(f)
    return ok and "ok" or tostring(err)
  end
  hs:add("x-body-try", try(function() return kept:body() end))
  hs:add("x-trailers-try", try(function() return kept:trailers() end))
  hs:add("x-chunks-try", try(function() for c in kept:bodyChunks() do end end))
  hs:add("x-respond-try", try(function() kept:respond({[":status"] = "403"}, "no") end))
  hs:add("x-call-try", try(function()
    kept:httpCall("c", {[":path"] = "/", [":method"] = "GET", [":authority"] = "a"}, "", 10)
  end))
  hs:add("x-headers-ok", tostring(kept:headers():get("x-first")))
end
)");
  auto first = request();
  first->add("x-first", "1");
  fm.decodeHeaders(std::move(first), false);
  EXPECT_FALSE(upstream->got_headers);  // waiting in body()

  OtherStream second(factory);
  second.fm.decodeHeaders(request(), true);
  ASSERT_TRUE(second.upstream->got_headers);  // ran to the end: no yield with nothing to wait for
  const HeaderMap& h = second.upstream->headers;
  for (const char* name : {"x-body-try", "x-trailers-try", "x-chunks-try", "x-respond-try", "x-call-try"}) {
    EXPECT_NE(h.getOr(name).find("not the one running"), std::string_view::npos)
        << name << ": " << h.getOr(name);
  }
  EXPECT_EQ(h.getOr("x-headers-ok"), "1");   // non-yielding methods of a live handle still work
  EXPECT_TRUE(second.sink.headers.empty());  // respond() did not answer either stream

  sendBody({"abc"});  // stream 1 is still waiting in its own body() and resumes normally
  ASSERT_TRUE(upstream->got_headers);
  EXPECT_EQ(upstream->headers.getOr("x-body"), "abc");
  EXPECT_TRUE(sink.headers.empty());
  EXPECT_EQ(counter("http.test.lua.errors"), 0u);
}

// A script error (not caught) in the second stream is an ordinary runtime error: counted, stream goes on.
TEST_F(LuaFilterTest, KeptHandleOfAnotherStreamIsARuntimeError) {
  setUp(R"(
kept = nil
function envoy_on_request(h)
  if h:headers():get("x-first") then
    kept = h
    h:body()
    return
  end
  kept:body()
end
)");
  auto first = request();
  first->add("x-first", "1");
  fm.decodeHeaders(std::move(first), false);
  OtherStream second(factory);
  second.fm.decodeHeaders(request(), true);
  EXPECT_TRUE(second.upstream->got_headers);
  EXPECT_EQ(counter("http.test.lua.errors"), 1u);
  sendBody({"x"});
  EXPECT_TRUE(upstream->got_headers);
}

// downstreamRequestHeaders() taken during a response run and called on a request handle kept from the
// request run (still live: it iterates the body) is refused; the response handle itself still works.
TEST_F(LuaFilterTest, DownstreamRequestHeadersRefusesTheRequestHandle) {
  setUp(R"(
req = nil
function envoy_on_request(h)
  req = h
  for c in h:bodyChunks() do end
end
function envoy_on_response(h)
  local f = h.downstreamRequestHeaders
  local ok, err = pcall(f, req)
  h:headers():add("x-req-token", ok and "ok" or tostring(err))
  local ok2 = pcall(function() return req:downstreamRequestHeaders() end)
  h:headers():add("x-req-method", tostring(ok2))
  h:headers():add("x-own", f(h):get(":path"))
end
)");
  fm.decodeHeaders(request("/p"), false);
  Buffer part("a");
  fm.decodeData(part, false);
  ASSERT_TRUE(upstream->got_headers);  // bodyChunks() lets the headers go on; the request run stays live
  upstream->respond({});
  EXPECT_NE(sink.headers.getOr("x-req-token"), "ok");
  EXPECT_FALSE(sink.headers.getOr("x-req-token").empty());
  EXPECT_EQ(sink.headers.getOr("x-req-method"), "false");
  EXPECT_EQ(sink.headers.getOr("x-own"), "/p");
  EXPECT_EQ(counter("http.test.lua.errors"), 0u);
}

}  // namespace
}  // namespace skiff::filters::lua::test
