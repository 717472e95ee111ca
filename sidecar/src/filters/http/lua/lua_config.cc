// Lua filter config: the Lua proto → LuaConfig factory, DataSource reading, per-route overrides.
#include "filters/http/lua/lua_config.h"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "envoy/config/route/v3/route_components.pb.h"
#include "envoy/extensions/filters/http/lua/v3/lua.pb.h"
#include "filters/http/lua/lua_filter.h"
#include "skiff/router/route_table.h"

namespace skiff::filters::lua {

using LuaProto = envoy::extensions::filters::http::lua::v3::Lua;
using LuaPerRouteProto = envoy::extensions::filters::http::lua::v3::LuaPerRoute;

std::string readDataSource(const envoy::config::core::v3::DataSource& source, const std::string& what) {
  using DS = envoy::config::core::v3::DataSource;
  switch (source.specifier_case()) {
    case DS::kInlineString:
      return source.inline_string();
    case DS::kInlineBytes:
      return source.inline_bytes();
    case DS::kFilename: {
      std::ifstream in(source.filename(), std::ios::binary);
      if (!in) throw std::invalid_argument(what + ": cannot read file '" + source.filename() + "'");
      std::ostringstream out;
      out << in.rdbuf();
      return out.str();
    }
    case DS::kEnvironmentVariable: {
      const char* v = std::getenv(source.environment_variable().c_str());
      if (v == nullptr) {
        throw std::invalid_argument(what + ": environment variable '" + source.environment_variable() +
                                    "' is not set");
      }
      return v;
    }
    case DS::SPECIFIER_NOT_SET:
      break;
  }
  throw std::invalid_argument(what + ": data source has no specifier");
}

namespace {

constexpr std::string_view kPerRouteType =
    "type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute";

// The entry under the well-known filter name, else the only LuaPerRoute entry (the filter's configured
// name is not known here).
const google::protobuf::Any* findPerFilter(const router::TypedPerFilterConfig* map) {
  if (map == nullptr) return nullptr;
  auto it = map->find(std::string(kFilterName));
  if (it != map->end()) return &it->second;
  const google::protobuf::Any* found = nullptr;
  for (const auto& [name, any] : *map) {
    if (any.type_url() != kPerRouteType) continue;
    if (found != nullptr) return nullptr;  // ambiguous
    found = &any;
  }
  return found;
}

}  // namespace

std::optional<PerRouteChoice> perRouteChoice(const router::RouteEntry* route) {
  if (route == nullptr) return std::nullopt;
  const google::protobuf::Any* any = findPerFilter(route->typed_per_filter_config);
  if (any == nullptr && route->virtual_host != nullptr) {
    any = findPerFilter(route->virtual_host->typed_per_filter_config);
    if (any == nullptr && route->virtual_host->route_config != nullptr) {
      any = findPerFilter(route->virtual_host->route_config->typed_per_filter_config);
    }
  }
  if (any == nullptr) return std::nullopt;
  envoy::config::route::v3::FilterConfig wrapper;  // typed_per_filter_config may wrap the config
  if (any->Is<envoy::config::route::v3::FilterConfig>() && any->UnpackTo(&wrapper)) {
    if (wrapper.disabled()) return PerRouteChoice{PerRouteChoice::kDisabled, {}};
    any = &wrapper.config();
  }
  LuaPerRouteProto per_route;
  if (!any->UnpackTo(&per_route)) return std::nullopt;
  switch (per_route.override_case()) {
    case LuaPerRouteProto::kDisabled:
      return PerRouteChoice{PerRouteChoice::kDisabled, {}};
    case LuaPerRouteProto::kName:
      return PerRouteChoice{PerRouteChoice::kName, per_route.name()};
    case LuaPerRouteProto::kSourceCode:
      try {
        return PerRouteChoice{PerRouteChoice::kInline,
                              readDataSource(per_route.source_code(), "LuaPerRoute.source_code")};
      } catch (const std::invalid_argument&) {
        return PerRouteChoice{PerRouteChoice::kDisabled, {}};
      }
    case LuaPerRouteProto::OVERRIDE_NOT_SET:
      break;
  }
  return std::nullopt;
}

http::FilterFactorySharedPtr createLuaFilterFactory(const google::protobuf::Any& config,
                                                    const FactoryContext& context) {
  LuaProto proto;
  if (!config.UnpackTo(&proto)) throw std::invalid_argument("lua: typed_config is not a Lua message");
  if (!proto.inline_code().empty() && proto.has_default_source_code()) {
    throw std::invalid_argument("lua: only one of inline_code and default_source_code may be set");
  }
  std::map<std::string, std::string> sources;
  if (!proto.inline_code().empty()) sources[""] = proto.inline_code();
  if (proto.has_default_source_code()) {
    sources[""] = readDataSource(proto.default_source_code(), "lua: default_source_code");
  }
  for (const auto& [name, source] : proto.source_codes()) {
    if (name.empty()) throw std::invalid_argument("lua: source_codes keys must not be empty");
    sources[name] = readDataSource(source, "lua: source_codes['" + name + "']");
  }
  // Envoy's names: <hcm prefix>lua.errors, or <hcm prefix>lua.<stat_prefix>.errors.
  std::string prefix = context.stat_prefix + "lua.";
  if (!proto.stat_prefix().empty()) prefix += proto.stat_prefix() + ".";
  LuaStats stats{context.stats.counter(prefix + "errors"), context.stats.counter(prefix + "executions"),
                 context.stats.counter(prefix + "instruction_budget_exceeded"),
                 context.stats.gauge(prefix + "memory_bytes")};
  auto lua_config = std::make_shared<LuaConfig>(std::move(sources), stats);
  if (proto.has_clear_route_cache()) lua_config->setClearRouteCache(proto.clear_route_cache().value());
  return lua_config;
}

void registerLuaFilter() {
  registerHttpFilter(HttpFilterRegistration{std::string(kFilterName),
                                            "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                                            createLuaFilterFactory, false});
}

}  // namespace skiff::filters::lua
