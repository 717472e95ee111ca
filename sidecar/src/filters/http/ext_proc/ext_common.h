// Pieces ext_proc and ext_authz share: Envoy's HeaderMutationRules checker, ListStringMatcher,
// per-route config lookup, and HeaderMap <-> config.core.v3.HeaderMap conversion.
#pragma once

#include <google/protobuf/any.pb.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "skiff/http/header_map.h"
#include "skiff/router/matchers.h"

namespace re2 {
class RE2;
}
namespace envoy::config::common::mutation_rules::v3 {
class HeaderMutationRules;
}
namespace envoy::config::core::v3 {
class HeaderMap;
}
namespace envoy::type::matcher::v3 {
class ListStringMatcher;
}
namespace skiff::router {
struct RouteEntry;
}

namespace skiff::filters::ext {

// Which header changes an external service may make (config.common.mutation_rules.v3).
class MutationChecker {
 public:
  enum class Result { kAllow, kIgnore, kError };
  MutationChecker() =
      default;  // Envoy's defaults: no routing (host, :authority, :method, :scheme), no x-envoy-*
  static MutationChecker fromProto(
      const envoy::config::common::mutation_rules::v3::HeaderMutationRules& proto, const std::string& path);
  // `name` lower-case. Setting or appending a header.
  Result checkSet(std::string_view name, std::string_view value) const;
  // Removing: ':'-prefixed headers and host can never be removed.
  Result checkRemove(std::string_view name) const;

 private:
  bool allowed(std::string_view name) const;
  Result refuse() const { return disallow_is_error_ ? Result::kError : Result::kIgnore; }
  bool allow_all_routing_ = false, allow_envoy_ = false, disallow_system_ = false, disallow_all_ = false,
       disallow_is_error_ = false;
  std::shared_ptr<const re2::RE2> allow_expression_, disallow_expression_;
};

// type.matcher.v3.ListStringMatcher: true when any pattern matches.
class ListMatcher {
 public:
  ListMatcher() = default;
  static ListMatcher fromProto(const envoy::type::matcher::v3::ListStringMatcher& proto,
                               const std::string& path);
  bool matches(std::string_view value) const;
  bool empty() const { return patterns_.empty(); }
  void add(router::StringMatcher m) { patterns_.push_back(std::move(m)); }

 private:
  std::vector<router::StringMatcher> patterns_;
};

// The route's (else virtual host's, else route table's) typed_per_filter_config entry for the filter,
// looked up by the filter's configured name, then the well-known name, then the only entry of `type_url`.
// `*disabled` is set for a FilterConfig wrapper with disabled: true. nullptr when none applies. The result
// may point into thread-local storage: unpack it before the next call.
const google::protobuf::Any* perRouteConfig(const router::RouteEntry* route, const std::string& filter_name,
                                            std::string_view well_known_name, std::string_view type_url,
                                            bool* disabled);

// Header value of a HeaderValue: raw_value when set, else value.
std::string headerValue(const std::string& value, const std::string& raw_value);

}  // namespace skiff::filters::ext
