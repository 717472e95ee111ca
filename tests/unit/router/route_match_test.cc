// Virtual host selection and route matching rules of the route table.
#include <gtest/gtest.h>

#include "test_util.h"

namespace skiff::router {
namespace {

using testing::expectConfigError;
using testing::makeTable;
using testing::request;
using testing::routeName;
using testing::tableWithRoutes;

// Each vhost has one catch-all route named after the vhost.
std::string domainsConfig(bool ignore_port) {
  std::string vhosts;
  auto vh = [&](const std::string& name, const std::string& domains) {
    if (!vhosts.empty()) vhosts += ",";
    vhosts += R"({"name":")" + name + R"(","domains":)" + domains + R"(,"routes":[{"name":")" + name +
              R"(","match":{"prefix":"/"},"route":{"cluster":"c"}}]})";
  };
  vh("exact", R"(["api.example.com","Mixed.Example.com","port.example.com:8080"])");
  vh("suffix_long", R"(["*.api.example.com"])");
  vh("suffix_short", R"(["*.example.com"])");
  vh("suffix_nodot", R"(["*-foo.org"])");
  vh("prefix_long", R"(["api.example.*"])");
  vh("prefix_short", R"(["api.*"])");
  vh("default", R"(["*"])");
  return std::string(R"({"name":"rc","ignore_port_in_host_matching":)") + (ignore_port ? "true" : "false") +
         R"(,"virtual_hosts":[)" + vhosts + "]}";
}

TEST(RouterVirtualHostTest, DomainPrecedence) {
  auto t = makeTable(domainsConfig(false));
  auto vh = [&](std::string_view host) {
    const VirtualHost* v = t->findVirtualHost(host);
    return v ? v->name : "<none>";
  };
  EXPECT_EQ(vh("api.example.com"), "exact");
  EXPECT_EQ(vh("API.EXAMPLE.COM"), "exact");  // case-insensitive
  EXPECT_EQ(vh("mixed.example.com"), "exact");
  EXPECT_EQ(vh("v1.api.example.com"), "suffix_long");  // longest suffix wins
  EXPECT_EQ(vh("www.example.com"), "suffix_short");
  EXPECT_EQ(vh("bar-foo.org"), "suffix_nodot");
  EXPECT_EQ(vh("-foo.org"), "default");             // a wildcard matches at least one character
  EXPECT_EQ(vh("api.example.net"), "prefix_long");  // suffixes before prefixes, longest prefix first
  EXPECT_EQ(vh("api.other"), "prefix_short");
  EXPECT_EQ(vh("other.net"), "default");
  EXPECT_EQ(vh(""), "default");
}

TEST(RouterVirtualHostTest, PortIsPartOfTheHostByDefault) {
  auto t = makeTable(domainsConfig(false));
  EXPECT_EQ(t->findVirtualHost("port.example.com:8080")->name, "exact");
  EXPECT_EQ(t->findVirtualHost("api.example.com:80")->name, "prefix_long");  // "api.example.*" takes it
  EXPECT_EQ(t->findVirtualHost("port.example.com")->name, "suffix_short");
}

TEST(RouterVirtualHostTest, IgnorePortInHostMatching) {
  auto t = makeTable(domainsConfig(true));
  EXPECT_EQ(t->findVirtualHost("api.example.com:80")->name, "exact");
  EXPECT_EQ(t->findVirtualHost("[::1]:8080")->name, "default");
}

TEST(RouterVirtualHostTest, RouteUsesAuthorityOrHost) {
  auto t = makeTable(domainsConfig(false));
  EXPECT_EQ(routeName(*t, request("api.example.com", "/x")), "exact");
  http::HeaderMap h;
  h.add(":path", "/");
  h.add("host", "www.example.com");
  EXPECT_EQ(routeName(*t, h), "suffix_short");
}

TEST(RouterVirtualHostTest, NoDefaultMeansNoRoute) {
  auto t = makeTable(R"({"virtual_hosts":[{"name":"a","domains":["a.com"],
      "routes":[{"name":"r","match":{"prefix":"/"},"route":{"cluster":"c"}}]}]})");
  EXPECT_EQ(t->route(request("b.com", "/"), 0), nullptr);
  EXPECT_EQ(routeName(*t, request("a.com", "/")), "r");
}

