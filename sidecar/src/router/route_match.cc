// RouteMatch: compiling and evaluating one route's match conditions.
#include "skiff/router/route_match.h"

#include <re2/re2.h>

#include <stdexcept>

#include "envoy/config/route/v3/route_components.pb.h"
#include "skiff/common/logging.h"

namespace skiff::router {

namespace {

bool startsWith(std::string_view s, std::string_view p, bool case_sensitive) {
  if (s.size() < p.size()) return false;
  return case_sensitive ? s.substr(0, p.size()) == p : http::equalsIgnoreCase(s.substr(0, p.size()), p);
}

bool isGrpcContentType(std::string_view ct) {
  // "application/grpc" exactly or "application/grpc+proto" etc; not grpc-web.
  constexpr std::string_view kGrpc = "application/grpc";
  if (ct.substr(0, kGrpc.size()) != kGrpc) return false;
  return ct.size() == kGrpc.size() || ct[kGrpc.size()] == '+';
}

uint32_t denominatorValue(int d) {
  switch (d) {
    case 1:
      return 10000;
    case 2:
      return 1000000;
    default:
      return 100;
  }
}

}  // namespace

RouteMatch RouteMatch::fromProto(const envoy::config::route::v3::RouteMatch& proto, const std::string& path) {
  using P = envoy::config::route::v3::RouteMatch;
  RouteMatch m;
  m.case_sensitive_ = !proto.has_case_sensitive() || proto.case_sensitive().value();
  switch (proto.path_specifier_case()) {
    case P::kPrefix:
      m.kind_ = PathKind::kPrefix;
      m.value_ = proto.prefix();
      break;
    case P::kPath:
      m.kind_ = PathKind::kPath;
      m.value_ = proto.path();
      break;
    case P::kSafeRegex:
      m.kind_ = PathKind::kRegex;
      m.regex_ = compileRegex(proto.safe_regex(), path + ".safe_regex");
      m.has_regex_range_ = m.regex_->PossibleMatchRange(&m.regex_min_, &m.regex_max_, 16);
      break;
    case P::kPathSeparatedPrefix:
      m.kind_ = PathKind::kSeparatedPrefix;
      m.value_ = proto.path_separated_prefix();
      if (m.value_.find_first_of("?#") != std::string::npos ||
          (!m.value_.empty() && m.value_.back() == '/')) {
        throw std::invalid_argument(path + ".path_separated_prefix: must not contain '?', '#' or end in '/'");
      }
      break;
    case P::kConnectMatcher:
      m.kind_ = PathKind::kConnect;
      break;
    default:
      throw std::invalid_argument(path + ": unsupported or missing path specifier");
  }
  for (int i = 0; i < proto.headers_size(); ++i) {
    m.headers_.push_back(
        HeaderMatcher::fromProto(proto.headers(i), path + ".headers[" + std::to_string(i) + "]"));
  }
  for (int i = 0; i < proto.query_parameters_size(); ++i) {
    m.query_.push_back(QueryParameterMatcher::fromProto(
        proto.query_parameters(i), path + ".query_parameters[" + std::to_string(i) + "]"));
  }
  m.grpc_ = proto.has_grpc();
  // Ignored at match time (as before), but recorded: see readsOtherInputs(). Unknown fields are what a
  // binary xDS RouteMatch carries for matchers this build's proto lacks (filter_state, ...).
  m.reads_other_inputs_ = proto.has_tls_context() || proto.dynamic_metadata_size() > 0 ||
                          !proto.GetReflection()->GetUnknownFields(proto).empty();
  if (m.reads_other_inputs_) {
    SKIFF_LOG(kRouter, warn, "{}: tls_context/dynamic_metadata/unknown matchers are not evaluated", path);
  }
  if (proto.has_runtime_fraction()) {
    m.has_fraction_ = true;
    m.numerator_ = proto.runtime_fraction().default_value().numerator();
    m.denominator_ = denominatorValue(proto.runtime_fraction().default_value().denominator());
  }
  return m;
}

bool RouteMatch::pathMatches(std::string_view path_no_query, std::string_view full_path) const {
  switch (kind_) {
    case PathKind::kPrefix:
      return startsWith(full_path, value_, case_sensitive_);
    case PathKind::kPath:
      return path_no_query.size() == value_.size() && startsWith(path_no_query, value_, case_sensitive_);
    case PathKind::kRegex:
      if (has_regex_range_ && (path_no_query < regex_min_ || path_no_query > regex_max_)) return false;
      return regexFullMatch(*regex_, path_no_query);
    case PathKind::kSeparatedPrefix:
      if (!startsWith(path_no_query, value_, case_sensitive_)) return false;
      return path_no_query.size() == value_.size() || path_no_query[value_.size()] == '/';
    case PathKind::kConnect:
      return true;
  }
  return false;
}

MatchInput::MatchInput(const http::HeaderMap& request) : headers(request) {
  // One pass over the headers for the pseudo-headers every route may need.
  const std::string* p = nullptr;
  const std::string* m = nullptr;
  for (const auto& [k, v] : request) {
    if (k.empty() || k[0] != ':') continue;
    if (p == nullptr && k == http::headers::kPath) p = &v;
    if (m == nullptr && k == http::headers::kMethod) m = &v;
  }
  has_path = p != nullptr;
  if (p != nullptr) path = *p;
  if (m != nullptr) method = *m;
  path_no_query = pathWithoutQuery(path);
  if (path_no_query.size() < path.size()) {
    query = path.substr(path_no_query.size() + 1);
    const size_t frag = query.find('#');
    if (frag != std::string_view::npos) query = query.substr(0, frag);
  }
}

void RouteMatch::addHeaderNames(std::vector<std::string>& out) const {
  for (const HeaderMatcher& h : headers_) out.push_back(h.name());
  if (grpc_) out.emplace_back(http::headers::kContentType);
}

bool RouteMatch::matches(const MatchInput& in, uint64_t random) const {
  if (kind_ == PathKind::kConnect) {
    if (in.method != "CONNECT") return false;
  } else {
    if (!in.has_path || !pathMatches(in.path_no_query, in.path)) return false;
  }
  if (has_fraction_ && random % denominator_ >= numerator_) return false;
  if (grpc_ && !isGrpcContentType(in.headers.getOr(http::headers::kContentType))) return false;
  for (const HeaderMatcher& h : headers_) {
    if (!h.matches(in.headers)) return false;
  }
  for (const QueryParameterMatcher& qm : query_) {
    if (!qm.matches(in.query)) return false;
  }
  return true;
}

}  // namespace skiff::router
