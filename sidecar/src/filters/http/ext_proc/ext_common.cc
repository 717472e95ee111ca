// Shared ext_proc/ext_authz helpers: mutation rules, list matchers, per-route lookup.
#include "filters/http/ext_proc/ext_common.h"

#include <re2/re2.h>

#include "envoy/config/common/mutation_rules/v3/mutation_rules.pb.h"
#include "envoy/config/route/v3/route_components.pb.h"
#include "envoy/type/matcher/v3/string.pb.h"
#include "skiff/router/route_table.h"

namespace skiff::filters::ext {

MutationChecker MutationChecker::fromProto(
    const envoy::config::common::mutation_rules::v3::HeaderMutationRules& proto, const std::string& path) {
  MutationChecker c;
  c.allow_all_routing_ = proto.allow_all_routing().value();
  c.allow_envoy_ = proto.allow_envoy().value();
  c.disallow_system_ = proto.disallow_system().value();
  c.disallow_all_ = proto.disallow_all().value();
  c.disallow_is_error_ = proto.disallow_is_error().value();
  if (proto.has_allow_expression()) {
    c.allow_expression_ = router::compileRegex(proto.allow_expression().regex(), path + ".allow_expression");
  }
  if (proto.has_disallow_expression()) {
    c.disallow_expression_ =
        router::compileRegex(proto.disallow_expression().regex(), path + ".disallow_expression");
  }
  return c;
}

bool MutationChecker::allowed(std::string_view name) const {
  if (disallow_all_) return false;
  if (disallow_expression_ && router::regexFullMatch(*disallow_expression_, name)) return false;
  if (allow_expression_ && router::regexFullMatch(*allow_expression_, name)) return true;
  const bool routing = name == ":authority" || name == ":method" || name == ":scheme" || name == "host";
  if (routing) return allow_all_routing_ && !(disallow_system_ && name[0] == ':');
  if (!name.empty() && name[0] == ':') return !disallow_system_;
  if (name.substr(0, 7) == "x-envoy") return allow_envoy_;
  return true;
}

MutationChecker::Result MutationChecker::checkSet(std::string_view name, std::string_view value) const {
  // Names and values that could not go on the wire are never accepted.
  if (name.empty()) return refuse();
  for (size_t i = 0; i < name.size(); ++i) {
    const char ch = name[i];
    if (ch == '\r' || ch == '\n' || ch == '\0' || ch == ' ' || (ch == ':' && i > 0)) return refuse();
  }
  for (char ch : value) {
    if (ch == '\r' || ch == '\n' || ch == '\0') return refuse();
  }
  return allowed(name) ? Result::kAllow : refuse();
}

MutationChecker::Result MutationChecker::checkRemove(std::string_view name) const {
  if (name.empty() || name[0] == ':' || name == "host") return refuse();
  return allowed(name) ? Result::kAllow : refuse();
}

ListMatcher ListMatcher::fromProto(const envoy::type::matcher::v3::ListStringMatcher& proto,
                                   const std::string& path) {
  ListMatcher m;
  for (int i = 0; i < proto.patterns_size(); ++i) {
    m.patterns_.push_back(
        router::StringMatcher::fromProto(proto.patterns(i), path + ".patterns[" + std::to_string(i) + "]"));
  }
  return m;
}

bool ListMatcher::matches(std::string_view value) const {
  for (const auto& p : patterns_) {
    if (p.match(value)) return true;
  }
  return false;
}

namespace {

const google::protobuf::Any* findIn(const router::TypedPerFilterConfig* map, const std::string& name,
                                    std::string_view well_known, std::string_view type_url) {
  if (map == nullptr || map->empty()) return nullptr;
  auto it = map->find(name);
  if (it == map->end()) it = map->find(std::string(well_known));
  if (it != map->end()) return &it->second;
  const google::protobuf::Any* found = nullptr;
  for (const auto& [key, any] : *map) {
    if (any.type_url() != type_url) continue;
    if (found != nullptr) return nullptr;  // ambiguous
    found = &any;
  }
  return found;
}

}  // namespace

const google::protobuf::Any* perRouteConfig(const router::RouteEntry* route, const std::string& filter_name,
                                            std::string_view well_known_name, std::string_view type_url,
                                            bool* disabled) {
  *disabled = false;
  if (route == nullptr) return nullptr;
  const std::string& name = filter_name.empty() ? std::string(well_known_name) : filter_name;
  const google::protobuf::Any* any = findIn(route->typed_per_filter_config, name, well_known_name, type_url);
  if (any == nullptr && route->virtual_host != nullptr) {
    any = findIn(route->virtual_host->typed_per_filter_config, name, well_known_name, type_url);
    if (any == nullptr && route->virtual_host->route_config != nullptr) {
      any =
          findIn(route->virtual_host->route_config->typed_per_filter_config, name, well_known_name, type_url);
    }
  }
  if (any == nullptr) return nullptr;
  if (any->Is<envoy::config::route::v3::FilterConfig>()) {
    // FilterConfig wraps the config; parsed per request, but only on routes that use the wrapper.
    thread_local envoy::config::route::v3::FilterConfig wrapper;
    if (!any->UnpackTo(&wrapper)) return nullptr;
    if (wrapper.disabled()) {
      *disabled = true;
      return nullptr;
    }
    return wrapper.has_config() ? &wrapper.config() : nullptr;
  }
  return any;
}

std::string headerValue(const std::string& value, const std::string& raw_value) {
  return raw_value.empty() ? value : raw_value;
}

}  // namespace skiff::filters::ext
