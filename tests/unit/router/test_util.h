// Helpers for router tests: RouteConfiguration from JSON text, request header maps.
#pragma once

#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <initializer_list>
#include <memory>
#include <string>
#include <utility>

#include "envoy/config/route/v3/route.pb.h"
#include "skiff/http/header_map.h"
#include "skiff/router/route_table.h"

namespace skiff::router::testing {

inline envoy::config::route::v3::RouteConfiguration parseConfig(const std::string& json) {
  envoy::config::route::v3::RouteConfiguration config;
  const auto status = google::protobuf::util::JsonStringToMessage(json, &config);
  EXPECT_TRUE(status.ok()) << status.ToString() << "\n" << json;
  return config;
}

inline std::shared_ptr<const RouteTable> makeTable(const std::string& json) {
  return RouteTable::create(parseConfig(json));
}

// Wraps routes in one catch-all virtual host named "vh".
inline std::shared_ptr<const RouteTable> tableWithRoutes(const std::string& routes_json) {
  return makeTable(R"({"name":"rc","virtual_hosts":[{"name":"vh","domains":["*"],"routes":)" + routes_json +
                   "}]}");
}

inline http::HeaderMap request(
    std::string_view authority, std::string_view path,
    std::initializer_list<std::pair<std::string_view, std::string_view>> extra = {},
    std::string_view method = "GET") {
  http::HeaderMap h;
  h.add(":method", method);
  h.add(":path", path);
  h.add(":authority", authority);
  h.add(":scheme", "http");
  for (const auto& [k, v] : extra) h.add(k, v);
  return h;
}

// The route's name, or "<none>".
inline std::string routeName(const RouteTable& t, const http::HeaderMap& h, uint64_t random = 0) {
  const RouteEntry* e = t.route(h, random);
  return e ? e->name : "<none>";
}

// Expects create() to throw std::invalid_argument whose message contains `needle`.
inline void expectConfigError(const std::string& json, const std::string& needle) {
  try {
    makeTable(json);
    ADD_FAILURE() << "expected an error containing '" << needle << "'";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

}  // namespace skiff::router::testing
