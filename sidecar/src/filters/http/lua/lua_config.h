// Turning the Lua filter's protos into scripts: DataSource reading and the LuaPerRoute choice of a route.
#pragma once

#include <optional>
#include <string>

namespace envoy::config::core::v3 {
class DataSource;
}
namespace skiff::router {
struct RouteEntry;
}

namespace skiff::filters::lua {

// The bytes of a DataSource (inline string/bytes, file, environment variable). Throws
// std::invalid_argument naming `what` when it cannot be read.
std::string readDataSource(const envoy::config::core::v3::DataSource& source, const std::string& what);

// A route's LuaPerRoute override (route, else virtual host, else route configuration).
struct PerRouteChoice {
  enum Kind { kDisabled, kName, kInline };
  Kind kind;
  std::string value;  // script name or inline code
};
// `filter_name`: the filter's name in the HCM config, looked up first (then kFilterName, then the only
// LuaPerRoute entry).
std::optional<PerRouteChoice> perRouteChoice(const router::RouteEntry* route, const std::string& filter_name);

}  // namespace skiff::filters::lua
