// Header mutations: append actions, level order, most_specific_header_mutations_wins, formatters.
#include <gtest/gtest.h>

#include "test_util.h"

namespace skiff::router {
namespace {

using testing::expectConfigError;
using testing::makeTable;
using testing::request;

std::string levelsConfig(bool most_specific_wins) {
  return std::string(R"({"most_specific_header_mutations_wins":)") + (most_specific_wins ? "true" : "false") +
         R"(,
    "request_headers_to_add":[{"header":{"key":"x-level","value":"config"},"append_action":"OVERWRITE_IF_EXISTS_OR_ADD"},
                              {"header":{"key":"x-trail","value":"config"}}],
    "response_headers_to_add":[{"header":{"key":"x-resp","value":"config"},"append":false}],
    "response_headers_to_remove":["x-secret"],
    "virtual_hosts":[{"name":"v","domains":["*"],
      "request_headers_to_add":[{"header":{"key":"x-level","value":"vhost"},"append_action":"OVERWRITE_IF_EXISTS_OR_ADD"},
                                {"header":{"key":"x-trail","value":"vhost"}}],
      "response_headers_to_add":[{"header":{"key":"x-resp","value":"vhost"},"append":false}],
      "routes":[{"match":{"prefix":"/"},"route":{"weighted_clusters":{"clusters":[
          {"name":"a","weight":1,"request_headers_to_add":[{"header":{"key":"x-trail","value":"cluster"}}],
           "host_rewrite_literal":"cluster.host"}]}},
        "request_headers_to_add":[{"header":{"key":"x-level","value":"route"},"append_action":"OVERWRITE_IF_EXISTS_OR_ADD"},
                                  {"header":{"key":"x-trail","value":"route"}}],
        "request_headers_to_remove":["x-drop"],
        "response_headers_to_add":[{"header":{"key":"x-resp","value":"route"},"append":false}]}]}]})";
}

std::string values(const http::HeaderMap& h, std::string_view name) {
  std::string out;
  for (const auto& [k, v] : h) {
    if (k == name) out += (out.empty() ? "" : "|") + v;
  }
  return out;
}

TEST(RouterHeaderMutationsTest, LevelOrderLeastSpecificWinsByDefault) {
  auto t = makeTable(levelsConfig(false));
  auto h = request("h", "/", {{"x-drop", "1"}, {"x-level", "client"}});
  const RouteEntry* e = t->route(h, 0);
  e->finalizeRequestHeaders(h, e->pickWeightedCluster(h, 0));
  EXPECT_EQ(values(h, "x-level"), "config");  // applied route, vhost, config: the last overwrite wins
  EXPECT_EQ(values(h, "x-trail"), "cluster|route|vhost|config");
  EXPECT_EQ(h.get("x-drop"), nullptr);
  EXPECT_EQ(h.getOr(":authority"), "cluster.host");

  http::HeaderMap resp;
  resp.add(":status", "200");
  resp.add("x-secret", "s");
  resp.add("x-resp", "upstream");
  e->finalizeResponseHeaders(resp);
  EXPECT_EQ(values(resp, "x-resp"), "config");
  EXPECT_EQ(resp.get("x-secret"), nullptr);
}

TEST(RouterHeaderMutationsTest, MostSpecificWins) {
  auto t = makeTable(levelsConfig(true));
  auto h = request("h", "/");
  const RouteEntry* e = t->route(h, 0);
  e->finalizeRequestHeaders(h);
  EXPECT_EQ(values(h, "x-level"), "route");
  EXPECT_EQ(values(h, "x-trail"), "config|vhost|route");
  http::HeaderMap resp;
  e->finalizeResponseHeaders(resp);
  EXPECT_EQ(values(resp, "x-resp"), "route");
}

