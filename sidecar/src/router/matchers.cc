// String, header and query-parameter matchers compiled from Envoy's matcher protos.
#include "skiff/router/matchers.h"

#include <re2/re2.h>

#include <charconv>
#include <stdexcept>

#include "envoy/config/route/v3/route_components.pb.h"
#include "envoy/type/matcher/v3/regex.pb.h"
#include "envoy/type/matcher/v3/string.pb.h"

namespace skiff::router {

namespace {

inline char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}

bool startsWith(std::string_view s, std::string_view p, bool ic) {
  if (s.size() < p.size()) return false;
  return ic ? http::equalsIgnoreCase(s.substr(0, p.size()), p) : s.substr(0, p.size()) == p;
}

bool endsWith(std::string_view s, std::string_view p, bool ic) {
  if (s.size() < p.size()) return false;
  std::string_view tail = s.substr(s.size() - p.size());
  return ic ? http::equalsIgnoreCase(tail, p) : tail == p;
}

// `needle` is lower-cased already when ic.
bool contains(std::string_view s, std::string_view needle, bool ic) {
  if (!ic) return s.find(needle) != std::string_view::npos;
  if (needle.empty()) return true;
  for (size_t i = 0; i + needle.size() <= s.size(); ++i) {
    size_t j = 0;
    while (j < needle.size() && lower(s[i + j]) == needle[j]) ++j;
    if (j == needle.size()) return true;
  }
  return false;
}

[[noreturn]] void fail(const std::string& path, const std::string& msg) {
  throw std::invalid_argument(path + ": " + msg);
}

}  // namespace

std::shared_ptr<const re2::RE2> compileRegex(const std::string& pattern, const std::string& path) {
  RE2::Options opts;
  opts.set_log_errors(false);
  auto re = std::make_shared<const re2::RE2>(pattern, opts);
  if (!re->ok()) fail(path, "invalid regex '" + pattern + "': " + re->error());
  return re;
}

std::shared_ptr<const re2::RE2> compileRegex(const envoy::type::matcher::v3::RegexMatcher& proto,
                                             const std::string& path) {
  return compileRegex(proto.regex(), path + ".regex");
}

bool regexFullMatch(const re2::RE2& re, std::string_view value) {
  return re2::RE2::FullMatch(re2::StringPiece(value.data(), value.size()), re);
}

StringMatcher::StringMatcher(Kind kind, std::string value, bool ignore_case)
    : kind_(kind), value_(std::move(value)), ignore_case_(ignore_case) {
  if (ignore_case_) http::toLowerInPlace(value_);
  if (kind_ == Kind::kRegex) regex_ = compileRegex(value_, "regex");
}

StringMatcher StringMatcher::fromProto(const envoy::type::matcher::v3::StringMatcher& proto,
                                       const std::string& path) {
  using P = envoy::type::matcher::v3::StringMatcher;
  StringMatcher m;
  m.ignore_case_ = proto.ignore_case();
  switch (proto.match_pattern_case()) {
    case P::kExact:
      m.kind_ = Kind::kExact;
      m.value_ = proto.exact();
      break;
    case P::kPrefix:
      m.kind_ = Kind::kPrefix;
      m.value_ = proto.prefix();
      break;
    case P::kSuffix:
      m.kind_ = Kind::kSuffix;
      m.value_ = proto.suffix();
      break;
    case P::kContains:
      m.kind_ = Kind::kContains;
      m.value_ = proto.contains();
      break;
    case P::kSafeRegex:
      m.kind_ = Kind::kRegex;
      m.ignore_case_ = false;  // Envoy ignores ignore_case for regexes
      m.regex_ = compileRegex(proto.safe_regex(), path + ".safe_regex");
      return m;
    default:
      fail(path, "unsupported or missing match_pattern");
  }
  if (m.ignore_case_) http::toLowerInPlace(m.value_);
  return m;
}

bool StringMatcher::match(std::string_view v) const {
  switch (kind_) {
    case Kind::kExact:
      return ignore_case_ ? http::equalsIgnoreCase(v, value_) : v == value_;
    case Kind::kPrefix:
      return startsWith(v, value_, ignore_case_);
    case Kind::kSuffix:
      return endsWith(v, value_, ignore_case_);
    case Kind::kContains:
      return contains(v, value_, ignore_case_);
    case Kind::kRegex:
      return regex_ && regexFullMatch(*regex_, v);
  }
  return false;
}

