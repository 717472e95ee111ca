// Lua filter config: the Lua proto → LuaConfig factory, DataSource reading, per-route overrides.
#include "filters/http/lua/lua_config.h"

#include <stdexcept>

#include "envoy/config/route/v3/route_components.pb.h"
#include "envoy/extensions/filters/http/lua/v3/lua.pb.h"
#include "filters/http/lua/lua_filter.h"
#include "skiff/config/data_source.h"
#include "skiff/extensions/filters/http/lua/v1/lua.pb.h"
#include "skiff/router/route_table.h"

namespace skiff::filters::lua {

using LuaProto = envoy::extensions::filters::http::lua::v3::Lua;
using LuaPerRouteProto = envoy::extensions::filters::http::lua::v3::LuaPerRoute;
using SkiffLuaProto = skiff::extensions::filters::http::lua::v1::Lua;

constexpr std::string_view kEnvoyType = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua";
constexpr std::string_view kSkiffType = "type.googleapis.com/skiff.extensions.filters.http.lua.v1.Lua";

std::string readDataSource(const envoy::config::core::v3::DataSource& source, const std::string& what) {
  return skiff::config::readDataSource(source, what, skiff::config::IfUnset::kError);
}

namespace {

constexpr std::string_view kPerRouteType =
    "type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute";

const std::string& wellKnownName() {
  static const std::string name(kFilterName);
  return name;
}

// The entry under the filter's configured name, else the well-known name, else the only LuaPerRoute entry.
const google::protobuf::Any* findPerFilter(const router::TypedPerFilterConfig* map, const std::string& name) {
  if (map == nullptr || map->empty()) return nullptr;
  auto it = map->find(name);
  if (it == map->end() && name != wellKnownName()) it = map->find(wellKnownName());
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

std::optional<PerRouteChoice> perRouteChoice(const router::RouteEntry* route,
                                             const std::string& filter_name) {
  if (route == nullptr) return std::nullopt;
  // The usual case, no per-filter configs at any level, without the lookups.
  auto none = [](const router::TypedPerFilterConfig* m) { return m == nullptr || m->empty(); };
  const router::VirtualHost* vh = route->virtual_host;
  if (none(route->typed_per_filter_config) &&
      (vh == nullptr || (none(vh->typed_per_filter_config) &&
                         (vh->route_config == nullptr || none(vh->route_config->typed_per_filter_config))))) {
    return std::nullopt;
  }
  const google::protobuf::Any* any = findPerFilter(route->typed_per_filter_config, filter_name);
  if (any == nullptr && route->virtual_host != nullptr) {
    any = findPerFilter(route->virtual_host->typed_per_filter_config, filter_name);
    if (any == nullptr && route->virtual_host->route_config != nullptr) {
      any = findPerFilter(route->virtual_host->route_config->typed_per_filter_config, filter_name);
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

namespace {

std::shared_ptr<LuaConfig> buildConfig(const LuaProto& proto, const FactoryContext& context,
                                       uint64_t instruction_budget) {
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
  auto lua_config = std::make_shared<LuaConfig>(std::move(sources), stats, instruction_budget);
  if (proto.has_clear_route_cache()) lua_config->setClearRouteCache(proto.clear_route_cache().value());
  if (!context.filter_name.empty()) lua_config->setFilterName(context.filter_name);
  return lua_config;
}

}  // namespace

http::FilterFactorySharedPtr createLuaFilterFactory(const google::protobuf::Any& config,
                                                    const FactoryContext& context) {
  if (config.type_url() == kSkiffType) {
    SkiffLuaProto skiff;
    if (!config.UnpackTo(&skiff)) throw std::invalid_argument("lua: typed_config is not a Skiff Lua message");
    if (skiff.has_instruction_budget() && skiff.instruction_budget().value() == 0) {
      throw std::invalid_argument("lua: instruction_budget must be greater than 0");
    }
    auto lua_config = buildConfig(
        skiff.lua(), context,
        skiff.has_instruction_budget() ? skiff.instruction_budget().value() : kDefaultInstructionBudget);
    lua_config->setFailClosed(skiff.fail_closed());
    return lua_config;
  }
  LuaProto proto;
  if (!config.UnpackTo(&proto)) throw std::invalid_argument("lua: typed_config is not a Lua message");
  return buildConfig(proto, context, kDefaultInstructionBudget);
}

void registerLuaFilter() {
  registerHttpFilter(HttpFilterRegistration{std::string(kFilterName), std::string(kEnvoyType),
                                            createLuaFilterFactory, false});
  // Skiff's extension (fail_closed, instruction_budget), under the same name: only @type changes.
  registerHttpFilter(HttpFilterRegistration{std::string(kFilterName), std::string(kSkiffType),
                                            createLuaFilterFactory, false});
}

}  // namespace skiff::filters::lua
