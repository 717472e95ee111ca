// RouteEntry's per-request work: cluster choice, path/host rewrites, redirect Location, header mutations.
#include <re2/re2.h>

#include <charconv>

#include "skiff/router/route_table.h"

namespace skiff::router {

namespace {

const std::string& emptyString() {
  static const std::string kEmpty;
  return kEmpty;
}

std::string regexSubstitute(const re2::RE2& re, std::string_view input, const std::string& substitution) {
  std::string out(input);
  re2::RE2::GlobalReplace(&out, re, substitution);
  return out;
}

// Port suffix of an authority (":8080"), or "" — IPv6 literals are bracketed.
size_t portStart(std::string_view host) {
  if (host.empty()) return std::string_view::npos;
  if (host.front() == '[') {
    const size_t close = host.rfind("]:");
    return close == std::string_view::npos ? std::string_view::npos : close + 1;
  }
  return host.rfind(':');
}

std::string_view requestAuthority(const http::HeaderMap& request) {
  const std::string* a = request.get(http::headers::kAuthority);
  if (a == nullptr) a = request.get(http::headers::kHost);
  return a ? std::string_view(*a) : std::string_view();
}

}  // namespace

const WeightedClusterEntry* RouteEntry::pickWeightedCluster(const http::HeaderMap& request,
                                                            uint64_t random) const {
  if (weighted_clusters.empty() || total_weight == 0) return nullptr;
  if (!weighted_random_header.empty()) {
    if (const std::string* v = request.get(weighted_random_header)) {
      uint64_t n = 0;
      auto [ptr, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
      if (ec == std::errc() && ptr == v->data() + v->size() && !v->empty()) random = n;
    }
  }
  const uint64_t selected = random % total_weight;
  uint64_t begin = 0;
  for (const WeightedClusterEntry& c : weighted_clusters) {
    if (selected < begin + c.weight) return &c;
    begin += c.weight;
  }
  return &weighted_clusters.back();
}

const std::string& RouteEntry::pickCluster(const http::HeaderMap& request, uint64_t random) const {
  if (kind != Kind::kRoute) return emptyString();
  if (!cluster.empty()) return cluster;
  if (!cluster_header.empty()) {
    const std::string* v = request.get(cluster_header);
    return v ? *v : emptyString();
  }
  const WeightedClusterEntry* c = pickWeightedCluster(request, random);
  if (c == nullptr) return emptyString();
  if (!c->cluster_header.empty()) {
    const std::string* v = request.get(c->cluster_header);
    return v ? *v : emptyString();
  }
  return c->name;
}

void RouteEntry::rewritePathAndHost(http::HeaderMap& request) const {
  // Host first, as Envoy does.
  std::string new_host;
  bool host_changed = false;
  if (!host_rewrite_literal.empty()) {
    new_host = host_rewrite_literal;
    host_changed = true;
  } else if (!host_rewrite_header.empty()) {
    const std::string* v = request.get(host_rewrite_header);
    if (v != nullptr && !v->empty()) {
      new_host = *v;
      host_changed = true;
    }
  } else if (host_rewrite_regex) {
    new_host = regexSubstitute(*host_rewrite_regex, pathWithoutQuery(request.getOr(http::headers::kPath)),
                               host_rewrite_regex_substitution);
    host_changed = true;
  }
  if (host_changed) {
    if (append_x_forwarded_host) {
      const std::string original(requestAuthority(request));
      if (!original.empty()) {
        const std::string* xfh = request.get("x-forwarded-host");
        if (xfh == nullptr) {
          request.add("x-forwarded-host", original);
        } else {
          // Append unless it is already the last value.
          std::string_view last(*xfh);
          const size_t comma = last.rfind(',');
          if (comma != std::string_view::npos) last.remove_prefix(comma + 1);
          while (!last.empty() && last.front() == ' ') last.remove_prefix(1);
          if (last != original) request.set("x-forwarded-host", *xfh + "," + original);
        }
      }
    }
    request.set(http::headers::kAuthority, new_host);
  }

  if (!has_prefix_rewrite && !regex_rewrite) return;
  const std::string* path_ptr = request.get(http::headers::kPath);
  if (path_ptr == nullptr) return;
  const std::string original = *path_ptr;
  const std::string_view no_query = pathWithoutQuery(original);
  const std::string_view query(original.data() + no_query.size(), original.size() - no_query.size());
  std::string rewritten;
  if (has_prefix_rewrite) {
    const size_t consumed = path_kind == RouteMatch::PathKind::kRegex
                                ? no_query.size()
                                : std::min(match_prefix_length, no_query.size());
    rewritten = prefix_rewrite;
    rewritten.append(original, consumed, std::string::npos);  // keeps the query
  } else {
    rewritten = regexSubstitute(*regex_rewrite, no_query, regex_substitution);
    rewritten.append(query);
  }
  if (rewritten == original) return;
  request.set(http::headers::kEnvoyOriginalPath, original);
  request.set(http::headers::kPath, rewritten);
}

bool RouteEntry::addsLocationHeader() const {
  if (kind == Kind::kRedirect) return true;
  return kind == Kind::kDirectResponse &&
         (direct_response_status == 201 || (direct_response_status >= 300 && direct_response_status < 400));
}

std::string RouteEntry::redirectLocation(const http::HeaderMap& request, std::string_view scheme) const {
  const RedirectAction& r = redirect;
  std::string_view final_scheme = r.scheme.empty() ? scheme : std::string_view(r.scheme);
  if (final_scheme.empty()) final_scheme = request.getOr(http::headers::kScheme, "http");
  const std::string port_suffix = r.port != 0 ? ":" + std::to_string(r.port) : std::string();

  std::string_view host;
  if (!r.host.empty()) {
    host = r.host;
  } else {
    host = requestAuthority(request);
    const size_t ps = portStart(host);
    if (ps != std::string_view::npos) {
      const std::string_view request_port = host.substr(ps);
      bool remove = r.port != 0;
      if (final_scheme != scheme) {  // the scheme changes: drop the old scheme's default port
        remove |= scheme == "https" && request_port == ":443";
        remove |= scheme == "http" && request_port == ":80";
      }
      if (remove) host = host.substr(0, ps);
    }
  }

  const std::string_view path = request.getOr(http::headers::kPath, "/");
  std::string final_path;
  bool keep_query_regardless = false;
  switch (r.path_rewrite) {
    case RedirectAction::PathRewrite::kNone:
      final_path = path;
      break;
    case RedirectAction::PathRewrite::kPathRedirect:
      final_path = r.path;
      if (r.path_has_query) {
        keep_query_regardless = true;
      } else {
        const size_t q = path.find('?');
        if (q != std::string_view::npos) final_path.append(path.substr(q));
      }
      break;
    case RedirectAction::PathRewrite::kPrefixRewrite: {
      const std::string_view no_query = pathWithoutQuery(path);
      const size_t consumed = path_kind == RouteMatch::PathKind::kRegex
                                  ? no_query.size()
                                  : std::min(match_prefix_length, no_query.size());
      final_path = r.path;
      final_path.append(path.substr(consumed));
      break;
    }
    case RedirectAction::PathRewrite::kRegexRewrite: {
      const std::string_view no_query = pathWithoutQuery(path);
      final_path = regexSubstitute(*r.regex, no_query, r.substitution);
      final_path.append(path.substr(no_query.size()));
      break;
    }
  }
  if (final_path.empty() || final_path.front() != '/') final_path.insert(0, "/");
  if (r.strip_query && !keep_query_regardless) {
    const size_t q = final_path.find('?');
    if (q != std::string::npos) final_path.resize(q);
  }
  std::string out;
  out.reserve(final_scheme.size() + 3 + host.size() + port_suffix.size() + final_path.size());
  out.append(final_scheme).append("://").append(host).append(port_suffix).append(final_path);
  return out;
}

namespace {

template <typename Pick>
void applyLevels(http::HeaderMap& h, const RouteEntry& e, const WeightedClusterEntry* cluster,
                 const FormatterContext* ctx, Pick pick) {
  if (cluster != nullptr) pick(*cluster).apply(h, ctx);
  const HeaderMutations* levels[3] = {&pick(e), nullptr, nullptr};
  bool reverse = false;
  if (e.virtual_host != nullptr) {
    levels[1] = &pick(*e.virtual_host);
    if (e.virtual_host->route_config != nullptr) {
      levels[2] = &pick(*e.virtual_host->route_config);
      reverse = e.virtual_host->route_config->most_specific_header_mutations_wins;
    }
  }
  if (reverse) std::swap(levels[0], levels[2]);
  for (const HeaderMutations* m : levels) {
    if (m != nullptr) m->apply(h, ctx);
  }
}

}  // namespace

void RouteEntry::finalizeRequestHeaders(http::HeaderMap& request, const WeightedClusterEntry* cluster,
                                        const FormatterContext* ctx) const {
  applyLevels(request, *this, cluster, ctx,
              [](const auto& level) -> const HeaderMutations& { return level.request_mutations; });
  if (cluster != nullptr && !cluster->host_rewrite_literal.empty()) {
    request.set(http::headers::kAuthority, cluster->host_rewrite_literal);
  }
}

void RouteEntry::finalizeResponseHeaders(http::HeaderMap& response, const WeightedClusterEntry* cluster,
                                         const FormatterContext* ctx) const {
  applyLevels(response, *this, cluster, ctx,
              [](const auto& level) -> const HeaderMutations& { return level.response_mutations; });
}

}  // namespace skiff::router
