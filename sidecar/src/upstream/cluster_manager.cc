// Main-thread cluster manager: cluster lifecycle, host-set building, DNS refresh and publishing to workers.
#include "skiff/upstream/cluster_manager.h"

#include <algorithm>
#include <stdexcept>
#include <unordered_map>

#include "skiff/common/logging.h"
#include "upstream/cluster_entry.h"

namespace skiff::upstream {

using envoy::config::endpoint::v3::ClusterLoadAssignment;
using envoy::config::endpoint::v3::LbEndpoint;
using envoy::config::endpoint::v3::LocalityLbEndpoints;

namespace {

// Previous hosts by address, so unchanged hosts keep their identity (and stats) across updates.
using HostIndex = std::unordered_multimap<asio::ip::tcp::endpoint, HostSharedPtr, EndpointHash>;

HostIndex indexHosts(const HostSetConstSharedPtr& hosts) {
  HostIndex index;
  if (hosts) {
    index.reserve(hosts->hosts.size());
    for (const auto& host : hosts->hosts) index.emplace(host->endpoint, host);
  }
  return index;
}

bool sameAttributes(const Host& a, const Host& b) {
  return a.hostname == b.hostname && a.weight == b.weight && a.priority == b.priority &&
         (a.locality == b.locality || (a.locality && b.locality && *a.locality == *b.locality)) &&
         a.health_status == b.health_status && a.metadata == b.metadata;
}

// The locality (and metadata) of a LocalityLbEndpoints, made once and shared by its hosts; null when empty.
std::shared_ptr<const HostLocality> makeLocality(const LocalityLbEndpoints& locality) {
  const auto& l = locality.locality();
  const bool no_metadata = !locality.has_metadata() || locality.metadata().ByteSizeLong() == 0;
  if (l.region().empty() && l.zone().empty() && l.sub_zone().empty() && no_metadata) return nullptr;
  auto made = std::make_shared<HostLocality>(HostLocality{l.region(), l.zone(), l.sub_zone(), {}});
  if (!no_metadata) made->metadata = locality.metadata();
  return made;
}

// Builds a host, or returns the previous one when nothing about it changed.
HostSharedPtr makeHost(const LocalityLbEndpoints& locality,
                       std::shared_ptr<const HostLocality> shared_locality, const LbEndpoint& ep,
                       const asio::ip::tcp::endpoint& endpoint, std::string hostname,
                       const HostIndex& previous) {
  auto host = std::make_shared<Host>();
  host->endpoint = endpoint;
  host->hostname = std::move(hostname);
  host->weight =
      ep.has_load_balancing_weight() ? std::max<uint32_t>(ep.load_balancing_weight().value(), 1) : 1;
  host->priority = std::min(locality.priority(), kMaxHostPriority);  // applyEndpoints rejects larger ones
  host->locality = std::move(shared_locality);
  host->health_status = envoy::config::core::v3::HealthStatus_IsValid(ep.health_status())
                            ? ep.health_status()
                            : envoy::config::core::v3::UNKNOWN;
  host->metadata = ep.metadata();
  host->healthy.store(healthStatusIsUsable(host->health_status));
  auto [begin, end] = previous.equal_range(host->endpoint);
  for (auto it = begin; it != end; ++it) {
    if (sameAttributes(*it->second, *host)) return it->second;
  }
  if (begin != end && begin->second->hasStats()) {
    // Same address, new attributes (weight, health...): keep the counters Envoy would keep.
    const HostStats& old = begin->second->peekStats();
    HostStats& now = host->stats();
    for (auto [dst, src] : {std::pair{&now.rq_total, &old.rq_total},
                            {&now.rq_error, &old.rq_error},
                            {&now.rq_success, &old.rq_success},
                            {&now.rq_timeout, &old.rq_timeout},
                            {&now.cx_total, &old.cx_total},
                            {&now.cx_connect_fail, &old.cx_connect_fail}}) {
      dst->store(src->load(std::memory_order_relaxed), std::memory_order_relaxed);
    }
  }
  return host;
}

bool samePointers(const HostSetConstSharedPtr& a, const HostSetConstSharedPtr& b) {
  if (!a || !b) return a == b;
  return a->hosts == b->hosts;
}

bool sameMembership(const HostSetConstSharedPtr& a, const HostSetConstSharedPtr& b) {
  auto addresses = [](const HostSetConstSharedPtr& s) {
    std::vector<asio::ip::tcp::endpoint> out;
    if (s) {
      out.reserve(s->hosts.size());
      for (const auto& h : s->hosts) out.push_back(h->endpoint);
    }
    std::sort(out.begin(), out.end());
    return out;
  };
  return addresses(a) == addresses(b);
}

}  // namespace

ClusterManager::ClusterManager(asio::io_context& main_loop, stats::Store& store)
    : loop_(main_loop),
      store_(store),
      cluster_added_(store.counter("cluster_manager.cluster_added")),
      cluster_modified_(store.counter("cluster_manager.cluster_modified")),
      cluster_removed_(store.counter("cluster_manager.cluster_removed")),
      cluster_updated_(store.counter("cluster_manager.cluster_updated")),
      active_clusters_(store.gauge("cluster_manager.active_clusters")),
      warming_clusters_(store.gauge("cluster_manager.warming_clusters")) {}

ClusterManager::~ClusterManager() = default;

void ClusterManager::addOrUpdateCluster(const envoy::config::cluster::v3::Cluster& config, bool added_via_api,
                                        std::string version_info) {
  auto existing = clusters_.find(config.name());
  if (existing != clusters_.end() && existing->second->info->configBytes() == clusterConfigBytes(config)) {
    return;  // unchanged: Envoy skips identical updates
  }
  auto info = std::make_shared<const ClusterInfo>(config, store_, added_via_api, std::move(version_info));
  auto cluster = std::make_shared<Cluster>();
  cluster->info = info;
  if (!info->dns_resolvers_csv.empty() || info->dns_use_tcp || info->dns_no_default_search_domain) {
    DnsResolverOptions options = dns_test_options_;
    options.servers_csv = info->dns_resolvers_csv;
    options.use_tcp = info->dns_use_tcp;
    options.no_default_search_domain = info->dns_no_default_search_domain;
    cluster->dnsState().own_resolver = std::make_unique<DnsResolver>(loop_, options);
  }
  if (cluster->isDns()) {
    for (const auto& locality : config.load_assignment().endpoints()) {
      for (const auto& ep : locality.lb_endpoints()) {
        auto target = std::make_unique<Cluster::Target>(loop_);
        target->dns_name = ep.endpoint().address().socket_address().address();
        target->port = static_cast<uint16_t>(ep.endpoint().address().socket_address().port_value());
        target->locality = locality;
        target->locality.clear_lb_endpoints();
        target->endpoint = ep;
        cluster->dnsState().targets.push_back(std::move(target));
      }
    }
  }
  if (existing != clusters_.end()) {
    // The previous version keeps serving until this one has hosts (its DNS timers die with it).
    cluster->active_info = existing->second->active_info;
    cluster->active_hosts = existing->second->active_hosts;
    if (existing->second->warming) warming_clusters_.dec();
    existing->second = cluster;
    cluster_modified_.inc();
  } else {
    clusters_.emplace(config.name(), cluster);
    cluster_added_.inc();
  }
  warming_clusters_.inc();
  SKIFF_LOG(kUpstream, info, "cluster '{}' {} ({})", cluster->info->name,
            existing != clusters_.end() ? "updated" : "added",
            envoy::config::cluster::v3::Cluster::DiscoveryType_Name(info->type));
  if (started_) startCluster(*cluster);
}

bool ClusterManager::removeCluster(const std::string& name) {
  auto it = clusters_.find(name);
  if (it == clusters_.end()) return false;
  const bool was_active = it->second->active_info != nullptr;
  if (it->second->warming) warming_clusters_.dec();
  if (was_active) active_clusters_.dec();
  clusters_.erase(it);
  cluster_removed_.inc();
  if (was_active && started_ && update_cb_) update_cb_(name, nullptr, nullptr);
  checkInitialized();
  return true;
}

void ClusterManager::start() {
  if (started_) return;
  started_ = true;
  for (auto& [name, cluster] : clusters_) startCluster(*cluster);
  checkInitialized();
}

void ClusterManager::startCluster(Cluster& cluster) {
  const auto& info = cluster.info;
  switch (info->type) {
    case envoy::config::cluster::v3::Cluster::STATIC: {
      // Reuses the checks and host building of updateEndpoints.
      const auto config = info->config();
      applyEndpoints(cluster.info->name, config.load_assignment(), /*is_static_config=*/true);
      break;
    }
    case envoy::config::cluster::v3::Cluster::STRICT_DNS:
    case envoy::config::cluster::v3::Cluster::LOGICAL_DNS: {
      auto shared = clusters_.at(cluster.info->name);
      if (cluster.targetCount() == 0) {
        publish(cluster, info, std::make_shared<const HostSet>());
        break;
      }
      for (size_t i = 0; i < cluster.targetCount(); ++i) resolveTarget(shared, i);
      break;
    }
    case envoy::config::cluster::v3::Cluster::EDS:
      // Hosts arrive through updateEndpoints(). An updated EDS cluster keeps its current hosts meanwhile
      // (the subscription for the same name keeps delivering into it).
      if (cluster.active_hosts) publish(cluster, info, cluster.active_hosts);
      break;
    default:  // ORIGINAL_DST: hosts are made per connection by the router.
      publish(cluster, info, std::make_shared<const HostSet>());
  }
}

DnsResolver& ClusterManager::resolverFor(Cluster& cluster) {
  if (cluster.dns && cluster.dns->own_resolver) return *cluster.dns->own_resolver;
  if (!default_resolver_) default_resolver_ = std::make_unique<DnsResolver>(loop_, dns_test_options_);
  return *default_resolver_;
}

void ClusterManager::resolveTarget(const std::shared_ptr<Cluster>& cluster, size_t index) {
  cluster->info->stats.update_attempt().inc();
  std::weak_ptr<Cluster> weak = cluster;
  resolverFor(*cluster).resolve(cluster->target(index).dns_name, cluster->info->dns_lookup_family,
                                [this, weak, index](DnsStatus status, std::vector<DnsResponse> responses) {
                                  // A removed or replaced cluster takes its pending answers with it.
                                  if (auto c = weak.lock())
                                    onDnsResult(c, index, status, std::move(responses));
                                });
}

void ClusterManager::onDnsResult(const std::shared_ptr<Cluster>& cluster, size_t index, DnsStatus status,
                                 const std::vector<DnsResponse>& responses) {
  const ClusterInfo& info = *cluster->info;
  Cluster::Target& target = cluster->target(index);
  std::chrono::milliseconds next = info.dns_failure_refresh_rate;
  if (status == DnsStatus::kSuccess) {
    info.stats.update_success().inc();
    HostIndex previous;
    for (const auto& host : target.hosts) previous.emplace(host->endpoint, host);
    std::vector<HostSharedPtr> hosts;
    std::chrono::seconds min_ttl{0};
    for (const auto& response : responses) {
      hosts.push_back(makeHost(target.locality, makeLocality(target.locality), target.endpoint,
                               {response.address, target.port}, target.dns_name, previous));
      if (response.ttl.count() > 0 && (min_ttl.count() == 0 || response.ttl < min_ttl))
        min_ttl = response.ttl;
      // LOGICAL_DNS: only the first address is used; the host keeps the DNS name.
      if (info.type == envoy::config::cluster::v3::Cluster::LOGICAL_DNS) break;
    }
    target.hosts = std::move(hosts);
    next = (info.respect_dns_ttl && min_ttl.count() > 0) ? std::chrono::milliseconds(min_ttl)
                                                         : info.dns_refresh_rate;
    SKIFF_LOG(kDns, debug, "cluster '{}': '{}' resolved to {} address(es)", cluster->info->name,
              target.dns_name, responses.size());
  } else {
    // Failure keeps the previous hosts (Envoy does the same) and retries at the failure rate.
    info.stats.update_failure().inc();
    SKIFF_LOG(kDns, warn, "cluster '{}': DNS resolution of '{}' failed", cluster->info->name,
              target.dns_name);
  }
  target.resolved = true;
  std::weak_ptr<Cluster> weak = cluster;
  target.timer.expires_after(next);
  target.timer.async_wait([this, weak, index](const std::error_code& ec) {
    if (ec) return;  // cancelled: the cluster was replaced, removed or the manager destroyed
    if (auto c = weak.lock()) resolveTarget(c, index);
  });
  rebuildDnsHosts(*cluster);
}

void ClusterManager::rebuildDnsHosts(Cluster& cluster) {
  for (const auto& target : cluster.dnsState().targets) {
    if (!target->resolved) return;  // still warming: publish once every name has answered
  }
  auto set = std::make_shared<HostSet>();
  for (const auto& target : cluster.dnsState().targets) {
    set->hosts.insert(set->hosts.end(), target->hosts.begin(), target->hosts.end());
  }
  if (!cluster.warming && cluster.active_info == cluster.info && samePointers(cluster.active_hosts, set)) {
    cluster.info->stats.update_no_rebuild().inc();
    return;
  }
  publish(cluster, cluster.info, std::move(set));
}

bool ClusterManager::updateEndpoints(const std::string& name, const ClusterLoadAssignment& cla) {
  return applyEndpoints(name, cla, false);
}

bool ClusterManager::applyEndpoints(const std::string& name, const ClusterLoadAssignment& cla,
                                    bool is_static_config) {
  auto it = clusters_.find(name);
  if (it == clusters_.end()) return false;
  Cluster& cluster = *it->second;
  const ClusterInfo& info = *cluster.info;
  if (!is_static_config) info.stats.update_attempt().inc();

  // Parse everything first so a bad assignment changes nothing.
  const HostIndex previous = indexHosts(cluster.active_hosts);
  auto set = std::make_shared<HostSet>();
  size_t count = 0;
  for (const auto& locality : cla.endpoints()) count += locality.lb_endpoints_size();
  set->hosts.reserve(count);  // exact: a host set lives as long as its assignment
  for (int i = 0; i < cla.endpoints_size(); ++i) {
    const auto& locality = cla.endpoints(i);
    if (locality.priority() > kMaxHostPriority) {
      throw std::invalid_argument("cluster '" + name + "': endpoints[" + std::to_string(i) +
                                  "].priority: " + std::to_string(locality.priority()) + " is above " +
                                  std::to_string(kMaxHostPriority));
    }
    const auto shared_locality = makeLocality(locality);
    for (int j = 0; j < locality.lb_endpoints_size(); ++j) {
      const auto& ep = locality.lb_endpoints(j);
      // Made only for an error: 50,000 endpoints per push would otherwise build 50,000 strings.
      auto where = [&] {
        return "cluster '" + name + "': endpoints[" + std::to_string(i) + "].lb_endpoints[" +
               std::to_string(j) + "].endpoint.address";
      };
      if (!ep.endpoint().address().has_socket_address()) {
        throw std::invalid_argument(where() + ": only socket_address is supported");
      }
      const auto& sa = ep.endpoint().address().socket_address();
      std::error_code ec;
      const auto ip = asio::ip::make_address(sa.address(), ec);
      if (ec) throw std::invalid_argument(where() + ".address: '" + sa.address() + "' is not an IP address");
      if (sa.port_value() > 65535) throw std::invalid_argument(where() + ".port_value: out of range");
      set->hosts.push_back(makeHost(locality, shared_locality, ep,
                                    {ip, static_cast<uint16_t>(sa.port_value())}, ep.endpoint().hostname(),
                                    previous));
    }
  }
  if (!is_static_config) {
    info.stats.update_success().inc();
    if (set->hosts.empty()) info.stats.update_empty().inc();
  }
  if (!started_) {
    cluster.active_hosts = set;  // kept for start(); nothing is published before it
    cluster.active_info = nullptr;
    return true;
  }
  if (!cluster.warming && cluster.active_info == cluster.info && samePointers(cluster.active_hosts, set)) {
    info.stats.update_no_rebuild().inc();
    return true;
  }
  publish(cluster, cluster.info, std::move(set));
  return true;
}

void ClusterManager::markInitialized(const std::string& name) {
  auto it = clusters_.find(name);
  if (it == clusters_.end() || !it->second->warming || !started_) return;
  publish(*it->second, it->second->info,
          it->second->active_hosts ? it->second->active_hosts : std::make_shared<const HostSet>());
}

void ClusterManager::publish(Cluster& cluster, ClusterInfoConstSharedPtr info, HostSetConstSharedPtr hosts) {
  const ClusterConfigStats& stats = info->stats;
  if (cluster.active_info == nullptr) active_clusters_.inc();
  if (cluster.warming) {
    cluster.warming = false;
    warming_clusters_.dec();
  }
  if (!sameMembership(cluster.active_hosts, hosts) || cluster.active_info == nullptr) {
    stats.membership_change().inc();
  }
  if (cluster.active_hosts != nullptr) cluster_updated_.inc();
  int64_t healthy = 0, degraded = 0, excluded = 0;
  uint32_t max_weight = 0;
  for (const auto& host : hosts->hosts) {
    if (host->healthy.load(std::memory_order_relaxed) && healthStatusIsUsable(host->health_status)) ++healthy;
    if (host->health_status == envoy::config::core::v3::DEGRADED) ++degraded;
    if (host->health_status == envoy::config::core::v3::DRAINING) ++excluded;
    max_weight = std::max(max_weight, host->weight);
  }
  // Main-thread-owned gauges: set() writes this thread's cell only, which is the whole value.
  stats.membership_total().set(static_cast<int64_t>(hosts->hosts.size()));
  stats.membership_healthy().set(healthy);
  stats.membership_degraded().set(degraded);
  stats.membership_excluded().set(excluded);
  stats.max_host_weight().set(max_weight);
  cluster.active_info = info;
  cluster.active_hosts = hosts;
  if (update_cb_) update_cb_(cluster.info->name, std::move(info), std::move(hosts));
  checkInitialized();
}

void ClusterManager::checkInitialized() {
  if (!started_ || initialized_fired_) return;
  for (const auto& [name, cluster] : clusters_) {
    if (cluster->warming) return;
  }
  initialized_fired_ = true;
  if (initialized_cb_) initialized_cb_();
}

ClusterInfoConstSharedPtr ClusterManager::info(const std::string& name) const {
  auto it = clusters_.find(name);
  return it == clusters_.end() ? nullptr : it->second->active_info;
}

ClusterInfoConstSharedPtr ClusterManager::latestInfo(const std::string& name) const {
  auto it = clusters_.find(name);
  return it == clusters_.end() ? nullptr : it->second->info;
}

HostSetConstSharedPtr ClusterManager::hosts(const std::string& name) const {
  auto it = clusters_.find(name);
  return it == clusters_.end() || !it->second->active_info ? nullptr : it->second->active_hosts;
}

std::vector<std::string> ClusterManager::clusterNames() const {
  std::vector<std::string> out;
  for (const auto& [name, cluster] : clusters_) out.push_back(name);
  return out;
}

std::vector<ClusterInfoConstSharedPtr> ClusterManager::allClusters() const {
  std::vector<ClusterInfoConstSharedPtr> out;
  for (const auto& [name, cluster] : clusters_) out.push_back(cluster->info);
  return out;
}

}  // namespace skiff::upstream
