// The route table: an Envoy v3 RouteConfiguration compiled into an immutable matcher. Built once per
// config version (main thread), shared read-only by every worker; route() never allocates for
// ordinary requests.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "google/protobuf/any.pb.h"
#include "google/protobuf/map.h"
#include "skiff/http/header_map.h"
#include "skiff/router/header_mutations.h"
#include "skiff/router/retry_policy.h"
#include "skiff/router/route_match.h"

namespace envoy::config::core::v3 {
class Metadata;
}  // namespace envoy::config::core::v3

namespace envoy::config::route::v3 {
class RouteConfiguration;
}

namespace skiff::router {

using TypedPerFilterConfig = google::protobuf::Map<std::string, google::protobuf::Any>;

struct VirtualHost;

// One entry of weighted_clusters.clusters.
struct WeightedClusterEntry {
  std::string name;
  std::string cluster_header;  // cluster name taken from this request header instead of `name`
  uint32_t weight = 0;
  std::string host_rewrite_literal;
  HeaderMutations request_mutations;
  HeaderMutations response_mutations;
  const TypedPerFilterConfig* typed_per_filter_config = nullptr;
};

// request_mirror_policies[]: shadow a copy of the request to `cluster` for this fraction of requests.
struct MirrorPolicy {
  std::string cluster;
  std::string cluster_header;
  uint32_t numerator = 100;
  uint32_t denominator = 100;  // 100, 10000 or 1000000
  bool enabled(uint64_t random) const { return random % denominator < numerator; }
};

// RedirectAction, normalised.
struct RedirectAction {
  enum class PathRewrite { kNone, kPathRedirect, kPrefixRewrite, kRegexRewrite };
  std::string scheme;  // "" keeps the request's scheme; https_redirect sets "https"
  std::string host;    // "" keeps the request's host
  uint32_t port = 0;   // 0 keeps
  PathRewrite path_rewrite = PathRewrite::kNone;
  std::string path;  // path_redirect or prefix_rewrite value
  bool path_has_query = false;
  std::shared_ptr<const re2::RE2> regex;
  std::string substitution;
  bool strip_query = false;
};

// Route-configuration-level data every entry can reach through its virtual host.
struct RouteConfigLevel {
  std::string name;
  HeaderMutations request_mutations;
  HeaderMutations response_mutations;
  bool most_specific_header_mutations_wins = false;
  const TypedPerFilterConfig* typed_per_filter_config = nullptr;
  // Every request header RouteTable::route() reads (lower-case, no duplicates): the authority, :path,
  // :method, header matchers, content-type for grpc matchers, and require_tls's inputs. A change to any
  // other header cannot change which route matches.
  std::vector<std::string> routing_headers;
  // Some route matcher reads inputs other than request headers (RouteMatch::readsOtherInputs()): every
  // header change then counts as a routing change.
  bool reads_other_inputs = false;
  bool routesOn(std::string_view header_name) const;
};

struct RouteEntry {
  enum class Kind { kRoute, kRedirect, kDirectResponse, kNonForwarding };

  std::string name;  // route.name
  const VirtualHost* virtual_host = nullptr;
  Kind kind = Kind::kRoute;

  // Cluster choice: exactly one of cluster / cluster_header / weighted_clusters is set for kRoute.
  std::string cluster;
  std::string cluster_header;
  std::vector<WeightedClusterEntry> weighted_clusters;
  uint64_t total_weight = 0;
  std::string weighted_random_header;              // weighted_clusters.header_name
  uint32_t cluster_not_found_response_code = 503;  // 503, 404 or 500

  // The weighted cluster for this request (`random` unless header_name carries a number), or nullptr.
  const WeightedClusterEntry* pickWeightedCluster(const http::HeaderMap& request, uint64_t random) const;
  // Cluster name for this request, "" if none (missing cluster_header → Envoy answers 404 NC... the
  // caller decides). A reference into `request` for cluster_header: valid until `request` changes.
  const std::string& pickCluster(const http::HeaderMap& request, uint64_t random) const;

  // Rewrites for a request about to go upstream. Call after finalizeRequestHeaders (Envoy's order):
  // host (literal / header / path regex, + x-forwarded-host when append_x_forwarded_host), then path
  // (prefix_rewrite replaces the matched prefix, regex_rewrite substitutes on the path without query);
  // a changed path stores the original in x-envoy-original-path.
  void rewritePathAndHost(http::HeaderMap& request) const;
  std::string prefix_rewrite;
  bool has_prefix_rewrite = false;
  std::shared_ptr<const re2::RE2> regex_rewrite;
  std::string regex_substitution;
  std::string host_rewrite_literal;
  std::string host_rewrite_header;
  std::shared_ptr<const re2::RE2> host_rewrite_regex;
  std::string host_rewrite_regex_substitution;
  bool auto_host_rewrite = false;  // the caller applies it with the chosen host's hostname
  bool append_x_forwarded_host = false;
  RouteMatch::PathKind path_kind = RouteMatch::PathKind::kPrefix;
  size_t match_prefix_length = 0;  // configured prefix/path length, for prefix_rewrite

  std::chrono::milliseconds timeout{15000};  // 0 = disabled
  std::optional<std::chrono::milliseconds> idle_timeout;
  std::optional<std::chrono::milliseconds> max_stream_duration;
  std::optional<std::chrono::milliseconds> max_grpc_timeout;  // grpc_timeout_header_max or max_grpc_timeout
  std::optional<std::chrono::milliseconds> grpc_timeout_offset;

