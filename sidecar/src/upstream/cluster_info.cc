// Cluster config → ClusterInfo: validation, defaults and the options workers and pools read.
#include "skiff/upstream/cluster_info.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <cctype>
#include <mutex>
#include <stdexcept>

#include "skiff/common/logging.h"
#include "skiff/upstream/transport_socket.h"

#if __has_include("envoy/extensions/upstreams/http/v3/http_protocol_options.pb.h")
#include "envoy/extensions/upstreams/http/v3/http_protocol_options.pb.h"
#define SKIFF_HAVE_HTTP_PROTOCOL_OPTIONS 1
#endif

// Deprecated fields (dns_resolvers, max_requests_per_connection, ...) are still honoured, as in Envoy.
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

namespace skiff::upstream {
namespace {

using envoy::config::cluster::v3::Cluster;

constexpr const char* kHttpOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

std::chrono::milliseconds toMs(const google::protobuf::Duration& d) {
  return std::chrono::milliseconds(d.seconds() * 1000 + d.nanos() / 1000000);
}

[[noreturn]] void fail(const std::string& cluster, const std::string& message) {
  throw std::invalid_argument("cluster '" + cluster + "': " + message);
}

ResourceLimits parseLimits(const Cluster& config, envoy::config::core::v3::RoutingPriority priority) {
  ResourceLimits limits;
  for (const auto& t : config.circuit_breakers().thresholds()) {
    if (t.priority() != priority) continue;
    if (t.has_max_connections()) limits.max_connections = t.max_connections().value();
    if (t.has_max_pending_requests()) limits.max_pending_requests = t.max_pending_requests().value();
    if (t.has_max_requests()) limits.max_requests = t.max_requests().value();
    if (t.has_max_retries()) limits.max_retries = t.max_retries().value();
    if (t.has_max_connection_pools()) limits.max_connection_pools = t.max_connection_pools().value();
    limits.track_remaining = t.track_remaining();
  }
  return limits;
}

std::string observabilityName(const Cluster& config) {
  return config.alt_stat_name().empty() ? config.name() : config.alt_stat_name();
}

void appendResolver(const Cluster& config, const envoy::config::core::v3::Address& address,
                    std::string* csv) {
  if (!address.has_socket_address()) fail(config.name(), "dns_resolvers: only socket_address is supported");
  const auto& sa = address.socket_address();
  std::error_code ec;
  const auto ip = asio::ip::make_address(sa.address(), ec);
  if (ec) fail(config.name(), "dns_resolvers: '" + sa.address() + "' is not an IP address");
  const uint32_t port = sa.port_value() == 0 ? 53 : sa.port_value();
  if (!csv->empty()) csv->push_back(',');
  *csv += ip.is_v6() ? "[" + ip.to_string() + "]:" + std::to_string(port)
                     : ip.to_string() + ":" + std::to_string(port);
}

void applyHttpOptions(const envoy::config::core::v3::HttpProtocolOptions& options, ClusterInfo& info) {
  if (options.has_idle_timeout()) info.idle_timeout = toMs(options.idle_timeout());
  if (options.has_max_connection_duration())
    info.max_connection_duration = toMs(options.max_connection_duration());
  if (options.has_max_requests_per_connection()) {
    info.max_requests_per_connection = options.max_requests_per_connection().value();
  }
}

// Every check that can reject a config runs before any member (or stat) is created.
void validate(const Cluster& cfg) {
  const std::string& name = cfg.name();
  if (name.empty()) throw std::invalid_argument("Cluster.name: must not be empty");
  if (cfg.has_cluster_type()) fail(name, "cluster_type: custom cluster types are not supported");
  if (cfg.has_connect_timeout() && toMs(cfg.connect_timeout()).count() <= 0) {
    fail(name, "connect_timeout: must be greater than 0");
  }
  if (cfg.lb_policy() == Cluster::LEAST_REQUEST && cfg.least_request_lb_config().has_choice_count() &&
      cfg.least_request_lb_config().choice_count().value() < 2) {
    fail(name, "least_request_lb_config.choice_count: must be >= 2");
  }
  if (cfg.common_lb_config().has_healthy_panic_threshold()) {
    const double pct = cfg.common_lb_config().healthy_panic_threshold().value();
    if (pct < 0 || pct > 100) fail(name, "common_lb_config.healthy_panic_threshold: must be in [0, 100]");
  }
#ifdef SKIFF_HAVE_HTTP_PROTOCOL_OPTIONS
  const auto& typed = cfg.typed_extension_protocol_options();
  if (auto it = typed.find(kHttpOptionsKey); it != typed.end()) {
    envoy::extensions::upstreams::http::v3::HttpProtocolOptions options;
    if (!it->second.UnpackTo(&options)) {
      fail(name, std::string("typed_extension_protocol_options: cannot unpack ") + kHttpOptionsKey);
    }
  }
#endif
  if (cfg.has_upstream_bind_config() && cfg.upstream_bind_config().has_source_address()) {
    std::error_code ec;
    const auto& sa = cfg.upstream_bind_config().source_address();
    asio::ip::make_address(sa.address(), ec);
    if (ec) fail(name, "upstream_bind_config.source_address: '" + sa.address() + "' is not an IP address");
    if (sa.port_value() > 65535) fail(name, "upstream_bind_config.source_address.port_value: out of range");
  }
  if (cfg.has_dns_refresh_rate() && toMs(cfg.dns_refresh_rate()).count() < 1) {
    fail(name, "dns_refresh_rate: must be at least 1ms");
  }
  if (cfg.has_dns_failure_refresh_rate() && cfg.dns_failure_refresh_rate().has_base_interval() &&
      toMs(cfg.dns_failure_refresh_rate().base_interval()).count() < 1) {
    fail(name, "dns_failure_refresh_rate.base_interval: must be at least 1ms");
  }
  std::string csv;
  for (const auto& address : cfg.dns_resolvers()) appendResolver(cfg, address, &csv);

  const auto& la = cfg.load_assignment();
  const auto type = cfg.type();
  if (type == Cluster::LOGICAL_DNS &&
      (la.endpoints_size() != 1 || la.endpoints(0).lb_endpoints_size() != 1)) {
    fail(name,
         "load_assignment: LOGICAL_DNS clusters must have a single locality_lb_endpoint and a single "
         "lb_endpoint");
  }
  if (type == Cluster::ORIGINAL_DST && la.endpoints_size() > 0) {
    fail(name, "load_assignment: ORIGINAL_DST clusters must have no load assignment configured");
  }
  if (type == Cluster::ORIGINAL_DST && cfg.lb_policy() != Cluster::CLUSTER_PROVIDED) {
    fail(name, "lb_policy: " + Cluster::LbPolicy_Name(cfg.lb_policy()) +
                   " is not valid for cluster type ORIGINAL_DST; only CLUSTER_PROVIDED is allowed");
  }
  if (type != Cluster::ORIGINAL_DST && cfg.lb_policy() == Cluster::CLUSTER_PROVIDED) {
    fail(name, "lb_policy: CLUSTER_PROVIDED is only valid with cluster type ORIGINAL_DST (type is " +
                   Cluster::DiscoveryType_Name(type) + ")");
  }
  if (type != Cluster::ORIGINAL_DST && cfg.has_original_dst_lb_config()) {
    fail(name, "original_dst_lb_config: only valid with cluster type ORIGINAL_DST");
  }
  if (cfg.has_cleanup_interval() && toMs(cfg.cleanup_interval()).count() <= 0) {
    fail(name, "cleanup_interval: must be greater than 0");
  }
  if (cfg.original_dst_lb_config().has_upstream_port_override() &&
      cfg.original_dst_lb_config().upstream_port_override().value() > 65535) {
    fail(name, "original_dst_lb_config.upstream_port_override: must be <= 65535");
  }
  if (type != Cluster::STATIC && type != Cluster::STRICT_DNS && type != Cluster::LOGICAL_DNS) return;
  for (int i = 0; i < la.endpoints_size(); ++i) {
    for (int j = 0; j < la.endpoints(i).lb_endpoints_size(); ++j) {
      const auto& ep = la.endpoints(i).lb_endpoints(j);
      const std::string where = "load_assignment.endpoints[" + std::to_string(i) + "].lb_endpoints[" +
                                std::to_string(j) + "].endpoint.address";
      if (!ep.endpoint().address().has_socket_address())
        fail(name, where + ": only socket_address is supported");
      const auto& sa = ep.endpoint().address().socket_address();
      if (!sa.named_port().empty()) fail(name, where + ".named_port: not supported, use port_value");
      if (sa.port_value() > 65535) fail(name, where + ".port_value: out of range");
      if (type == Cluster::STATIC) {
        std::error_code ec;
        asio::ip::make_address(sa.address(), ec);
        if (ec) fail(name, where + ".address: '" + sa.address() + "' is not an IP address (STATIC cluster)");
      }
    }
  }
}

const std::string& validatedName(const Cluster& cfg) {
  validate(cfg);
  return cfg.name();
}

}  // namespace

std::unique_ptr<const ClusterInfo::OtherNames> ClusterInfo::otherNames(const Cluster& cfg,
                                                                       const std::string& name) {
  std::string observability = observabilityName(cfg);
  std::string stat = sanitizeClusterStatName(observability);
  if (observability == name && stat == name) return nullptr;
  return std::make_unique<const OtherNames>(OtherNames{std::move(observability), std::move(stat)});
}

namespace {

// The last version string seen, shared while the next clusters carry the same one.
std::shared_ptr<const std::string> internedVersion(std::string version) {
  static std::mutex mu;
  static std::shared_ptr<const std::string> last = std::make_shared<const std::string>();
  std::lock_guard lock(mu);
  if (*last != version) last = std::make_shared<const std::string>(std::move(version));
  return last;
}

}  // namespace

ClusterInfo::ClusterInfo(const Cluster& cfg, stats::Store& store, bool added_via_api_in, std::string version)
    : name(validatedName(cfg)),
      other_names_(otherNames(cfg, name)),
      observability_name(other_names_ ? other_names_->observability : name),
      stat_name(other_names_ ? other_names_->stat : name),
      type(cfg.type()),
      added_via_api(added_via_api_in),
      stats(store, stat_name),
      resources(*this, false, parseLimits(cfg, envoy::config::core::v3::DEFAULT)),
      resources_high(*this, true, parseLimits(cfg, envoy::config::core::v3::HIGH)),
      store_(store) {
  config_bytes_ = clusterConfigBytes(cfg);
  version_info_ = internedVersion(std::move(version));
  registerClusterTrafficStats(store, stat_name);
  for (const ClusterResources* r : {&resources, &resources_high}) {
    const ResourceLimits& limits = r->limits();
    registerCircuitBreakerStats(store, stat_name, r == &resources_high ? "high" : "default",
                                limits.track_remaining);
    // remaining_* gauges show their maximum before any traffic, as Envoy's do.
    if (limits.track_remaining) r->get();
  }
  if (cfg.has_connect_timeout()) connect_timeout = toMs(cfg.connect_timeout());
  if (cfg.has_per_connection_buffer_limit_bytes()) {
    per_connection_buffer_limit = cfg.per_connection_buffer_limit_bytes().value();
  }
  switch (cfg.lb_policy()) {
    case Cluster::ROUND_ROBIN:
      lb_policy = LbPolicy::kRoundRobin;
      break;
    case Cluster::LEAST_REQUEST:
      lb_policy = LbPolicy::kLeastRequest;
      if (cfg.least_request_lb_config().has_choice_count()) {
        least_request_choice_count = cfg.least_request_lb_config().choice_count().value();
      }
      break;
    case Cluster::RANDOM:
      lb_policy = LbPolicy::kRandom;
      break;
    case Cluster::CLUSTER_PROVIDED:  // validate() tied it to ORIGINAL_DST
      lb_policy = LbPolicy::kClusterProvided;
      break;
    default:
      SKIFF_LOG(kUpstream, warn, "cluster '{}': lb_policy {} is not implemented; using ROUND_ROBIN", name,
                Cluster::LbPolicy_Name(cfg.lb_policy()));
      lb_policy = LbPolicy::kRoundRobin;
  }
  if (cfg.common_lb_config().has_healthy_panic_threshold()) {
    healthy_panic_threshold = static_cast<uint32_t>(cfg.common_lb_config().healthy_panic_threshold().value());
  }

  // HTTP options: the legacy fields first, the typed extension (which wins in Envoy) second.
  if (cfg.has_max_requests_per_connection()) {
    max_requests_per_connection = cfg.max_requests_per_connection().value();
  }
  if (cfg.has_common_http_protocol_options()) applyHttpOptions(cfg.common_http_protocol_options(), *this);
#ifdef SKIFF_HAVE_HTTP_PROTOCOL_OPTIONS
  const auto& typed = cfg.typed_extension_protocol_options();
  if (auto it = typed.find(kHttpOptionsKey); it != typed.end()) {
    envoy::extensions::upstreams::http::v3::HttpProtocolOptions options;
    it->second.UnpackTo(&options);
    if (options.has_common_http_protocol_options())
      applyHttpOptions(options.common_http_protocol_options(), *this);
  }
#endif
  if (cfg.has_upstream_bind_config() && cfg.upstream_bind_config().has_source_address()) {
    source_address = asio::ip::make_address(cfg.upstream_bind_config().source_address().address());
    source_port = static_cast<uint16_t>(cfg.upstream_bind_config().source_address().port_value());
  }
  if (type == Cluster::ORIGINAL_DST) {
    OriginalDst od;
    const auto& lb = cfg.original_dst_lb_config();
    od.use_http_header = lb.use_http_header();
    if (!lb.http_header_name().empty()) {
      od.http_header_name = lb.http_header_name();
      for (auto& c : od.http_header_name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    if (lb.has_upstream_port_override()) {
      od.port_override = static_cast<uint16_t>(lb.upstream_port_override().value());
    }
    if (cfg.has_cleanup_interval()) od.cleanup_interval = toMs(cfg.cleanup_interval());
    original_dst = std::make_unique<const OriginalDst>(std::move(od));
  }

  switch (cfg.dns_lookup_family()) {
    case Cluster::V4_ONLY:
      dns_lookup_family = DnsLookupFamily::kV4Only;
      break;
    case Cluster::V6_ONLY:
      dns_lookup_family = DnsLookupFamily::kV6Only;
      break;
    case Cluster::V4_PREFERRED:
      dns_lookup_family = DnsLookupFamily::kV4Preferred;
      break;
    case Cluster::ALL:
      dns_lookup_family = DnsLookupFamily::kAll;
      break;
    default:
      dns_lookup_family = DnsLookupFamily::kAuto;
  }
  if (cfg.has_dns_refresh_rate()) dns_refresh_rate = toMs(cfg.dns_refresh_rate());
  dns_failure_refresh_rate = dns_refresh_rate;
  if (cfg.has_dns_failure_refresh_rate() && cfg.dns_failure_refresh_rate().has_base_interval()) {
    dns_failure_refresh_rate = toMs(cfg.dns_failure_refresh_rate().base_interval());
  }
  respect_dns_ttl = cfg.respect_dns_ttl();
  std::string resolvers;
  for (const auto& address : cfg.dns_resolvers()) appendResolver(cfg, address, &resolvers);
  dns_resolvers_csv = resolvers;
  dns_use_tcp = cfg.use_tcp_for_dns_lookups();
  // dns_resolution_config (deprecated) is not in our proto subset; typed_dns_resolver_config is not read yet.
  transport = makeUpstreamTransportFactory(cfg, store, "cluster." + stat_name + ".");
}

std::string clusterConfigBytes(const Cluster& config) {
  // Deterministic (map entries sorted), so equal configs give equal bytes.
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream out(&bytes);
    google::protobuf::io::CodedOutputStream coded(&out);
    coded.SetSerializationDeterministic(true);
    config.SerializeToCodedStream(&coded);
  }
  bytes.shrink_to_fit();
  return bytes;
}

ClusterInfo::~ClusterInfo() {
  delete traffic_stats_.load();
}

Cluster ClusterInfo::config() const {
  Cluster out;
  out.ParseFromString(config_bytes_);
  return out;
}

ClusterTrafficStats& ClusterInfo::trafficStats() const {
  ClusterTrafficStats* stats_now = traffic_stats_.load(std::memory_order_acquire);
  if (stats_now != nullptr) return *stats_now;
  // First use, maybe on several workers at once: one wins, the others drop theirs (same cells anyway).
  auto* made = new ClusterTrafficStats(store_, stat_name);
  if (traffic_stats_.compare_exchange_strong(stats_now, made, std::memory_order_acq_rel)) return *made;
  delete made;
  return *stats_now;
}

namespace {
const ResourceLimits& defaultLimits() {
  static const ResourceLimits kDefaults;
  return kDefaults;
}
}  // namespace

ClusterResources::ClusterResources(const ClusterInfo& owner, bool high, const ResourceLimits& limits)
    : owner_(owner), high_(high) {
  const ResourceLimits& d = defaultLimits();
  const bool is_default =
      limits.max_connections == d.max_connections && limits.max_pending_requests == d.max_pending_requests &&
      limits.max_requests == d.max_requests && limits.max_retries == d.max_retries &&
      limits.max_connection_pools == d.max_connection_pools && limits.track_remaining == d.track_remaining;
  if (!is_default) limits_ = std::make_unique<const ResourceLimits>(limits);
}

ClusterResources::~ClusterResources() {
  delete manager_.load();
}

const ResourceLimits& ClusterResources::limits() const {
  return limits_ ? *limits_ : defaultLimits();
}

ResourceManager& ClusterResources::get() const {
  ResourceManager* now = manager_.load(std::memory_order_acquire);
  if (now != nullptr) return *now;
  auto* made = new ResourceManager(owner_.store_, owner_.stat_name, high_ ? "high" : "default", limits());
  if (manager_.compare_exchange_strong(now, made, std::memory_order_acq_rel)) return *made;
  delete made;
  return *now;
}

}  // namespace skiff::upstream
