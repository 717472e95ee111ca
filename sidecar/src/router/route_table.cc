// RouteTable: compiling a RouteConfiguration (validation, domain index, routes) and per-request lookup.
#include "skiff/router/route_table.h"

#include <algorithm>
#include <stdexcept>

#include "envoy/config/route/v3/route.pb.h"
#include "envoy/config/route/v3/route_components.pb.h"
#include "skiff/config/data_source.h"

namespace skiff::router {

namespace {

namespace rv3 = envoy::config::route::v3;

[[noreturn]] void fail(const std::string& path, const std::string& msg) {
  throw std::invalid_argument(path + ": " + msg);
}

std::string idx(const std::string& base, const char* field, int i) {
  return base + "." + field + "[" + std::to_string(i) + "]";
}

template <typename FP>
void parseFraction(const FP& fp, uint32_t* numerator, uint32_t* denominator) {
  *numerator = fp.numerator();
  switch (fp.denominator()) {
    case 1:
      *denominator = 10000;
      break;
    case 2:
      *denominator = 1000000;
      break;
    default:
      *denominator = 100;
  }
}

uint32_t redirectCode(int code) {
  switch (code) {
    case 1:
      return 302;
    case 2:
      return 303;
    case 3:
      return 307;
    case 4:
      return 308;
    default:
      return 301;
  }
}

void parseWeightedClusters(const rv3::WeightedCluster& wc, RouteEntry& e, const std::string& path) {
  uint64_t sum = 0;
  for (int i = 0; i < wc.clusters_size(); ++i) {
    const auto& c = wc.clusters(i);
    const std::string cpath = idx(path, "clusters", i);
    WeightedClusterEntry w;
    w.name = c.name();
    w.cluster_header = c.cluster_header();
    if (w.name.empty() == w.cluster_header.empty())
      fail(cpath, "exactly one of name or cluster_header is required");
    w.weight = c.has_weight() ? c.weight().value() : 0;
    w.host_rewrite_literal = c.host_rewrite_literal();
    w.request_mutations =
        HeaderMutations::fromProto(c.request_headers_to_add(), c.request_headers_to_remove(),
                                   cpath + ".request_headers_to_add", cpath + ".request_headers_to_remove");
    w.response_mutations =
        HeaderMutations::fromProto(c.response_headers_to_add(), c.response_headers_to_remove(),
                                   cpath + ".response_headers_to_add", cpath + ".response_headers_to_remove");
    if (!c.typed_per_filter_config().empty()) w.typed_per_filter_config = &c.typed_per_filter_config();
    sum += w.weight;
    e.weighted_clusters.push_back(std::move(w));
  }
  if (e.weighted_clusters.empty()) fail(path + ".clusters", "at least one cluster is required");
  if (sum == 0) fail(path, "sum of weights must be greater than 0");
  if (wc.has_total_weight() && wc.total_weight().value() != 0 && wc.total_weight().value() != sum) {
    fail(path + ".total_weight", "sum of weights (" + std::to_string(sum) + ") must equal total_weight (" +
                                     std::to_string(wc.total_weight().value()) + ")");
  }
  e.total_weight = sum;
  e.weighted_random_header = wc.header_name();
  http::toLowerInPlace(e.weighted_random_header);
}

std::vector<MirrorPolicy> parseMirrorPolicies(
    const google::protobuf::RepeatedPtrField<rv3::RouteAction::RequestMirrorPolicy>& policies,
    const std::string& path) {
  std::vector<MirrorPolicy> out;
  for (int i = 0; i < policies.size(); ++i) {
    const auto& mp = policies[i];
    MirrorPolicy m;
    m.cluster = mp.cluster();
    m.cluster_header = mp.cluster_header();
    http::toLowerInPlace(m.cluster_header);
    if (m.cluster.empty() == m.cluster_header.empty()) {
      fail(path + "[" + std::to_string(i) + "]", "exactly one of cluster or cluster_header is required");
    }
    if (mp.has_runtime_fraction())
      parseFraction(mp.runtime_fraction().default_value(), &m.numerator, &m.denominator);
    out.push_back(std::move(m));
  }
  return out;
}

void parseRouteAction(const rv3::RouteAction& a, RouteEntry& e, const std::string& path) {
  using A = rv3::RouteAction;
  switch (a.cluster_specifier_case()) {
    case A::kCluster:
      e.cluster = a.cluster();
      break;
    case A::kClusterHeader:
      e.cluster_header = a.cluster_header();
      http::toLowerInPlace(e.cluster_header);
      break;
    case A::kWeightedClusters:
      parseWeightedClusters(a.weighted_clusters(), e, path + ".weighted_clusters");
      break;
    default:
      fail(path, "a cluster, cluster_header or weighted_clusters is required");
  }
  switch (a.cluster_not_found_response_code()) {
    case 1:
      e.cluster_not_found_response_code = 404;
      break;
    case 2:
      e.cluster_not_found_response_code = 500;
      break;
    default:
      e.cluster_not_found_response_code = 503;
  }
  if (!a.prefix_rewrite().empty()) {
    e.has_prefix_rewrite = true;
    e.prefix_rewrite = a.prefix_rewrite();
  }
  if (a.has_regex_rewrite()) {
    if (e.has_prefix_rewrite) fail(path, "only one of prefix_rewrite and regex_rewrite may be set");
    e.regex_rewrite = compileRegex(a.regex_rewrite().pattern(), path + ".regex_rewrite.pattern");
    e.regex_substitution = a.regex_rewrite().substitution();
  }
  switch (a.host_rewrite_specifier_case()) {
    case A::kHostRewriteLiteral:
      e.host_rewrite_literal = a.host_rewrite_literal();
      break;
    case A::kAutoHostRewrite:
      e.auto_host_rewrite = a.auto_host_rewrite().value();
      break;
    case A::kHostRewriteHeader:
      e.host_rewrite_header = a.host_rewrite_header();
      http::toLowerInPlace(e.host_rewrite_header);
      break;
    case A::kHostRewritePathRegex:
      e.host_rewrite_regex =
          compileRegex(a.host_rewrite_path_regex().pattern(), path + ".host_rewrite_path_regex.pattern");
      e.host_rewrite_regex_substitution = a.host_rewrite_path_regex().substitution();
      break;
    default:
      break;
  }
  e.append_x_forwarded_host = a.append_x_forwarded_host();
  if (a.has_timeout()) e.timeout = toMillis(a.timeout());
  if (a.has_idle_timeout()) e.idle_timeout = toMillis(a.idle_timeout());
  if (a.has_max_grpc_timeout()) e.max_grpc_timeout = toMillis(a.max_grpc_timeout());
  if (a.has_grpc_timeout_offset()) e.grpc_timeout_offset = toMillis(a.grpc_timeout_offset());
  if (a.has_max_stream_duration()) {
    const auto& msd = a.max_stream_duration();
    if (msd.has_max_stream_duration()) e.max_stream_duration = toMillis(msd.max_stream_duration());
    if (msd.has_grpc_timeout_header_max()) e.max_grpc_timeout = toMillis(msd.grpc_timeout_header_max());
    if (msd.has_grpc_timeout_header_offset())
      e.grpc_timeout_offset = toMillis(msd.grpc_timeout_header_offset());
  }
  if (a.has_retry_policy()) {
    e.retry_policy = RetryPolicy::fromProto(a.retry_policy(), path + ".retry_policy");
    e.has_retry_policy = true;
  }
  e.mirror_policies = parseMirrorPolicies(a.request_mirror_policies(), path + ".request_mirror_policies");
}

void parseRedirect(const rv3::RedirectAction& r, RouteEntry& e, const std::string& path) {
  using R = rv3::RedirectAction;
  RedirectAction& out = e.redirect;
  if (r.scheme_rewrite_specifier_case() == R::kHttpsRedirect && r.https_redirect()) out.scheme = "https";
  if (r.scheme_rewrite_specifier_case() == R::kSchemeRedirect) {
    out.scheme = r.scheme_redirect();
    http::toLowerInPlace(out.scheme);
  }
  out.host = r.host_redirect();
  out.port = r.port_redirect();
  switch (r.path_rewrite_specifier_case()) {
    case R::kPathRedirect:
      out.path_rewrite = RedirectAction::PathRewrite::kPathRedirect;
      out.path = r.path_redirect();
      out.path_has_query = out.path.find('?') != std::string::npos;
      break;
    case R::kPrefixRewrite:
      out.path_rewrite = RedirectAction::PathRewrite::kPrefixRewrite;
      out.path = r.prefix_rewrite();
      break;
    case R::kRegexRewrite:
      out.path_rewrite = RedirectAction::PathRewrite::kRegexRewrite;
      out.regex = compileRegex(r.regex_rewrite().pattern(), path + ".regex_rewrite.pattern");
      out.substitution = r.regex_rewrite().substitution();
      break;
    default:
      break;
  }
  out.strip_query = r.strip_query();
  e.redirect_code = redirectCode(r.response_code());
}

// Per-table settings parseRoute needs beyond the route itself.
struct RouteDefaults {
  uint64_t max_direct_response_body = 4096;  // Envoy's default max_direct_response_body_size_bytes
  const std::vector<MirrorPolicy>* mirror_policies = nullptr;  // vhost's, else route config's
};

std::unique_ptr<RouteEntry> parseRoute(const rv3::Route& route, const RouteMatch& match,
                                       const VirtualHost& vh, const RouteDefaults& defaults,
                                       const std::string& path) {
  using Rt = rv3::Route;
  auto e = std::make_unique<RouteEntry>();
  e->name = route.name();
  e->virtual_host = &vh;
  e->path_kind = match.pathKind();
  e->match_prefix_length = match.value().size();
  switch (route.action_case()) {
    case Rt::kRoute:
      e->kind = RouteEntry::Kind::kRoute;
      parseRouteAction(route.route(), *e, path + ".route");
      break;
    case Rt::kRedirect:
      e->kind = RouteEntry::Kind::kRedirect;
      parseRedirect(route.redirect(), *e, path + ".redirect");
      break;
    case Rt::kDirectResponse:
      e->kind = RouteEntry::Kind::kDirectResponse;
      e->direct_response_status = route.direct_response().status();
      if (e->direct_response_status < 100 || e->direct_response_status > 599) {
        fail(path + ".direct_response.status", "must be in [100, 599]");
      }
      if (route.direct_response().has_body()) {
        e->direct_response_body =
            skiff::config::readDataSource(route.direct_response().body(), path + ".direct_response.body");
        if (e->direct_response_body.size() > defaults.max_direct_response_body) {
          fail(path + ".direct_response.body",
               "response body size is " + std::to_string(e->direct_response_body.size()) +
                   " bytes; maximum is " + std::to_string(defaults.max_direct_response_body));
        }
      }
      break;
    case Rt::kNonForwardingAction:
      e->kind = RouteEntry::Kind::kNonForwarding;
      break;
    default:
      fail(path, "unsupported or missing action (route, redirect, direct_response, non_forwarding_action)");
  }
  if (e->kind == RouteEntry::Kind::kRoute && e->mirror_policies.empty() &&
      defaults.mirror_policies != nullptr) {
    e->mirror_policies = *defaults.mirror_policies;  // the most specific non-empty list wins, no merging
  }
  if (!e->has_retry_policy && vh.has_retry_policy) {
    e->retry_policy = vh.retry_policy;
    e->has_retry_policy = true;
  }
  e->request_mutations =
      HeaderMutations::fromProto(route.request_headers_to_add(), route.request_headers_to_remove(),
                                 path + ".request_headers_to_add", path + ".request_headers_to_remove");
  e->response_mutations =
      HeaderMutations::fromProto(route.response_headers_to_add(), route.response_headers_to_remove(),
                                 path + ".response_headers_to_add", path + ".response_headers_to_remove");
  if (!route.typed_per_filter_config().empty()) e->typed_per_filter_config = &route.typed_per_filter_config();
  if (route.has_metadata()) e->metadata = &route.metadata();
  return e;
}

// Strips ":port" for ignore_port_in_host_matching; bracketed IPv6 keeps its brackets.
std::string_view stripPort(std::string_view host) {
  if (host.empty()) return host;
  size_t colon;
  if (host.front() == '[') {
    colon = host.rfind("]:");
    if (colon == std::string_view::npos) return host;
    ++colon;
  } else {
    colon = host.rfind(':');
    if (colon == std::string_view::npos || host.find(':') != colon) return host;
  }
  return host.substr(0, colon);
}

}  // namespace

const RouteEntry* VirtualHost::route(const http::HeaderMap& request, uint64_t random_value) const {
  if (require_tls != TlsRequirement::kNone && tls_redirect) {
    const std::string* proto = request.get(http::headers::kForwardedProto);
    std::string_view scheme = proto ? std::string_view(*proto) : request.getOr(http::headers::kScheme);
    if (scheme != "https") {
      const bool internal = request.getOr(http::headers::kEnvoyInternal) == "true";
      if (require_tls == TlsRequirement::kAll || !internal) return tls_redirect.get();
    }
  }
  const MatchInput input(request);
  for (const Route& r : routes) {
    if (r.match.matches(input, random_value)) return r.entry.get();
  }
  return nullptr;
}

// What route() reads, for RouteConfigLevel::routing_headers.
std::vector<std::string> RouteTable::routingHeaders(const std::vector<std::unique_ptr<VirtualHost>>& vhosts) {
  namespace h = http::headers;
  std::vector<std::string> names{std::string(h::kAuthority), std::string(h::kHost), std::string(h::kPath),
                                 std::string(h::kMethod)};
  for (const auto& vh : vhosts) {
    if (vh->require_tls != VirtualHost::TlsRequirement::kNone) {
      names.insert(names.end(), {std::string(h::kForwardedProto), std::string(h::kScheme),
                                 std::string(h::kEnvoyInternal)});
    }
    for (const VirtualHost::Route& r : vh->routes) r.match.addHeaderNames(names);
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

bool RouteConfigLevel::routesOn(std::string_view header_name) const {
  if (reads_other_inputs) return true;
  for (const std::string& n : routing_headers) {
    if (n.size() == header_name.size() && http::equalsIgnoreCase(n, header_name)) return true;
  }
  return false;
}

bool RouteEntry::dependsOnHeader(std::string_view name) const {
  if (virtual_host == nullptr || virtual_host->route_config == nullptr) return true;
  return virtual_host->route_config->routesOn(name);
}

RouteTable::RouteTable() = default;
RouteTable::~RouteTable() = default;

void RouteTable::addDomain(const std::string& raw, const VirtualHost* vh, const std::string& path) {
  std::string d = raw;
  http::toLowerInPlace(d);
  if (d.empty()) fail(path, "domain must not be empty");
  auto duplicate = [&] {
    fail(path, "only unique values for domains are permitted; duplicate entry of domain " + d);
  };
  if (d == "*") {
    if (default_ != nullptr) duplicate();
    default_ = vh;
    return;
  }
  const bool leading = d.front() == '*';
  const bool trailing = d.back() == '*';
  if (leading && trailing) fail(path, "domain " + d + " may have a wildcard only at one end");
  if (!leading && !trailing) {
    if (!exact_.emplace(d, vh).second) duplicate();
    return;
  }
  std::string fixed = leading ? d.substr(1) : d.substr(0, d.size() - 1);
  if (fixed.find('*') != std::string::npos) fail(path, "domain " + d + " may have only one wildcard");
  auto& levels = leading ? suffixes_ : prefixes_;
  auto it = std::find_if(levels.begin(), levels.end(),
                         [&](const WildcardLevel& l) { return l.length == fixed.size(); });
  if (it == levels.end()) {
    levels.push_back(WildcardLevel{fixed.size(), {}});
    it = levels.end() - 1;
  }
  if (!it->domains.emplace(std::move(fixed), vh).second) duplicate();
}

std::shared_ptr<const RouteTable> RouteTable::create(const rv3::RouteConfiguration& config) {
  std::shared_ptr<RouteTable> t(new RouteTable());
  t->config_ = std::make_unique<rv3::RouteConfiguration>(config);
  const rv3::RouteConfiguration& c = *t->config_;
  t->level_.name = c.name();
  t->level_.request_mutations =
      HeaderMutations::fromProto(c.request_headers_to_add(), c.request_headers_to_remove(),
                                 "request_headers_to_add", "request_headers_to_remove");
  t->level_.response_mutations =
      HeaderMutations::fromProto(c.response_headers_to_add(), c.response_headers_to_remove(),
                                 "response_headers_to_add", "response_headers_to_remove");
  t->level_.most_specific_header_mutations_wins = c.most_specific_header_mutations_wins();
  t->ignore_port_ = c.ignore_port_in_host_matching();
  if (!c.typed_per_filter_config().empty()) t->level_.typed_per_filter_config = &c.typed_per_filter_config();
  for (const std::string& h : c.internal_only_headers()) {
    std::string lower = h;
    http::toLowerInPlace(lower);
    t->internal_only_headers_.push_back(std::move(lower));
  }

  const std::vector<MirrorPolicy> config_mirrors =
      parseMirrorPolicies(c.request_mirror_policies(), "request_mirror_policies");
  const uint64_t max_body =
      c.has_max_direct_response_body_size_bytes() ? c.max_direct_response_body_size_bytes().value() : 4096;
  for (int v = 0; v < c.virtual_hosts_size(); ++v) {
    const rv3::VirtualHost& vp = c.virtual_hosts(v);
    const std::string vpath = "virtual_hosts[" + std::to_string(v) + "]";
    auto vh = std::make_unique<VirtualHost>();
    vh->name = vp.name();
    vh->route_config = &t->level_;
    vh->request_mutations =
        HeaderMutations::fromProto(vp.request_headers_to_add(), vp.request_headers_to_remove(),
                                   vpath + ".request_headers_to_add", vpath + ".request_headers_to_remove");
    vh->response_mutations =
        HeaderMutations::fromProto(vp.response_headers_to_add(), vp.response_headers_to_remove(),
                                   vpath + ".response_headers_to_add", vpath + ".response_headers_to_remove");
    if (vp.has_retry_policy()) {
      vh->retry_policy = RetryPolicy::fromProto(vp.retry_policy(), vpath + ".retry_policy");
      vh->has_retry_policy = true;
    }
    if (!vp.typed_per_filter_config().empty()) vh->typed_per_filter_config = &vp.typed_per_filter_config();
    vh->require_tls = static_cast<VirtualHost::TlsRequirement>(vp.require_tls());
    if (vh->require_tls != VirtualHost::TlsRequirement::kNone) {
      auto redirect = std::make_unique<RouteEntry>();
      redirect->kind = RouteEntry::Kind::kRedirect;
      redirect->virtual_host = vh.get();
      redirect->redirect.scheme = "https";
      redirect->redirect_code = 301;
      vh->tls_redirect = std::move(redirect);
    }
    if (vp.domains_size() == 0) fail(vpath + ".domains", "at least one domain is required");
    for (int d = 0; d < vp.domains_size(); ++d) {
      vh->domains.push_back(vp.domains(d));
      t->addDomain(vp.domains(d), vh.get(), idx(vpath, "domains", d));
    }
    const std::vector<MirrorPolicy> vh_mirrors =
        parseMirrorPolicies(vp.request_mirror_policies(), vpath + ".request_mirror_policies");
    RouteDefaults defaults;
    defaults.max_direct_response_body = max_body;
    if (!vh_mirrors.empty())
      defaults.mirror_policies = &vh_mirrors;
    else if (!config_mirrors.empty())
      defaults.mirror_policies = &config_mirrors;
    for (int r = 0; r < vp.routes_size(); ++r) {
      const std::string rpath = idx(vpath, "routes", r);
      const rv3::Route& rp = vp.routes(r);
      RouteMatch match = RouteMatch::fromProto(rp.match(), rpath + ".match");
      auto entry = parseRoute(rp, match, *vh, defaults, rpath);
      vh->routes.push_back(VirtualHost::Route{std::move(match), std::move(entry)});
    }
    t->vhosts_.push_back(std::move(vh));
  }
  auto longestFirst = [](const WildcardLevel& a, const WildcardLevel& b) { return a.length > b.length; };
  std::sort(t->suffixes_.begin(), t->suffixes_.end(), longestFirst);
  std::sort(t->prefixes_.begin(), t->prefixes_.end(), longestFirst);
  t->level_.routing_headers = routingHeaders(t->vhosts_);
  for (const auto& vh : t->vhosts_) {
    for (const VirtualHost::Route& r : vh->routes) t->level_.reads_other_inputs |= r.match.readsOtherInputs();
  }
  return t;
}

const VirtualHost* RouteTable::findWildcard(const std::vector<WildcardLevel>& levels, std::string_view host,
                                            bool suffix) {
  for (const WildcardLevel& l : levels) {
    if (host.size() <= l.length) continue;  // the wildcard must match at least one character
    const std::string_view key = suffix ? host.substr(host.size() - l.length) : host.substr(0, l.length);
    auto it = l.domains.find(key);
    if (it != l.domains.end()) return it->second;
  }
  return nullptr;
}

const VirtualHost* RouteTable::findVirtualHost(std::string_view authority) const {
  if (exact_.empty() && suffixes_.empty() && prefixes_.empty()) return default_;
  if (ignore_port_) authority = stripPort(authority);
  // Lower-case into a stack buffer: no allocation for ordinary host names.
  char buf[256];
  std::string heap;
  std::string_view host;
  if (authority.size() <= sizeof(buf)) {
    for (size_t i = 0; i < authority.size(); ++i) {
      const char ch = authority[i];
      buf[i] = (ch >= 'A' && ch <= 'Z') ? static_cast<char>(ch + 32) : ch;
    }
    host = std::string_view(buf, authority.size());
  } else {
    heap.assign(authority);
    http::toLowerInPlace(heap);
    host = heap;
  }
  if (auto it = exact_.find(host); it != exact_.end()) return it->second;
  if (const VirtualHost* vh = findWildcard(suffixes_, host, true)) return vh;
  if (const VirtualHost* vh = findWildcard(prefixes_, host, false)) return vh;
  return default_;
}

const RouteEntry* RouteTable::route(const http::HeaderMap& request, uint64_t random_value) const {
  const std::string* authority = request.get(http::headers::kAuthority);
  if (authority == nullptr) authority = request.get(http::headers::kHost);
  const VirtualHost* vh = findVirtualHost(authority ? std::string_view(*authority) : std::string_view());
  return vh ? vh->route(request, random_value) : nullptr;
}

}  // namespace skiff::router