TEST(RouterVirtualHostTest, DuplicateDomainsRejected) {
  expectConfigError(
      R"({"virtual_hosts":[{"name":"a","domains":["a.com"]},{"name":"b","domains":["A.com"]}]})",
      "virtual_hosts[1].domains[0]");
  expectConfigError(R"({"virtual_hosts":[{"name":"a","domains":["*"]},{"name":"b","domains":["*"]}]})",
                    "duplicate");
  expectConfigError(R"({"virtual_hosts":[{"name":"a","domains":["*.a.*"]}]})", "wildcard");
}

TEST(RouterRouteMatchTest, FirstMatchWinsInOrder) {
  auto t = tableWithRoutes(R"([
    {"name":"foo","match":{"prefix":"/foo"},"route":{"cluster":"a"}},
    {"name":"foobar","match":{"prefix":"/foobar"},"route":{"cluster":"b"}},
    {"name":"all","match":{"prefix":"/"},"route":{"cluster":"c"}}])");
  EXPECT_EQ(routeName(*t, request("x", "/foobar")), "foo");
  EXPECT_EQ(routeName(*t, request("x", "/bar")), "all");
}

TEST(RouterRouteMatchTest, PathKinds) {
  auto t = tableWithRoutes(R"([
    {"name":"exact","match":{"path":"/exact"},"route":{"cluster":"a"}},
    {"name":"regex","match":{"safe_regex":{"regex":"/v[0-9]+/items"}},"route":{"cluster":"a"}},
    {"name":"sep","match":{"path_separated_prefix":"/api"},"route":{"cluster":"a"}},
    {"name":"ci","match":{"prefix":"/CaSe","case_sensitive":false},"route":{"cluster":"a"}},
    {"name":"cs","match":{"path":"/Strict"},"route":{"cluster":"a"}}])");
  EXPECT_EQ(routeName(*t, request("x", "/exact")), "exact");
  EXPECT_EQ(routeName(*t, request("x", "/exact?q=1")), "exact");  // query is not part of the path
  EXPECT_EQ(routeName(*t, request("x", "/exact/more")), "<none>");
  EXPECT_EQ(routeName(*t, request("x", "/v12/items?x=y")), "regex");
  EXPECT_EQ(routeName(*t, request("x", "/v12/items/1")), "<none>");  // full match only
  EXPECT_EQ(routeName(*t, request("x", "/api")), "sep");
  EXPECT_EQ(routeName(*t, request("x", "/api/v1")), "sep");
  EXPECT_EQ(routeName(*t, request("x", "/api?x")), "sep");
  EXPECT_EQ(routeName(*t, request("x", "/apix")), "<none>");
  EXPECT_EQ(routeName(*t, request("x", "/case/x")), "ci");
  EXPECT_EQ(routeName(*t, request("x", "/CASEY")), "ci");
  EXPECT_EQ(routeName(*t, request("x", "/Strict")), "cs");
  EXPECT_EQ(routeName(*t, request("x", "/strict")), "<none>");
}

TEST(RouterRouteMatchTest, ConnectMatcher) {
  auto t = tableWithRoutes(R"([{"name":"connect","match":{"connect_matcher":{}},"route":{"cluster":"a"}}])");
  EXPECT_EQ(routeName(*t, request("x:443", "", {}, "CONNECT")), "connect");
  EXPECT_EQ(routeName(*t, request("x", "/")), "<none>");
}