HeaderMatcher HeaderMatcher::fromProto(const envoy::config::route::v3::HeaderMatcher& proto,
                                       const std::string& path) {
  using P = envoy::config::route::v3::HeaderMatcher;
  HeaderMatcher m;
  m.name_ = proto.name();
  http::toLowerInPlace(m.name_);
  if (m.name_.empty()) fail(path + ".name", "header name must not be empty");
  m.invert_ = proto.invert_match();
  m.treat_missing_as_empty_ = proto.treat_missing_header_as_empty();
  switch (proto.header_match_specifier_case()) {
    case P::kExactMatch:
      m.kind_ = Kind::kValue;
      m.exact_ = proto.exact_match();
      break;
    case P::kSafeRegexMatch:
      m.kind_ = Kind::kMatcher;
      m.matcher_.kind_ = StringMatcher::Kind::kRegex;
      m.matcher_.regex_ = compileRegex(proto.safe_regex_match(), path + ".safe_regex_match");
      break;
    case P::kRangeMatch:
      m.kind_ = Kind::kRange;
      m.range_start_ = proto.range_match().start();
      m.range_end_ = proto.range_match().end();
      break;
    case P::kPresentMatch:
      m.kind_ = Kind::kPresent;
      m.present_ = proto.present_match();
      break;
    case P::kPrefixMatch:
      m.kind_ = Kind::kMatcher;
      m.matcher_ = StringMatcher(StringMatcher::Kind::kPrefix, proto.prefix_match());
      break;
    case P::kSuffixMatch:
      m.kind_ = Kind::kMatcher;
      m.matcher_ = StringMatcher(StringMatcher::Kind::kSuffix, proto.suffix_match());
      break;
    case P::kContainsMatch:
      m.kind_ = Kind::kMatcher;
      m.matcher_ = StringMatcher(StringMatcher::Kind::kContains, proto.contains_match());
      break;
    case P::kStringMatch:
      m.kind_ = Kind::kMatcher;
      m.matcher_ = StringMatcher::fromProto(proto.string_match(), path + ".string_match");
      break;
    default:  // no specifier: the header must be present
      m.kind_ = Kind::kPresent;
      m.present_ = true;
      break;
  }
  return m;
}

bool HeaderMatcher::matchValue(std::string_view value) const {
  switch (kind_) {
    case Kind::kPresent:
      return present_;
    case Kind::kValue:
      return exact_.empty() || value == exact_;
    case Kind::kRange: {
      int64_t n = 0;
      auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc() || ptr != value.data() + value.size() || value.empty()) return false;
      return n >= range_start_ && n < range_end_;
    }
    case Kind::kMatcher:
      return matcher_.match(value);
  }
  return false;
}

bool HeaderMatcher::matches(const http::HeaderMap& headers) const {
  bool result = false;
  const bool found = withJoinedHeader(headers, name_, [&](std::string_view v) { result = matchValue(v); });
  if (!found) {
    if (!treat_missing_as_empty_) {
      // A missing header matches only "present_match: false" (or its inversion).
      const bool absent_ok = kind_ == Kind::kPresent && !present_;
      const bool inverted_ok = kind_ == Kind::kPresent && present_;
      return invert_ ? inverted_ok : absent_ok;
    }
    result = matchValue("");
  }
  return result != invert_;
}

bool findQueryParameter(std::string_view query, std::string_view name, std::string_view* value) {
  while (!query.empty()) {
    const size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    const size_t eq = pair.find('=');
    std::string_view key = pair.substr(0, eq);
    if (key != name) continue;
    *value = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    return true;
  }
  return false;
}

QueryParameterMatcher QueryParameterMatcher::fromProto(
    const envoy::config::route::v3::QueryParameterMatcher& proto, const std::string& path) {
  QueryParameterMatcher m;
  m.name_ = proto.name();
  if (m.name_.empty()) fail(path + ".name", "query parameter name must not be empty");
  if (proto.has_string_match()) {
    m.has_matcher_ = true;
    m.matcher_ = StringMatcher::fromProto(proto.string_match(), path + ".string_match");
  }
  return m;
}

bool QueryParameterMatcher::matches(std::string_view query) const {
  std::string_view value;
  if (!findQueryParameter(query, name_, &value)) return false;
  return !has_matcher_ || matcher_.match(value);
}

}  // namespace skiff::router