TEST(RouterHeaderMutationsTest, AppendActions) {
  auto t = makeTable(
      R"({"virtual_hosts":[{"domains":["*"],"routes":[{"match":{"prefix":"/"},"route":{"cluster":"a"},
      "request_headers_to_add":[
        {"header":{"key":"X-Append","value":"new"}},
        {"header":{"key":"x-if-absent","value":"new"},"append_action":"ADD_IF_ABSENT"},
        {"header":{"key":"x-absent-2","value":"new"},"append_action":"ADD_IF_ABSENT"},
        {"header":{"key":"x-overwrite","value":"new"},"append_action":"OVERWRITE_IF_EXISTS_OR_ADD"},
        {"header":{"key":"x-only-existing","value":"new"},"append_action":"OVERWRITE_IF_EXISTS"},
        {"header":{"key":"x-not-existing","value":"new"},"append_action":"OVERWRITE_IF_EXISTS"},
        {"header":{"key":"x-empty","value":""}},
        {"header":{"key":"x-empty-kept","value":""},"keep_empty_value":true},
        {"header":{"key":"x-legacy","value":"new"},"append":false}]}]}]})");
  auto h = request("h", "/",
                   {{"x-append", "old"},
                    {"x-if-absent", "old"},
                    {"x-overwrite", "old1"},
                    {"x-overwrite", "old2"},
                    {"x-only-existing", "old"},
                    {"x-legacy", "old"}});
  t->route(h, 0)->finalizeRequestHeaders(h);
  EXPECT_EQ(values(h, "x-append"), "old|new");
  EXPECT_EQ(values(h, "x-if-absent"), "old");
  EXPECT_EQ(values(h, "x-absent-2"), "new");
  EXPECT_EQ(values(h, "x-overwrite"), "new");
  EXPECT_EQ(values(h, "x-only-existing"), "new");
  EXPECT_EQ(h.get("x-not-existing"), nullptr);
  EXPECT_EQ(h.get("x-empty"), nullptr);
  EXPECT_EQ(h.count("x-empty-kept"), 1u);
  EXPECT_EQ(values(h, "x-legacy"), "new");
}

TEST(RouterHeaderMutationsTest, Formatters) {
  auto t = makeTable(
      R"({"virtual_hosts":[{"domains":["*"],"routes":[{"match":{"prefix":"/"},"route":{"cluster":"a"},
      "request_headers_to_add":[
        {"header":{"key":"x-client","value":"%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"}},
        {"header":{"key":"x-peer","value":"peer=%DOWNSTREAM_REMOTE_ADDRESS% up=%UPSTREAM_REMOTE_ADDRESS% 100%%"}},
        {"header":{"key":"x-copy","value":"%REQ(X-Src)%"}},
        {"header":{"key":"x-unknown","value":"%NOT_A_THING%"}}]}]}]})");
  http::StreamInfo si;
  si.downstream_remote_address = "10.0.0.1:5555";
  si.upstream_host = "10.0.0.2:80";
  auto h = request("h", "/", {{"x-src", "copied"}});
  FormatterContext ctx{&si, &h};
  t->route(h, 0)->finalizeRequestHeaders(h, nullptr, &ctx);
  EXPECT_EQ(h.getOr("x-client"), "10.0.0.1");
  EXPECT_EQ(h.getOr("x-peer"), "peer=10.0.0.1:5555 up=10.0.0.2:80 100%");
  EXPECT_EQ(h.getOr("x-copy"), "copied");
  EXPECT_EQ(h.getOr("x-unknown"), "%NOT_A_THING%");

  auto bare = request("h", "/");
  t->route(bare, 0)->finalizeRequestHeaders(bare);  // no context: formatted values are empty, not added
  EXPECT_EQ(bare.get("x-client"), nullptr);
  EXPECT_EQ(bare.getOr("x-peer"), "peer= up= 100%");
}

TEST(RouterHeaderMutationsTest, PseudoHeadersRejected) {
  expectConfigError(
      R"({"virtual_hosts":[{"domains":["*"],"request_headers_to_add":[{"header":{"key":":path","value":"x"}}]}]})",
      "virtual_hosts[0].request_headers_to_add[0].header.key");
  expectConfigError(R"({"request_headers_to_remove":["Host"],"virtual_hosts":[]})",
                    "request_headers_to_remove[0]");
}

}  // namespace
}  // namespace skiff::router