TEST(RouterRouteMatchTest, HeaderMatchers) {
  auto t = tableWithRoutes(R"([
    {"name":"exact","match":{"prefix":"/e","headers":[{"name":"X-A","exact_match":"v"}]},"route":{"cluster":"a"}},
    {"name":"regex","match":{"prefix":"/r","headers":[{"name":"x-a","safe_regex_match":{"regex":"v[0-9]"}}]},"route":{"cluster":"a"}},
    {"name":"range","match":{"prefix":"/n","headers":[{"name":"x-n","range_match":{"start":10,"end":20}}]},"route":{"cluster":"a"}},
    {"name":"present","match":{"prefix":"/p","headers":[{"name":"x-a","present_match":true}]},"route":{"cluster":"a"}},
    {"name":"absent","match":{"prefix":"/q","headers":[{"name":"x-a","present_match":false}]},"route":{"cluster":"a"}},
    {"name":"prefix","match":{"prefix":"/f","headers":[{"name":"x-a","prefix_match":"ab"}]},"route":{"cluster":"a"}},
    {"name":"suffix","match":{"prefix":"/s","headers":[{"name":"x-a","suffix_match":"yz"}]},"route":{"cluster":"a"}},
    {"name":"contains","match":{"prefix":"/c","headers":[{"name":"x-a","contains_match":"mid"}]},"route":{"cluster":"a"}},
    {"name":"string","match":{"prefix":"/g","headers":[{"name":"x-a","string_match":{"exact":"HeLLo","ignore_case":true}}]},"route":{"cluster":"a"}},
    {"name":"invert","match":{"prefix":"/i","headers":[{"name":"x-a","exact_match":"v","invert_match":true}]},"route":{"cluster":"a"}},
    {"name":"missing_empty","match":{"prefix":"/m","headers":[{"name":"x-a","string_match":{"exact":""},"treat_missing_header_as_empty":true}]},"route":{"cluster":"a"}},
    {"name":"nospec","match":{"prefix":"/o","headers":[{"name":"x-a"}]},"route":{"cluster":"a"}},
    {"name":"multi","match":{"prefix":"/j","headers":[{"name":"x-a","exact_match":"1,2"}]},"route":{"cluster":"a"}}])");
  auto name = [&](std::string_view path,
                  std::initializer_list<std::pair<std::string_view, std::string_view>> h) {
    return routeName(*t, request("x", path, h));
  };
  EXPECT_EQ(name("/e", {{"x-a", "v"}}), "exact");
  EXPECT_EQ(name("/e", {{"x-a", "w"}}), "<none>");
  EXPECT_EQ(name("/e", {}), "<none>");
  EXPECT_EQ(name("/r", {{"x-a", "v7"}}), "regex");
  EXPECT_EQ(name("/r", {{"x-a", "v77"}}), "<none>");
  EXPECT_EQ(name("/n", {{"x-n", "10"}}), "range");
  EXPECT_EQ(name("/n", {{"x-n", "20"}}), "<none>");  // end is exclusive
  EXPECT_EQ(name("/n", {{"x-n", "1x"}}), "<none>");
  EXPECT_EQ(name("/p", {{"x-a", ""}}), "present");
  EXPECT_EQ(name("/p", {}), "<none>");
  EXPECT_EQ(name("/q", {}), "absent");
  EXPECT_EQ(name("/q", {{"x-a", "v"}}), "<none>");
  EXPECT_EQ(name("/f", {{"x-a", "abc"}}), "prefix");
  EXPECT_EQ(name("/f", {{"x-a", "xab"}}), "<none>");
  EXPECT_EQ(name("/s", {{"x-a", "xyz"}}), "suffix");
  EXPECT_EQ(name("/c", {{"x-a", "amidb"}}), "contains");
  EXPECT_EQ(name("/c", {{"x-a", "aMIDb"}}), "<none>");
  EXPECT_EQ(name("/g", {{"x-a", "hello"}}), "string");
  EXPECT_EQ(name("/i", {{"x-a", "w"}}), "invert");
  EXPECT_EQ(name("/i", {{"x-a", "v"}}), "<none>");
  EXPECT_EQ(name("/i", {}), "<none>");  // a missing header fails an inverted value match too
  EXPECT_EQ(name("/m", {}), "missing_empty");
  EXPECT_EQ(name("/o", {{"X-A", "anything"}}), "nospec");
  EXPECT_EQ(name("/o", {}), "<none>");
  EXPECT_EQ(name("/j", {{"x-a", "1"}, {"x-a", "2"}}), "multi");  // repeated values joined with ","
  EXPECT_EQ(name("/e", {{"x-a", "v"}, {"x-a", "v"}}), "<none>");
}

