// RouteConfigLevel::routing_headers and RouteEntry::dependsOnHeader: which request header changes can
// change the chosen route (the filter manager skips re-matching for the others).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "skiff/router/route_table.h"
#include "test_util.h"

namespace skiff::router {
namespace {

using testing::makeTable;
using testing::request;
using testing::tableWithRoutes;

const std::vector<std::string>& headersOf(const RouteTable& t) {
  return t.virtualHosts().front()->route_config->routing_headers;
}

TEST(RoutingHeadersTest, APlainTableReadsAuthorityPathAndMethod) {
  auto t = tableWithRoutes(R"([{"match":{"prefix":"/"},"route":{"cluster":"c"}}])");
  EXPECT_EQ(headersOf(*t), (std::vector<std::string>{":authority", ":method", ":path", "host"}));
}

TEST(RoutingHeadersTest, HeaderMatchersAndGrpcAddTheirHeadersOnce) {
  auto t = tableWithRoutes(R"([
    {"match":{"prefix":"/a","headers":[{"name":"X-Tenant","present_match":true}]},"route":{"cluster":"c"}},
    {"match":{"prefix":"/b","headers":[{"name":"x-tenant","string_match":{"exact":"x"}}]},"route":{"cluster":"c"}},
    {"match":{"prefix":"/g","grpc":{}},"route":{"cluster":"c"}},
    {"match":{"prefix":"/"},"route":{"cluster":"c"}}])");
  EXPECT_EQ(headersOf(*t),
            (std::vector<std::string>{":authority", ":method", ":path", "content-type", "host", "x-tenant"}));
}

TEST(RoutingHeadersTest, RequireTlsAddsItsInputs) {
  auto t = makeTable(R"({"virtual_hosts":[{"name":"v","domains":["*"],"require_tls":"ALL",
                           "routes":[{"match":{"prefix":"/"},"route":{"cluster":"c"}}]}]})");
  const auto& names = headersOf(*t);
  for (const char* n : {"x-forwarded-proto", ":scheme", "x-envoy-internal"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
  }
}

TEST(RoutingHeadersTest, DependsOnHeaderIsCaseInsensitiveAndConservative) {
  auto t = tableWithRoutes(R"([
    {"match":{"prefix":"/","headers":[{"name":"x-tenant","present_match":true}]},"route":{"cluster":"c"}},
    {"match":{"prefix":"/"},"route":{"cluster":"d"}}])");
  const RouteEntry* e = t->route(request("h", "/"), 0);
  ASSERT_NE(e, nullptr);
  EXPECT_TRUE(e->dependsOnHeader("X-Tenant"));
  EXPECT_TRUE(e->dependsOnHeader(":path"));
  EXPECT_TRUE(e->dependsOnHeader("Host"));
  EXPECT_FALSE(e->dependsOnHeader("x-bench-lua"));
  EXPECT_FALSE(e->dependsOnHeader("x-tenan"));
  // An entry outside any table: nothing is known, so every header counts.
  RouteEntry loose;
  EXPECT_TRUE(loose.dependsOnHeader("x-bench-lua"));
}

// Matchers on inputs other than headers (ignored when matching, as before) make every header a routing
// header: the route's dependence on them is not a list of names.
TEST(RoutingHeadersTest, OtherInputsMakeEveryHeaderCount) {
  for (const char* match :
       {R"("tls_context":{"presented":true})",
        R"("dynamic_metadata":[{"filter":"f","path":[{"key":"k"}],"value":{"present_match":true}}])"}) {
    auto t = tableWithRoutes(std::string(R"([{"match":{"prefix":"/",)") + match +
                             R"(},"route":{"cluster":"c"}}])");
    const RouteEntry* e = t->route(request("h", "/"), 0);
    ASSERT_NE(e, nullptr) << match;  // still matches as before: the matcher is not evaluated
    EXPECT_TRUE(e->dependsOnHeader("x-bench-lua")) << match;
  }
  auto plain = tableWithRoutes(R"([{"match":{"prefix":"/"},"route":{"cluster":"c"}}])");
  EXPECT_FALSE(plain->route(request("h", "/"), 0)->dependsOnHeader("x-bench-lua"));
}

// A binary xDS RouteMatch with a matcher this build's proto lacks (filter_state = 20) keeps it as an
// unknown field: also fail-safe.
TEST(RoutingHeadersTest, UnknownMatchFieldsMakeEveryHeaderCount) {
  auto config = testing::parseConfig(
      R"({"name":"rc","virtual_hosts":[{"name":"vh","domains":["*"],"routes":[
          {"match":{"prefix":"/"},"route":{"cluster":"c"}}]}]})");
  config.mutable_virtual_hosts(0)
      ->mutable_routes(0)
      ->mutable_match()
      ->GetReflection()
      ->MutableUnknownFields(config.mutable_virtual_hosts(0)->mutable_routes(0)->mutable_match())
      ->AddLengthDelimited(20, "\x0a\x01k");
  auto t = RouteTable::create(config);
  const RouteEntry* e = t->route(request("h", "/"), 0);
  ASSERT_NE(e, nullptr);
  EXPECT_TRUE(e->dependsOnHeader("x-bench-lua"));
}

}  // namespace
}  // namespace skiff::router
