// Compiled envoy.config.route.v3.RouteMatch: path specifier, case sensitivity, headers, query parameters,
// gRPC and runtime fraction. Evaluated per request without allocating (except for repeated headers).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "skiff/http/header_map.h"
#include "skiff/router/matchers.h"

namespace envoy::config::route::v3 {
class RouteMatch;
}

namespace skiff::router {

// The request fields every route looks at, split once per request.
struct MatchInput {
  explicit MatchInput(const http::HeaderMap& request);
  const http::HeaderMap& headers;
  bool has_path;
  std::string_view path;           // full :path
  std::string_view path_no_query;  // up to the first '?'
  std::string_view query;          // after '?', without any '#fragment'
  std::string_view method;
};

class RouteMatch {
 public:
  enum class PathKind { kPrefix, kPath, kRegex, kSeparatedPrefix, kConnect };

  // Throws std::invalid_argument naming `path` (e.g. "virtual_hosts[0].routes[2].match.safe_regex.regex").
  static RouteMatch fromProto(const envoy::config::route::v3::RouteMatch& proto, const std::string& path);

  // `random` drives runtime_fraction (Envoy: random % denominator < numerator).
  bool matches(const MatchInput& in, uint64_t random) const;
  bool matches(const http::HeaderMap& request, uint64_t random) const {
    return matches(MatchInput(request), random);
  }

  // Appends the names of the request headers matches() reads besides :path and :method (header
  // matchers, content-type for grpc), lower-case.
  void addHeaderNames(std::vector<std::string>& out) const;
  // The config also names inputs other than request headers (tls_context, dynamic_metadata, or fields this
  // build does not know, e.g. filter_state): matches() ignores them, but what a route depends on is then
  // not a list of header names, so a header change must always route again (fail-safe).
  bool readsOtherInputs() const { return reads_other_inputs_; }

  PathKind pathKind() const { return kind_; }
  // The configured prefix or path (empty for regex/CONNECT).
  const std::string& value() const { return value_; }

 private:
  bool pathMatches(std::string_view path_no_query, std::string_view full_path) const;

  PathKind kind_ = PathKind::kPrefix;
  std::string value_;  // prefix or path
  bool case_sensitive_ = true;
  std::shared_ptr<const re2::RE2> regex_;
  // Every string the regex fully matches lies in [regex_min_, regex_max_]: a cheap early reject.
  bool has_regex_range_ = false;
  std::string regex_min_, regex_max_;
  std::vector<HeaderMatcher> headers_;
  std::vector<QueryParameterMatcher> query_;
  bool grpc_ = false;
  bool has_fraction_ = false;
  uint32_t numerator_ = 0;
  uint32_t denominator_ = 100;
  bool reads_other_inputs_ = false;
};

// Splits ":path" at the first '?'.
inline std::string_view pathWithoutQuery(std::string_view path) {
  const size_t q = path.find('?');
  return q == std::string_view::npos ? path : path.substr(0, q);
}

}  // namespace skiff::router