TEST(RouterRouteMatchTest, QueryParameters) {
  auto t = tableWithRoutes(R"([
    {"name":"value","match":{"prefix":"/","query_parameters":[{"name":"debug","string_match":{"exact":"1"}}]},"route":{"cluster":"a"}},
    {"name":"present","match":{"prefix":"/","query_parameters":[{"name":"trace","present_match":true}]},"route":{"cluster":"a"}},
    {"name":"regex","match":{"prefix":"/","query_parameters":[{"name":"id","string_match":{"safe_regex":{"regex":"[0-9]+"}}}]},"route":{"cluster":"a"}}])");
  EXPECT_EQ(routeName(*t, request("x", "/p?a=b&debug=1")), "value");
  EXPECT_EQ(routeName(*t, request("x", "/p?debug=2")), "<none>");
  EXPECT_EQ(routeName(*t, request("x", "/p?trace")), "present");
  EXPECT_EQ(routeName(*t, request("x", "/p?x=1&trace=")), "present");
  EXPECT_EQ(routeName(*t, request("x", "/p?id=42")), "regex");
  EXPECT_EQ(routeName(*t, request("x", "/p?id=4a")), "<none>");
  EXPECT_EQ(routeName(*t, request("x", "/p")), "<none>");
}

TEST(RouterRouteMatchTest, GrpcAndRuntimeFraction) {
  auto t = tableWithRoutes(R"([
    {"name":"grpc","match":{"prefix":"/","grpc":{}},"route":{"cluster":"a"}},
    {"name":"off","match":{"prefix":"/","runtime_fraction":{"default_value":{"numerator":0}}},"route":{"cluster":"a"}},
    {"name":"quarter","match":{"prefix":"/","runtime_fraction":{"default_value":{"numerator":25,"denominator":"HUNDRED"}}},"route":{"cluster":"a"}},
    {"name":"rest","match":{"prefix":"/"},"route":{"cluster":"a"}}])");
  EXPECT_EQ(routeName(*t, request("x", "/svc/M", {{"content-type", "application/grpc"}})), "grpc");
  EXPECT_EQ(routeName(*t, request("x", "/svc/M", {{"content-type", "application/grpc+proto"}})), "grpc");
  EXPECT_NE(routeName(*t, request("x", "/svc/M", {{"content-type", "application/grpc-web"}})), "grpc");
  EXPECT_EQ(routeName(*t, request("x", "/", {}), 24), "quarter");
  EXPECT_EQ(routeName(*t, request("x", "/", {}), 124), "quarter");
  EXPECT_EQ(routeName(*t, request("x", "/", {}), 25), "rest");
}

TEST(RouterRouteMatchTest, BadConfigNamesThePath) {
  expectConfigError(R"({"virtual_hosts":[{"name":"v","domains":["*"],"routes":[
      {"match":{"prefix":"/"},"route":{"cluster":"a"}},
      {"match":{"prefix":"/"},"route":{"cluster":"a"}},
      {"match":{"safe_regex":{"regex":"/(unclosed"}},"route":{"cluster":"a"}}]}]})",
                    "virtual_hosts[0].routes[2].match.safe_regex.regex: invalid regex");
  expectConfigError(R"({"virtual_hosts":[{"name":"v","domains":["*"],"routes":[
      {"match":{"prefix":"/","headers":[{"name":"x","safe_regex_match":{"regex":"[a-"}}]},"route":{"cluster":"a"}}]}]})",
                    "virtual_hosts[0].routes[0].match.headers[0].safe_regex_match.regex");
  expectConfigError(R"({"virtual_hosts":[{"name":"v","domains":["*"],"routes":[
      {"match":{"prefix":"/"},"route":{"cluster":"a","regex_rewrite":{"pattern":{"regex":"("},"substitution":"x"}}}]}]})",
                    "virtual_hosts[0].routes[0].route.regex_rewrite.pattern.regex");
  expectConfigError(R"({"virtual_hosts":[{"name":"v","domains":["*"],"routes":[{"match":{"prefix":"/"}}]}]})",
                    "virtual_hosts[0].routes[0]: unsupported or missing action");
  expectConfigError(
      R"({"virtual_hosts":[{"name":"v","domains":["*"],"routes":[{"match":{},"route":{"cluster":"a"}}]}]})",
      "virtual_hosts[0].routes[0].match");
}

}  // namespace
}  // namespace skiff::router