  RetryPolicy retry_policy;  // route's, else the virtual host's (a route policy replaces the vhost's)
  bool has_retry_policy = false;
  std::vector<MirrorPolicy> mirror_policies;

  uint32_t direct_response_status = 0;
  std::string direct_response_body;

  RedirectAction redirect;
  uint32_t redirect_code = 301;
  // Location for a redirect (and for a 201/3xx direct response, as Envoy adds it): scheme://host[:port]/path.
  // `scheme` is the request's (x-forwarded-proto); a port that is default for it is dropped when the
  // scheme changes or port_redirect is set.
  std::string redirectLocation(const http::HeaderMap& request, std::string_view scheme) const;
  bool addsLocationHeader() const;

  // Header mutations: weighted cluster (if given) first, then route, vhost, route config — or the
  // reverse of route/vhost/config when most_specific_header_mutations_wins.
  void finalizeRequestHeaders(http::HeaderMap& request, const WeightedClusterEntry* cluster = nullptr,
                              const FormatterContext* ctx = nullptr) const;
  void finalizeResponseHeaders(http::HeaderMap& response, const WeightedClusterEntry* cluster = nullptr,
                               const FormatterContext* ctx = nullptr) const;
  HeaderMutations request_mutations;
  HeaderMutations response_mutations;

  // Whether a change to request header `name` could make the table choose another route than this
  // one (true when the table is unknown).
  bool dependsOnHeader(std::string_view name) const;

  const TypedPerFilterConfig* typed_per_filter_config = nullptr;  // route's; vhost's via virtual_host
  // route.metadata (filter_metadata by filter name), pointing into the table's config; nullptr if unset.
  const envoy::config::core::v3::Metadata* metadata = nullptr;
};

struct VirtualHost {
  enum class TlsRequirement { kNone = 0, kExternalOnly = 1, kAll = 2 };
  struct Route {
    RouteMatch match;
    std::unique_ptr<RouteEntry> entry;
  };

  std::string name;
  std::vector<std::string> domains;
  std::vector<Route> routes;
  HeaderMutations request_mutations;
  HeaderMutations response_mutations;
  RetryPolicy retry_policy;
  bool has_retry_policy = false;
  TlsRequirement require_tls = TlsRequirement::kNone;
  std::unique_ptr<RouteEntry> tls_redirect;  // 301 to https when require_tls demands it
  const TypedPerFilterConfig* typed_per_filter_config = nullptr;
  const RouteConfigLevel* route_config = nullptr;

  // First matching route in order; the TLS redirect first when require_tls applies.
  const RouteEntry* route(const http::HeaderMap& request, uint64_t random_value) const;
};

class RouteTable {
 public:
  ~RouteTable();
  RouteTable(const RouteTable&) = delete;
  RouteTable& operator=(const RouteTable&) = delete;

  // Throws std::invalid_argument naming the field path
  // (e.g. "virtual_hosts[0].routes[2].match.safe_regex.regex: ...") on bad config.
  static std::shared_ptr<const RouteTable> create(const envoy::config::route::v3::RouteConfiguration& config);

  // The matching route for request headers (":authority" or "host", ":path", ":method", ...), or nullptr
  // (→ 404 NR).
  const RouteEntry* route(const http::HeaderMap& request, uint64_t random_value) const;
  // Virtual host selection by authority: exact (case-insensitive), then the longest "*suffix", then the
  // longest "prefix*", then "*". The port is part of the value unless ignore_port_in_host_matching.
  const VirtualHost* findVirtualHost(std::string_view authority) const;

  const std::string& name() const { return level_.name; }
  const std::vector<std::string>& internalOnlyHeaders() const { return internal_only_headers_; }
  const std::vector<std::unique_ptr<VirtualHost>>& virtualHosts() const { return vhosts_; }

 private:
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using DomainMap = std::unordered_map<std::string, const VirtualHost*, StringHash, std::equal_to<>>;
  struct WildcardLevel {
    size_t length;  // of the fixed part
    DomainMap domains;
  };

  RouteTable();
  static std::vector<std::string> routingHeaders(const std::vector<std::unique_ptr<VirtualHost>>& vhosts);
  void addDomain(const std::string& domain, const VirtualHost* vh, const std::string& path);
  static const VirtualHost* findWildcard(const std::vector<WildcardLevel>& levels, std::string_view host,
                                         bool suffix);

  std::unique_ptr<envoy::config::route::v3::RouteConfiguration>
      config_;  // typed_per_filter_config lives here
  RouteConfigLevel level_;
  std::vector<std::unique_ptr<VirtualHost>> vhosts_;
  DomainMap exact_;
  std::vector<WildcardLevel> suffixes_;  // longest first
  std::vector<WildcardLevel> prefixes_;  // longest first
  const VirtualHost* default_ = nullptr;
  bool ignore_port_ = false;
  std::vector<std::string> internal_only_headers_;
};

// Envoy Duration → milliseconds (rounded down).
template <typename D>
std::chrono::milliseconds toMillis(const D& d) {
  return std::chrono::milliseconds(d.seconds() * 1000 + d.nanos() / 1000000);
}

}  // namespace skiff::router
