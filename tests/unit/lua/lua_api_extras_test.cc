// The Lua filter's crypto helpers (importPublicKey / verifySignature), connection():ssl(), route metadata
// under the filter's configured name, Skiff's fail-closed type, and coroutine reuse across streams.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <memory>
#include <string>
#include <vector>

#include "envoy/config/core/v3/base.pb.h"
#include "lua_fixture.h"
#include "skiff/extensions/filters/http/lua/v1/lua.pb.h"
#include "skiff/router/route_table.h"

namespace skiff::filters::lua::test {
namespace {

using SkiffLua = skiff::extensions::filters::http::lua::v1::Lua;

std::string hex(const std::string& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

// A fresh key pair made with OpenSSL; signs and exports the public half as DER (SubjectPublicKeyInfo).
class KeyPair {
 public:
  explicit KeyPair(bool rsa)
      : key_(rsa ? EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048})
                 : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")) {}
  ~KeyPair() { EVP_PKEY_free(key_); }
  std::string publicDer() const {
    unsigned char* out = nullptr;
    const int n = i2d_PUBKEY(key_, &out);
    std::string der(reinterpret_cast<char*>(out), n);
    OPENSSL_free(out);
    return der;
  }
  std::string sign(const char* hash, const std::string& data) const {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    EXPECT_EQ(EVP_DigestSignInit(ctx, nullptr, EVP_get_digestbyname(hash), nullptr, key_), 1);
    size_t n = 0;
    EVP_DigestSign(ctx, nullptr, &n, reinterpret_cast<const unsigned char*>(data.data()), data.size());
    std::string sig(n, '\0');
    EXPECT_EQ(EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &n,
                             reinterpret_cast<const unsigned char*>(data.data()), data.size()),
              1);
    sig.resize(n);
    EVP_MD_CTX_free(ctx);
    return sig;
  }

 private:
  EVP_PKEY* key_;
};

constexpr const char* kUnhex = R"(
local function unhex(s) return (s:gsub("..", function(h) return string.char(tonumber(h, 16)) end)) end
)";

