// Compiled forms of Envoy's StringMatcher, HeaderMatcher and QueryParameterMatcher: built once from the
// protos (regexes precompiled with RE2), evaluated per request without allocating.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "skiff/http/header_map.h"

namespace re2 {
class RE2;
}

namespace envoy::type::matcher::v3 {
class StringMatcher;
class RegexMatcher;
}  // namespace envoy::type::matcher::v3

namespace envoy::config::route::v3 {
class HeaderMatcher;
class QueryParameterMatcher;
}  // namespace envoy::config::route::v3

namespace skiff::router {

// Compiles an Envoy RegexMatcher; throws std::invalid_argument("<path>.regex: <RE2 error>").
std::shared_ptr<const re2::RE2> compileRegex(const envoy::type::matcher::v3::RegexMatcher& proto,
                                             const std::string& path);
std::shared_ptr<const re2::RE2> compileRegex(const std::string& pattern, const std::string& path);
// RE2 full match of the whole value.
bool regexFullMatch(const re2::RE2& re, std::string_view value);

// envoy.type.matcher.v3.StringMatcher: exact / prefix / suffix / contains (with ignore_case) / safe_regex.
class StringMatcher {
 public:
  enum class Kind { kExact, kPrefix, kSuffix, kContains, kRegex };
  StringMatcher() = default;
  StringMatcher(Kind kind, std::string value, bool ignore_case = false);
  // Throws std::invalid_argument naming `path` on an unsupported or bad matcher.
  static StringMatcher fromProto(const envoy::type::matcher::v3::StringMatcher& proto,
                                 const std::string& path);

  bool match(std::string_view value) const;

 private:
  friend class HeaderMatcher;
  Kind kind_ = Kind::kExact;
  std::string value_;  // lower-cased when ignore_case_
  bool ignore_case_ = false;
  std::shared_ptr<const re2::RE2> regex_;
};

// envoy.config.route.v3.HeaderMatcher. Several values of one header are joined with "," before matching,
// as Envoy does since CVE-2020-25017.
class HeaderMatcher {
 public:
  static HeaderMatcher fromProto(const envoy::config::route::v3::HeaderMatcher& proto,
                                 const std::string& path);
  bool matches(const http::HeaderMap& headers) const;
  const std::string& name() const { return name_; }

 private:
  enum class Kind { kPresent, kValue, kRange, kMatcher };
  bool matchValue(std::string_view value) const;

  std::string name_;
  Kind kind_ = Kind::kPresent;
  bool present_ = true;  // for kPresent
  std::string exact_;    // for kValue (deprecated exact_match; empty matches any value)
  int64_t range_start_ = 0, range_end_ = 0;
  StringMatcher matcher_;  // prefix/suffix/contains/regex/string_match
  bool invert_ = false;
  bool treat_missing_as_empty_ = false;
};

// envoy.config.route.v3.QueryParameterMatcher on the raw (not percent-decoded) query string.
class QueryParameterMatcher {
 public:
  static QueryParameterMatcher fromProto(const envoy::config::route::v3::QueryParameterMatcher& proto,
                                         const std::string& path);
  // `query` is the part of :path after '?', without the '?'.
  bool matches(std::string_view query) const;

 private:
  std::string name_;
  bool has_matcher_ = false;
  StringMatcher matcher_;
};

// First value of query parameter `name` in `query` (no '?'); false when absent. Value is raw.
bool findQueryParameter(std::string_view query, std::string_view name, std::string_view* value);

// Calls `fn(value)` with the value of header `name`, joining several values with ","; returns false
// (without calling) when the header is absent. Allocates only when the header repeats.
template <typename Fn>
bool withJoinedHeader(const http::HeaderMap& headers, std::string_view name, Fn&& fn) {
  const std::string* first = nullptr;
  std::string joined;
  bool repeated = false;
  for (const auto& [k, v] : headers) {
    if (k.size() != name.size() || !http::equalsIgnoreCase(k, name)) continue;
    if (first == nullptr) {
      first = &v;
    } else {
      if (!repeated) joined = *first;
      repeated = true;
      joined += ',';
      joined += v;
    }
  }
  if (first == nullptr) return false;
  fn(repeated ? std::string_view(joined) : std::string_view(*first));
  return true;
}

}  // namespace skiff::router
