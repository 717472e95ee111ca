// The request handle and header maps are light userdata sharing one metatable: each method must still
// reject the other kinds (an error, never a crash), and objects kept from an old stream must stay dead
// when their run slot is reused by later streams.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "filters/http/lua/lua_api.h"
#include "lua_fixture.h"
#include "server/http/filter_manager.h"
#include "support/fake_stream.h"

namespace skiff::filters::lua {
namespace {

using namespace skiff::filters::lua::test;  // NOLINT(google-build-using-namespace)

TEST_F(LuaFilterTest, LightObjectsRejectEachOther) {
  setUp(R"(
function envoy_on_request(h)
  local hs = h:headers()
  local function fails(f, ...) return tostring(not pcall(f, ...)) end
  hs:add("x-headers-as-handle", fails(h.headers, hs))
  hs:add("x-handle-as-headers", fails(hs.add, h, "a", "b"))
  hs:add("x-nil-self", fails(hs.get, nil, "a"))
  hs:add("x-number-self", fails(h.headers, 42))
  hs:add("x-handle-pairs", fails(pairs, h))
  hs:add("x-same-map", tostring(h:headers() == hs))
  hs:add("x-type", type(h) .. "/" .. type(hs))
end
function envoy_on_response(h)
  local hs = h:headers()
  hs:add("x-resp-headers-as-handle", tostring(not pcall(h.headers, hs)))
  hs:add("x-resp-has-respond", tostring(h.respond ~= nil))
end
)");
  fm.decodeHeaders(request(), true);
  ASSERT_TRUE(upstream->got_headers);
  const HeaderMap& h = upstream->headers;
  for (const char* name :
       {"x-headers-as-handle", "x-handle-as-headers", "x-nil-self", "x-number-self", "x-handle-pairs"}) {
    EXPECT_EQ(h.getOr(name), "true") << name;
  }
  EXPECT_EQ(h.getOr("x-same-map"), "true");
  EXPECT_EQ(h.getOr("x-type"), "userdata/userdata");
  upstream->respond({});
  EXPECT_EQ(sink.headers.getOr("x-resp-headers-as-handle"), "true");
  EXPECT_EQ(sink.headers.getOr("x-resp-has-respond"), "false");
  EXPECT_EQ(counter("http.test.lua.errors"), 0u);
}

// Kept header maps and response handles (light objects) from stream 0 stay dead for every later
// stream, although each stream reuses the same run slot.
TEST_F(LuaFilterTest, KeptObjectsStayDeadAcrossSlotReuse) {
  setUp(R"(
kept_headers, kept_response = nil, nil
function envoy_on_request(h)
  local hs = h:headers()
  if kept_headers == nil then kept_headers = hs
  else hs:add("x-stale-headers", tostring(pcall(function() return kept_headers:get(":path") end))) end
  if kept_response ~= nil then
    hs:add("x-stale-response", tostring(pcall(function() return kept_response:headers() end)))
  end
end
function envoy_on_response(h)
  if kept_response == nil then kept_response = h end
end
)");
  for (int i = 0; i < 200; ++i) {
    FakeStream st;
    FakeSink sk;
    auto m = std::make_unique<server::FilterManager>(st, sk, 1 << 20);
    st.fm = m.get();
    factory->createFilters(*m);
    auto up = std::make_unique<Upstream>();
    Upstream* u = up.get();
    m->addDecoderFilter(std::move(up));
    m->decodeHeaders(request(), true);
    ASSERT_TRUE(u->got_headers) << i;
    if (i > 0) EXPECT_EQ(u->headers.getOr("x-stale-headers"), "false") << i;
    if (i > 0) EXPECT_EQ(u->headers.getOr("x-stale-response"), "false") << i;
    u->respond({});
    ASSERT_TRUE(sk.ended) << i;
  }
}

// A slot's generation must not wrap back to that of a token kept from an old run: near the limit the slot
// is retired and runs move to a fresh one, so the kept token stays dead.
TEST_F(LuaFilterTest, KeptLightObjectStaysDeadWhenTheGenerationWouldWrap) {
  setUp(R"(
kept_headers = nil
function envoy_on_request(h)
  local hs = h:headers()
  if kept_headers == nil then kept_headers = hs
  else hs:add("x-stale-headers", tostring(pcall(function() return kept_headers:get(":path") end))) end
  hs:add("x-own-headers", tostring(hs:get(":path") ~= nil))
end
)");
  for (int i = 0; i < 8; ++i) {
    // Stream 0's token gets generation 1; then every slot is one run short of the limit, so the old
    // scheme hands generation 1 out again two runs later.
    if (i == 0) setLightGenerationsForTest(0);
    if (i == 1) setLightGenerationsForTest(lightGenerationLimitForTest() - 1);
    FakeStream st;
    FakeSink sk;
    auto m = std::make_unique<server::FilterManager>(st, sk, 1 << 20);
    st.fm = m.get();
    factory->createFilters(*m);
    auto up = std::make_unique<Upstream>();
    Upstream* u = up.get();
    m->addDecoderFilter(std::move(up));
    m->decodeHeaders(request(), true);
    ASSERT_TRUE(u->got_headers) << i;
    EXPECT_EQ(u->headers.getOr("x-own-headers"), "true") << i;
    if (i > 0) EXPECT_EQ(u->headers.getOr("x-stale-headers"), "false") << i;
    u->respond({});
    ASSERT_TRUE(sk.ended) << i;
  }
  EXPECT_EQ(counter("http.test.lua.errors"), 0u);
}

}  // namespace
}  // namespace skiff::filters::lua