TEST_F(LuaFilterTest, VerifySignatureAcceptsGoodSignaturesForEveryHash) {
  KeyPair rsa(true), ec(false);
  const std::string data = "hello lua";
  std::string script = kUnhex;
  script += "local RSA = unhex('" + hex(rsa.publicDer()) + "')\nlocal EC = unhex('" + hex(ec.publicDer()) +
            "')\nlocal DATA = '" + data + "'\nlocal SIGS = {";
  for (const char* h : {"sha1", "sha224", "sha256", "sha384", "sha512"}) {
    script += std::string(h) + " = unhex('" + hex(rsa.sign(h, data)) + "'), ";
  }
  script += "}\nlocal EC_SIG = unhex('" + hex(ec.sign("sha256", data)) + "')\n";
  script += R"(
function envoy_on_request(h)
  local key = h:importPublicKey(RSA, string.len(RSA)):get()
  local results = {}
  for _, name in ipairs({"sha1", "sha224", "sha256", "sha384", "sha512"}) do
    local sig = SIGS[name]
    local ok, err = h:verifySignature(name, key, sig, string.len(sig), DATA, string.len(DATA))
    results[#results + 1] = name .. "=" .. tostring(ok) .. "/" .. tostring(err)
  end
  h:headers():add("x-rsa", table.concat(results, ","))
  -- Upper-case hash names, and the key object itself instead of its get() string.
  local obj = h:importPublicKey(RSA, #RSA)
  local ok = h:verifySignature("SHA256", obj, SIGS.sha256, #SIGS.sha256, DATA, #DATA)
  h:headers():add("x-upper-object", tostring(ok))
  local ec = h:importPublicKey(EC, #EC):get()
  h:headers():add("x-ec", tostring(h:verifySignature("sha256", ec, EC_SIG, #EC_SIG, DATA, #DATA)))
end
)";
  setUp(script);
  fm.decodeHeaders(request(), true);
  ASSERT_TRUE(upstream->got_headers);
  EXPECT_EQ(upstream->headers.getOr("x-rsa"),
            "sha1=true/nil,sha224=true/nil,sha256=true/nil,sha384=true/nil,sha512=true/nil");
  EXPECT_EQ(upstream->headers.getOr("x-upper-object"), "true");
  EXPECT_EQ(upstream->headers.getOr("x-ec"), "true");
  EXPECT_EQ(counter("http.test.lua.errors"), 0u);
}

TEST_F(LuaFilterTest, VerifySignatureReportsEnvoysErrors) {
  KeyPair rsa(true);
  const std::string data = "hello lua";
  std::string script = kUnhex;
  script += "local RSA = unhex('" + hex(rsa.publicDer()) + "')\nlocal SIG = unhex('" +
            hex(rsa.sign("sha256", data)) + "')\nlocal DATA = '" + data + "'\n";
  script += R"(
local function result(ok, err) return tostring(ok) .. "/" .. tostring(err) end
function envoy_on_request(h)
  local hs = h:headers()
  local key = h:importPublicKey(RSA, #RSA):get()
  hs:add("x-hash", result(h:verifySignature("md5", key, SIG, #SIG, DATA, #DATA)))
  hs:add("x-data", result(h:verifySignature("sha256", key, SIG, #SIG, "tampered", 8)))
  local bad = unhex("000000")
  hs:add("x-sig", result(h:verifySignature("sha256", key, bad, #bad, DATA, #DATA)))
  -- A short length verifies only that prefix of the data.
  hs:add("x-prefix", result(h:verifySignature("sha256", key, SIG, #SIG, DATA .. "xyz", #DATA)))

  -- A key that does not parse: get() is nil, and verifying with the object fails like Envoy's empty key.
  local broken = h:importPublicKey("not a key", 9)
  hs:add("x-broken-get", tostring(broken:get()))
  hs:add("x-broken-object", result(h:verifySignature("sha256", broken, SIG, #SIG, DATA, #DATA)))
  local ok, err = pcall(h.verifySignature, h, "sha256", broken:get(), SIG, #SIG, DATA, #DATA)
  hs:add("x-broken-string", tostring(ok) .. "/" .. tostring(string.find(err, "bad argument") ~= nil))
  ok, err = pcall(h.verifySignature, h, "sha256", "never imported", SIG, #SIG, DATA, #DATA)
  hs:add("x-unknown", tostring(ok) .. "/" .. tostring(string.find(err, "invalid public key") ~= nil))
  ok, err = pcall(h.verifySignature, h, "sha256", key, SIG, #SIG + 1, DATA, #DATA)
  hs:add("x-long", tostring(ok))
  ok, err = pcall(h.importPublicKey, h, RSA, #RSA + 5)
  hs:add("x-long-key", tostring(ok))
end
)";
  setUp(script);
  fm.decodeHeaders(request(), true);
  ASSERT_TRUE(upstream->got_headers);
  const HeaderMap& hs = upstream->headers;
  EXPECT_EQ(hs.getOr("x-hash"), "false/md5 is not supported.");
  EXPECT_EQ(hs.getOr("x-data"), "false/Failed to verify digest. Error code: 0");
  EXPECT_EQ(hs.getOr("x-sig"), "false/Failed to verify digest. Error code: 0");
  EXPECT_EQ(hs.getOr("x-prefix"), "true/nil");
  EXPECT_EQ(hs.getOr("x-broken-get"), "nil");
  EXPECT_EQ(hs.getOr("x-broken-object"), "false/Failed to initialize digest verify.");
  EXPECT_EQ(hs.getOr("x-broken-string"), "false/true");
  EXPECT_EQ(hs.getOr("x-unknown"), "false/true");
  EXPECT_EQ(hs.getOr("x-long"), "false");
  EXPECT_EQ(hs.getOr("x-long-key"), "false");
  EXPECT_EQ(counter("http.test.lua.errors"), 0u);
}

TEST_F(LuaFilterTest, PublicKeysAreFreedByTheGarbageCollector) {
  KeyPair rsa(true);
  std::string script = kUnhex;
  script += "local RSA = unhex('" + hex(rsa.publicDer()) + "')\n";
  script += R"(
function envoy_on_request(h)
  for i = 1, 200 do h:importPublicKey(RSA, #RSA) end
  local key = h:importPublicKey(RSA, #RSA):get()  -- the object itself is garbage at once
  collectgarbage()
  collectgarbage()
  -- Its get() string no longer finds it: the object (and its EVP_PKEY) was collected.
  local ok, err = pcall(h.verifySignature, h, "sha256", key, "x", 1, "y", 1)
  h:headers():add("x-collected", tostring(not ok and string.find(err, "invalid public key") ~= nil))
end
)";
  setUp(script);
  fm.decodeHeaders(request(), true);
  EXPECT_EQ(upstream->headers.getOr("x-collected"), "true");
}

TEST_F(LuaFilterTest, PlaintextConnectionsHaveNoSslObject) {
  setUp(R"(
local function report(h)
  h:headers():add("x-ssl", tostring(h:connection():ssl()))
  h:headers():add("x-stream-ssl", tostring(h:streamInfo():downstreamSslConnection()))
  h:headers():add("x-conn-type", type(h:connection()))
end
envoy_on_request = report
envoy_on_response = report
)");
  fm.decodeHeaders(request(), true);
  EXPECT_EQ(upstream->headers.getOr("x-ssl"), "nil");
  EXPECT_EQ(upstream->headers.getOr("x-stream-ssl"), "nil");
  EXPECT_EQ(upstream->headers.getOr("x-conn-type"), "userdata");
  upstream->respond({});
  EXPECT_EQ(sink.headers.getOr("x-ssl"), "nil");
  EXPECT_EQ(sink.headers.getOr("x-stream-ssl"), "nil");
}

// Route metadata under two names: the filter's own HCM name wins, the well-known name is the fallback.
class MetadataNameTest : public LuaFilterTest {
 protected:
  void SetUp() override {
    (*(*md.mutable_filter_metadata())["my-lua"].mutable_fields())["who"].set_string_value("configured");
    (*(*md.mutable_filter_metadata())[std::string(kFilterName)].mutable_fields())["who"].set_string_value(
        "well-known");
    entry.metadata = &md;
    stream.route_entry = &entry;
  }
  static google::protobuf::Any config() {
    envoy::extensions::filters::http::lua::v3::Lua proto;
    proto.mutable_default_source_code()->set_inline_string(
        R"(function envoy_on_request(h) h:headers():add("x-who", tostring(h:metadata():get("who"))) end)");
    google::protobuf::Any any;
    any.PackFrom(proto);
    return any;
  }
  envoy::config::core::v3::Metadata md;
  router::RouteEntry entry;
};

TEST_F(MetadataNameTest, TheConfiguredFilterNameComesFirst) {
  setUpAny(config(), "my-lua");
  fm.decodeHeaders(request(), true);
  EXPECT_EQ(upstream->headers.getOr("x-who"), "configured");
}

TEST_F(MetadataNameTest, TheWellKnownNameIsTheFallback) {
  setUpAny(config(), "some-other-name");
  fm.decodeHeaders(request(), true);
  EXPECT_EQ(upstream->headers.getOr("x-who"), "well-known");
}

TEST_F(MetadataNameTest, TheWellKnownNameAsConfiguredName) {
  setUpAny(config(), std::string(kFilterName));
  fm.decodeHeaders(request(), true);
  EXPECT_EQ(upstream->headers.getOr("x-who"), "well-known");
}

TEST_F(LuaFilterTest, PerRouteConfigUnderTheConfiguredNameWins) {
  router::TypedPerFilterConfig any_map;
  router::RouteEntry entry;
  envoy::extensions::filters::http::lua::v3::LuaPerRoute mine, theirs;
  mine.set_name("mine");
  theirs.set_disabled(true);
  any_map["my-lua"].PackFrom(mine);
  any_map[std::string(kFilterName)].PackFrom(theirs);
  entry.typed_per_filter_config = &any_map;
  stream.route_entry = &entry;
  envoy::extensions::filters::http::lua::v3::Lua proto;
  (*proto.mutable_source_codes())["mine"].set_inline_string(
      R"(function envoy_on_request(h) h:headers():add("x-script", "mine") end)");
  google::protobuf::Any any;
  any.PackFrom(proto);
  setUpAny(any, "my-lua");
  fm.decodeHeaders(request(), true);
  EXPECT_EQ(upstream->headers.getOr("x-script"), "mine");
}

// Skiff's type: fail_closed and instruction_budget.
google::protobuf::Any skiffConfig(const std::string& code, bool fail_closed, uint64_t budget = 0) {
  SkiffLua proto;
  proto.mutable_lua()->mutable_default_source_code()->set_inline_string(code);
  proto.set_fail_closed(fail_closed);
  if (budget != 0) proto.mutable_instruction_budget()->set_value(budget);
  google::protobuf::Any any;
  any.PackFrom(proto);
  return any;
}

constexpr const char* kFailingScript = R"(
function envoy_on_request(h)
  if h:headers():get("x-fail") then error("request boom") end
  if h:headers():get("x-spin") then while true do end end
  if h:headers():get("x-chunks") then
    local n = 0
    for c in h:bodyChunks() do
      n = n + 1
      if n == 2 then error("chunk boom") end
    end
  end
end
function envoy_on_response(h)
  h:headers():add("x-response-script", "ran")
  if h:headers():get("x-fail-response") then error("response boom") end
end
)";

TEST_F(LuaFilterTest, FailClosedAnswers500OnARuntimeError) {
  setUpAny(skiffConfig(kFailingScript, true));
  auto req = request();
  req->add("x-fail", "1");
  fm.decodeHeaders(std::move(req), true);
  EXPECT_FALSE(upstream->got_headers);
  EXPECT_EQ(stream.local_replies, std::vector<uint32_t>{500});
  EXPECT_EQ(sink.headers.getOr(":status"), "500");
  EXPECT_EQ(sink.headers.get("x-response-script"), nullptr);  // no script runs on the error reply
  EXPECT_EQ(stream.info.response_code_details, "lua_runtime_error");
  EXPECT_EQ(counter("http.test.lua.errors"), 1u);
  EXPECT_EQ(stream.resets, 0);
}

TEST_F(LuaFilterTest, FailClosedAnswers500WhenTheBudgetStopsAScript) {
  setUpAny(skiffConfig(kFailingScript, true, 200'000));
  auto req = request();
  req->add("x-spin", "1");
  fm.decodeHeaders(std::move(req), true);
  EXPECT_FALSE(upstream->got_headers);
  EXPECT_EQ(stream.local_replies, std::vector<uint32_t>{500});
  EXPECT_EQ(stream.info.response_code_details, "lua_instruction_budget_exceeded");
  EXPECT_EQ(counter("http.test.lua.instruction_budget_exceeded"), 1u);
  EXPECT_EQ(counter("http.test.lua.errors"), 1u);
}

TEST_F(LuaFilterTest, PcallCannotSwallowTheBudgetStop) {
  setUpAny(skiffConfig(R"(
function envoy_on_request(h)
  local caught = 0
  while true do
    local ok = pcall(function() while true do end end)
    if not ok then caught = caught + 1 end
  end
end
)",
                       false, 300'000));
  fm.decodeHeaders(request(), true);
  ASSERT_TRUE(upstream->got_headers);  // stopped, and fail-open: the stream continues
  EXPECT_EQ(counter("http.test.lua.instruction_budget_exceeded"), 1u);
  EXPECT_EQ(counter("http.test.lua.errors"), 1u);
}

TEST_F(LuaFilterTest, FailClosedResetsTheStreamOnceHeadersWentOn) {
  setUpAny(skiffConfig(kFailingScript, true));
  auto req = request();
  req->add("x-chunks", "1");
  fm.decodeHeaders(std::move(req), false);
  std::string one = "one", two = "two";
  fm.decodeData(one, false);
  ASSERT_TRUE(upstream->got_headers);  // the first chunk released the headers
  fm.decodeData(two, true);
  EXPECT_EQ(stream.resets, 1);
  EXPECT_TRUE(stream.local_replies.empty());
  EXPECT_EQ(upstream->body, "one");
  EXPECT_EQ(counter("http.test.lua.errors"), 1u);
}

TEST_F(LuaFilterTest, FailClosedOnTheResponsePathReplacesTheResponse) {
  setUpAny(skiffConfig(kFailingScript, true));
  fm.decodeHeaders(request(), true);
  ASSERT_TRUE(upstream->got_headers);
  auto h = std::make_unique<HeaderMap>();
  h->add(":status", "200");
  h->add("x-fail-response", "1");
  upstream->callbacks->encodeHeaders(std::move(h), true);
  EXPECT_EQ(stream.local_replies, std::vector<uint32_t>{500});
  EXPECT_EQ(sink.headers.getOr(":status"), "500");
  EXPECT_EQ(stream.info.response_code_details, "lua_runtime_error");
}

TEST_F(LuaFilterTest, EnvoysTypeAndFailClosedFalseStayFailOpen) {
  for (bool skiff_type : {false, true}) {
    SCOPED_TRACE(skiff_type);
    stats::Store s(2);
    FakeStream st;
    FakeSink sk;
    server::FilterManager m(st, sk, 1 << 20);
    st.fm = &m;
    google::protobuf::Any any;
    if (skiff_type) {
      any = skiffConfig(kFailingScript, false, 200'000);
    } else {
      envoy::extensions::filters::http::lua::v3::Lua proto;
      proto.mutable_default_source_code()->set_inline_string(kFailingScript);
      any.PackFrom(proto);
    }
    createLuaFilterFactory(any, FactoryContext{s, "http.test."})->createFilters(m);
    auto up = std::make_unique<Upstream>();
    Upstream* u = up.get();
    m.addDecoderFilter(std::move(up));
    auto req = request();
    req->add("x-fail", "1");
    m.decodeHeaders(std::move(req), true);
    EXPECT_TRUE(u->got_headers);
    EXPECT_TRUE(st.local_replies.empty());
    EXPECT_EQ(s.counter("http.test.lua.errors").value(), 1u);
    u->respond({});
    EXPECT_EQ(sk.headers.getOr(":status"), "200");
    EXPECT_EQ(sk.headers.getOr("x-response-script"), "ran");
  }
}

TEST_F(LuaFilterTest, SkiffTypeRejectsAZeroBudget) {
  SkiffLua proto;
  proto.mutable_lua()->mutable_default_source_code()->set_inline_string("x = 1");
  proto.mutable_instruction_budget()->set_value(0);
  google::protobuf::Any any;
  any.PackFrom(proto);
  EXPECT_THROW(createLuaFilterFactory(any, FactoryContext{store, "x."}), std::invalid_argument);
}

// Coroutines are reused between streams: every stream still gets a clean run, an error or an abandoned
// (yielded) stream does not poison the next, and objects kept from an old stream stay dead.
TEST_F(LuaFilterTest, ReusedCoroutinesKeepStreamsApart) {
  setUp(R"(
kept = nil
function envoy_on_request(h)
  local hs = h:headers()
  if hs:get("x-keep") then kept = h end
  if hs:get("x-fail") then error("boom") end
  if hs:get("x-body") then h:body() end
  local stale = "none"
  if kept ~= nil and kept ~= h then stale = tostring(pcall(function() return kept:headers() end)) end
  hs:add("x-stale", stale)
  hs:add("x-n", hs:get("x-i"))
end
)");
  for (int i = 0; i < 300; ++i) {
    FakeStream st;
    FakeSink sk;
    auto m = std::make_unique<server::FilterManager>(st, sk, 1 << 20);
    st.fm = m.get();
    factory->createFilters(*m);
    auto up = std::make_unique<Upstream>();
    Upstream* u = up.get();
    m->addDecoderFilter(std::move(up));
    auto req = request();
    req->add("x-i", std::to_string(i));
    if (i == 0) req->add("x-keep", "1");
    if (i % 7 == 3) req->add("x-fail", "1");
    const bool abandon =
        i % 11 == 5 && i % 7 != 3;  // waits for a body that never comes; the stream is destroyed
    if (abandon) req->add("x-body", "1");
    m->decodeHeaders(std::move(req), !abandon);
    if (abandon) {
      EXPECT_FALSE(u->got_headers);
      continue;
    }
    ASSERT_TRUE(u->got_headers) << i;
    if (i % 7 == 3) continue;
    EXPECT_EQ(u->headers.getOr("x-n"), std::to_string(i));
    if (i > 0) {
      EXPECT_EQ(u->headers.getOr("x-stale"), "false") << i;
    }
  }
  EXPECT_EQ(counter("http.test.lua.errors"), 43u);  // i % 7 == 3 for i < 300
}

}  // namespace
}  // namespace skiff::filters::lua::test
