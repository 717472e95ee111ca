// XdsManager: bootstrap dynamic_resources -> ADS subscriptions; CDS into the ClusterManager (EDS side in
// xds_endpoints.cc), RDS into route providers, LDS into a ListenerSink; xDS stats, warming timers, readiness.
#include "server/xds/xds_manager.h"

#include <google/protobuf/util/message_differencer.h>
#include <google/protobuf/util/time_util.h>
#include <grpcpp/security/credentials.h>

#include <malloc.h>

#include <algorithm>
#include <asio/post.hpp>
#include <limits>
#include <stdexcept>
#include <utility>

#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "envoy/extensions/transport_sockets/tls/v3/secret.pb.h"
#include "server/xds/control_plane_tls.h"
#include "server/xds/nack_message.h"
#include "server/xds/route_config_provider.h"
#include "server/xds/secret_refs.h"
#include "server/xds/version_hash.h"
#include "skiff/common/logging.h"
#include "skiff/config/typed_struct.h"
#include "skiff/envoy_filter/runtime.h"
#include "skiff/filters/http_filter_registry.h"
#include "skiff/tls/secret_provider.h"
#include "skiff/xds/node.h"

namespace skiff::server {

namespace {

using envoy::config::bootstrap::v3::Bootstrap;
using envoy::config::cluster::v3::Cluster;
using envoy::config::core::v3::ApiConfigSource;
using envoy::config::core::v3::ConfigSource;
using google::protobuf::util::MessageDifferencer;
using google::protobuf::util::TimeUtil;

constexpr std::chrono::milliseconds kDefaultInitialFetchTimeout{15000};

// A ConfigSource Skiff can follow: `ads: {}` (resource_api_version V3 or unset).
void checkAdsSource(const ConfigSource& source, const std::string& path) {
  if (source.has_path_config_source() || !source.path().empty()) {
    throw std::invalid_argument(path + ".path: file-based config sources are not supported; use ads: {}");
  }
  if (source.has_api_config_source()) {
    throw std::invalid_argument(
        path + ".api_config_source: per-type gRPC/REST sources are not supported; use ads: {}");
  }
  if (source.has_self()) throw std::invalid_argument(path + ".self: not supported; use ads: {}");
  if (!source.has_ads()) throw std::invalid_argument(path + ": must be ads: {}");
  if (source.resource_api_version() == envoy::config::core::v3::V2) {
    throw std::invalid_argument(path + ".resource_api_version: V2 is not supported (use V3)");
  }
}

int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::chrono::milliseconds initialFetchTimeout(const ConfigSource& source) {
  if (!source.has_initial_fetch_timeout()) return kDefaultInitialFetchTimeout;
  return std::chrono::milliseconds(TimeUtil::DurationToMilliseconds(source.initial_fetch_timeout()));
}

bool XdsManager::configured(const Bootstrap& bootstrap) {
  return bootstrap.has_dynamic_resources() && bootstrap.dynamic_resources().ByteSizeLong() > 0;
}

void XdsManager::validate(const Bootstrap& bootstrap) {
  const auto& dr = bootstrap.dynamic_resources();
  const std::string p = "dynamic_resources";
  if (!dr.lds_resources_locator().empty())
    throw std::invalid_argument(p + ".lds_resources_locator: xdstp resource locators are not supported");
  if (!dr.cds_resources_locator().empty())
    throw std::invalid_argument(p + ".cds_resources_locator: xdstp resource locators are not supported");
  if (dr.has_cds_config()) checkAdsSource(dr.cds_config(), p + ".cds_config");
  if (dr.has_lds_config()) checkAdsSource(dr.lds_config(), p + ".lds_config");
  if (!dr.has_ads_config()) {
    throw std::invalid_argument(p + ".ads_config: must be set (Skiff speaks xDS over ADS only)");
  }
  const auto& ads = dr.ads_config();
  switch (ads.api_type()) {
    case ApiConfigSource::GRPC:
    case ApiConfigSource::DELTA_GRPC:
    case ApiConfigSource::AGGREGATED_GRPC:
    case ApiConfigSource::AGGREGATED_DELTA_GRPC:
      break;
    default:
      throw std::invalid_argument(p +
                                  ".ads_config.api_type: " + ApiConfigSource::ApiType_Name(ads.api_type()) +
                                  " is not supported (use GRPC or DELTA_GRPC)");
  }
  if (ads.transport_api_version() == envoy::config::core::v3::V2) {
    throw std::invalid_argument(p + ".ads_config.transport_api_version: V2 is not supported (use V3)");
  }
  if (ads.cluster_names_size() > 0) {
    throw std::invalid_argument(p + ".ads_config.cluster_names: only grpc_services is supported for gRPC");
  }
  adsTarget(bootstrap);
  controlPlaneTls(bootstrap);  // throws on TLS settings the channel cannot use
}

XdsManager::TypeCounters XdsManager::makeCounters(const std::string& p) {
  return TypeCounters{store_.counter(p + "update_attempt"),
                      store_.counter(p + "update_success"),
                      store_.counter(p + "update_rejected"),
                      store_.counter(p + "update_failure"),
                      store_.counter(p + "init_fetch_timeout"),
                      store_.counter(p + "config_reload"),
                      store_.gauge(p + "version"),
                      store_.gauge(p + "update_time"),
                      {}};
}

XdsManager::XdsManager(asio::io_context& main, stats::Store& store, upstream::ClusterManager& clusters,
                       const Bootstrap& bootstrap)
    : main_(main),
      store_(store),
      clusters_(clusters),
      ads_cds_(bootstrap.dynamic_resources().has_cds_config()),
      ads_lds_(bootstrap.dynamic_resources().has_lds_config()),
      cds_stats_(makeCounters("cluster_manager.cds.")),
      lds_stats_(makeCounters("listener_manager.lds.")),
      connected_state_(store.gauge("control_plane.connected_state")),
      rate_limit_enforced_(store.counter("control_plane.rate_limit_enforced")),
      housekeeping_timer_(main),
      warm_timer_(main),
      trim_timer_(main) {
  validate(bootstrap);
  // A fixed trim threshold (glibc's default value) turns off glibc's dynamic one, which grows after a big
  // block is freed (a 2 MB DiscoveryResponse) and then keeps megabytes of free memory at the top of the
  // gRPC threads' malloc arenas for good: malloc_trim() does not shrink those arenas' tops.
  ::mallopt(M_TRIM_THRESHOLD, 128 * 1024);
  // Fixing the trim threshold also freezes glibc's mmap threshold at 128 KiB, which would make every
  // larger allocation on the workers (bodies, big gRPC messages) a fresh mmap/munmap. Keep blocks under
  // 1 MiB on the heap.
  ::mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
  allowed_unknown_ = allowedUnknownExtensions(bootstrap);
  for (const auto& name : allowed_unknown_) {
    SKIFF_LOG(kConfig, info, "xds: unknown HTTP filter '{}' will be skipped (skiff.allow_unknown_extensions)",
              name);
  }
  const auto& dr = bootstrap.dynamic_resources();
  if (ads_cds_) cds_timeout_ = initialFetchTimeout(dr.cds_config());
  if (ads_lds_) lds_timeout_ = initialFetchTimeout(dr.lds_config());

  xds::AdsClientOptions options;
  options.target = adsTarget(bootstrap);
  const auto api_type = dr.ads_config().api_type();
  options.delta =
      api_type == ApiConfigSource::DELTA_GRPC || api_type == ApiConfigSource::AGGREGATED_DELTA_GRPC;
  options.node = bootstrap.node();
  xds::foldIstioMetaEnv(xds::processEnvironment(), *options.node.mutable_metadata());
  xds::setSkiffIdentity(options.node);
  options.set_node_on_first_message_only = dr.ads_config().set_node_on_first_message_only();
  if (dr.ads_config().has_rate_limit_settings()) {
    const auto& rl = dr.ads_config().rate_limit_settings();
    xds::AdsClientOptions::RateLimit limit;
    if (rl.has_max_tokens()) limit.max_tokens = std::max<uint32_t>(rl.max_tokens().value(), 1);
    if (rl.has_fill_rate()) {
      if (!(rl.fill_rate().value() > 0)) {
        throw std::invalid_argument(
            "dynamic_resources.ads_config.rate_limit_settings.fill_rate: must be > 0");
      }
      limit.fill_rate = rl.fill_rate().value();
    }
    options.rate_limit = limit;
  }
  if (auto tls = controlPlaneTls(bootstrap)) {
    options.credentials = controlPlaneCredentials(*tls);  // re-reads rotated certificate files
    options.ssl_target_name_override = tls->sni;
    SKIFF_LOG(kConfig, info, "xds: TLS to the control plane{}{}", tls->cert_chain.empty() ? "" : " (mTLS)",
              tls->sni.empty() ? "" : ", server name '" + tls->sni + "'");
  }
  options.executor = [&main](std::function<void()> fn) { asio::post(main, std::move(fn)); };
  std::weak_ptr<bool> alive = alive_;
  options.on_connection_state = [this, alive](bool connected) {
    if (!alive.expired()) onConnectionState(connected);
  };
  SKIFF_LOG(kConfig, info, "xds: ADS ({}) to {}", options.delta ? "delta" : "state of the world",
            options.target);
  client_ = std::make_unique<xds::AdsClient>(std::move(options));

  for (const auto& l : bootstrap.static_resources().listeners()) {
    for (auto& name : adsSecretNames(l)) static_secret_refs_.insert(std::move(name));
    noteSecretTimeouts(adsSecretFetchTimeouts(l));
  }
  for (const auto& c : bootstrap.static_resources().clusters()) {
    for (auto& name : adsSecretNames(c)) static_secret_refs_.insert(std::move(name));
    noteSecretTimeouts(adsSecretFetchTimeouts(c));
    static_clusters_.insert(c.name());
    if (c.type() == Cluster::EDS) trackEdsCluster(c);
  }

  auto& rds = RouteConfigProviderManager::instance();
  rds.setOnCreated([this, alive](const std::shared_ptr<RouteConfigProvider>& provider) {
    if (alive.expired()) return;
    startRdsTimer(provider);
    refreshRdsSubscription();
  });

  if (ads_cds_) {
    cds_initial_done_ = false;
    xds::SubscriptionCallbacks callbacks;
    callbacks.on_update = [this](const xds::ConfigUpdate& u) { return onClusters(u); };
    callbacks.on_initial_fetch_timeout = [this] {
      SKIFF_LOG(kConfig, warn, "xds: CDS initial fetch timed out");
      cds_initial_done_ = true;
      scheduleSync();
      checkInitialized();
    };
    callbacks.initial_fetch_timeout = cds_timeout_;
    // Delta reconnects name the versions held here: the client keeps no second copy per cluster.
    callbacks.known_versions = [this](const xds::SubscriptionCallbacks::VersionVisitor& visit) {
      for (const auto& [name, record] : dynamic_clusters_) {
        if (record.version) visit(name, *record.version);
      }
    };
    client_->subscribe(std::string(xds::kClusterType), {}, std::move(callbacks));
  }
  if (ads_lds_) {
    lds_initial_done_ = false;
    xds::SubscriptionCallbacks callbacks;
    callbacks.on_update = [this](const xds::ConfigUpdate& u) { return onListeners(u); };
    callbacks.on_initial_fetch_timeout = [this] {
      SKIFF_LOG(kConfig, warn, "xds: LDS initial fetch timed out");
      lds_initial_done_ = true;
      scheduleSync();
      checkInitialized();
    };
    callbacks.initial_fetch_timeout = lds_timeout_;
    client_->subscribe(std::string(xds::kListenerType), {}, std::move(callbacks));
  }
}

XdsManager::~XdsManager() {
  *alive_ = false;
  alive_.reset();
  RouteConfigProviderManager::instance().setOnCreated(nullptr);
  client_.reset();  // waits for gRPC; queued callbacks become no-ops
}

void XdsManager::start() {
  refreshEdsSubscription();
  std::vector<std::pair<std::string, std::chrono::milliseconds>> waiting;
  forEachEds([&](const std::string& cluster, const EdsTrack& track) {
    if (!endpoints_.count(track.service ? *track.service : cluster))
      waiting.emplace_back(cluster, track.timeout());
  });
  for (const auto& [cluster, timeout] : waiting) startWarmTimer(cluster, timeout);
  for (const auto& provider : RouteConfigProviderManager::instance().live()) startRdsTimer(provider);
  refreshRdsSubscription();
  refreshSdsSubscription();
  client_->start();
  housekeeping();
  checkInitialized();
}

std::string XdsManager::edsNameOf(const Cluster& cluster) {
  return cluster.eds_cluster_config().service_name().empty() ? cluster.name()
                                                             : cluster.eds_cluster_config().service_name();
}

stats::Counter XdsManager::clusterCounter(const std::string& cluster, const std::string& name) {
  auto info = clusters_.info(cluster);
  std::string stat = info ? info->stat_name : cluster;
  std::replace(stat.begin(), stat.end(), ':', '_');
  return store_.counter("cluster." + stat + "." + name);
}

XdsManager::Version XdsManager::internVersion(const std::string& version) {
  if (!last_version_ || *last_version_ != version)
    last_version_ = std::make_shared<const std::string>(version);
  return last_version_;
}

bool XdsManager::sameCluster(const ClusterRecord& record, const Cluster& cluster) const {
  if (record.received) {
    Cluster previous;
    return previous.ParseFromString(*record.received) && MessageDifferencer::Equals(previous, cluster);
  }
  const auto info = clusters_.latestInfo(cluster.name());
  if (!info) return false;
  if (info->configBytes() == upstream::clusterConfigBytes(cluster)) return true;
  // Other bytes may still be the same cluster: a control plane's encoder may pack an Any (transport socket,
  // typed_extension_protocol_options...) with another field or map order, which deterministic
  // serialization of the outer message keeps as is. MessageDifferencer compares Anys by their unpacked
  // content. Reached only when the bytes differ (a real change costs a rebuild anyway).
  return MessageDifferencer::Equals(info->config(), cluster);
}

std::string XdsManager::onClusters(const xds::ConfigUpdate& update) {
  std::vector<std::string> errors;
  std::set<std::string> names;
  bool any_applied = false;
  const bool first = !cds_initial_done_;
  for (const auto& r : update.resources) {
    names.insert(r.name);
    Cluster cluster;
    if (!r.resource.UnpackTo(&cluster)) {
      errors.push_back(r.name + ": the Cluster does not decode");
      continue;
    }
    if (cluster.name() != r.name) {
      errors.push_back(r.name + ": name: the resource name and Cluster.name ('" + cluster.name() +
                       "') differ");
      continue;
    }
    if (static_clusters_.count(cluster.name())) {
      SKIFF_LOG(kConfig, warn, "cds: cluster '{}' is static; the CDS version is ignored", cluster.name());
      continue;
    }
    auto existing = dynamic_clusters_.find(cluster.name());
    // Same bytes: unchanged without decoding the old one (a SotW CDS push resends every cluster).
    const uint64_t hash = xxHash64(r.resource.value());
    const bool changed = existing == dynamic_clusters_.end() ||
                         (existing->second.hash != hash && !sameCluster(existing->second, cluster));
    if (!changed) {
      pending_clusters_.erase(cluster.name());  // back to what is active: nothing to wait for
      existing->second.version = internVersion(r.version);
      // The same cluster encoded otherwise: its next resend in that encoding takes the fast path.
      if (!existing->second.received) existing->second.hash = hash;
      continue;
    }
    // A cluster whose TLS secrets come over ADS warms until they are in (the active version keeps serving).
    auto refs = adsSecretNames(cluster);
    if (!refs.empty()) noteSecretTimeouts(adsSecretFetchTimeouts(cluster));
    setSecretRefs(cluster_secret_refs_, cluster.name(), std::move(refs));
    auto refs_now = cluster_secret_refs_.find(cluster.name());
    if (refs_now != cluster_secret_refs_.end() && !secretsReady(refs_now->second)) {
      hold(pending_clusters_, r, false);
      continue;
    }
    pending_clusters_.erase(cluster.name());
    std::string error;
    if (applyCluster(cluster, r, first, &error)) {
      any_applied = true;
    } else {
      errors.push_back(std::move(error));
    }
  }
  std::vector<std::string> removed;
  if (update.state_of_the_world) {
    for (const auto& [name, _] : dynamic_clusters_) {
      if (!names.count(name)) removed.push_back(name);
    }
  } else {
    removed = update.removed;
  }
  if (update.state_of_the_world) {
    for (auto it = pending_clusters_.begin(); it != pending_clusters_.end();) {
      it = names.count(it->first) ? std::next(it) : pending_clusters_.erase(it);
    }
  }
  for (const auto& name : removed) pending_clusters_.erase(name);
  for (auto it = cluster_secret_refs_.begin(); it != cluster_secret_refs_.end();) {
    const bool gone = std::find(removed.begin(), removed.end(), it->first) != removed.end() ||
                      (!dynamic_clusters_.count(it->first) && !pending_clusters_.count(it->first));
    it = gone ? cluster_secret_refs_.erase(it) : std::next(it);
  }
  for (const auto& name : removed) {
    if (!dynamic_clusters_.count(name)) continue;
    untrackEdsCluster(name);  // reads the record: before it goes
    dynamic_clusters_.erase(name);
    clusters_.removeCluster(name);
    any_applied = true;
  }
  if (any_applied) {
    clusters_.setCdsVersionInfo(update.system_version);
    cds_stats_.config_reload.inc();
  }
  SKIFF_LOG(kConfig, info, "cds: version '{}': {} cluster(s), {} removed, {} rejected", update.system_version,
            update.resources.size(), removed.size(), errors.size());
  trimAfterLargeUpdate(update);
  cds_initial_done_ = true;
  // After the ACK goes out: the EDS request then carries the new names (Envoy pauses EDS during CDS).
  refreshEdsSubscription();
  refreshSdsSubscription();
  scheduleSync();
  std::weak_ptr<bool> alive = alive_;
  asio::post(main_, [this, alive] {
    if (!alive.expired()) checkInitialized();
  });
  if (errors.empty()) return "";
  return nackMessage("Error adding/updating cluster(s)", errors);
}

bool XdsManager::applyCluster(const Cluster& cluster, const xds::XdsResource& r, bool first,
                              std::string* error) {
  try {
    if (cluster.type() == Cluster::EDS && cluster.eds_cluster_config().has_eds_config()) {
      checkAdsSource(cluster.eds_cluster_config().eds_config(), "eds_cluster_config.eds_config");
    }
    // EnvoyFilter CLUSTER patches (no-op without EnvoyFilters).
    auto& envoy_filters = envoy_filter::Runtime::instance();
    if (envoy_filters.enabled()) {
      clusters_.addOrUpdateCluster(envoy_filters.patchCluster(cluster), true, r.version);
    } else {
      clusters_.addOrUpdateCluster(cluster, true, r.version);  // no copy: 10,000s of clusters per push
    }
  } catch (const std::invalid_argument& e) {
    *error = cluster.name() + ": " + e.what();
    cluster_errors_[cluster.name()] = {e.what(), std::chrono::system_clock::now()};
    return false;
  }
  cluster_errors_.erase(cluster.name());
  ClusterRecord& record = dynamic_clusters_[cluster.name()];
  record.hash = xxHash64(r.resource.value());
  record.version = internVersion(r.version);
  record.last_updated = std::chrono::system_clock::now();
  // Patched by EnvoyFilters: the ClusterInfo holds the patched cluster, /config_dump shows what came.
  if (envoy_filter::Runtime::instance().enabled()) {
    record.received = std::make_unique<const std::string>(r.resource.value());
  } else {
    record.received.reset();
  }
  if (cluster.type() == Cluster::EDS) {
    trackEdsCluster(cluster);
    const std::string service = edsNameOf(cluster);
    auto cached = endpoints_.find(service);
    envoy::config::endpoint::v3::ClusterLoadAssignment cla;
    if (cached != endpoints_.end() && cla.ParseFromString(cached->second.bytes)) {
      try {
        clusters_.updateEndpoints(cluster.name(), cla);
      } catch (const std::invalid_argument& e) {
        SKIFF_LOG(kUpstream, warn, "eds: cached endpoints for '{}' rejected: {}", cluster.name(), e.what());
      }
    } else {
      startWarmTimer(cluster.name(), initialFetchTimeout(cluster.eds_cluster_config().eds_config()));
      if (first) initial_eds_pending_.insert(cluster.name());
    }
  } else {
    untrackEdsCluster(cluster.name());
  }
  return true;
}

std::string XdsManager::onRoutes(const xds::ConfigUpdate& update) {
  std::vector<std::string> errors;
  auto& manager = RouteConfigProviderManager::instance();
  for (const auto& r : update.resources) {
    envoy::config::route::v3::RouteConfiguration config;
    if (!r.resource.UnpackTo(&config)) {
      errors.push_back(r.name + ": the RouteConfiguration does not decode");
      continue;
    }
    auto provider = manager.find(r.name);
    if (!provider) continue;                                            // nobody asked for it (any more)
    envoy_filter::Runtime::instance().patchRouteConfiguration(config);  // EnvoyFilter route patches
    std::string error = provider->update(config, r.version);
    if (!error.empty()) {
      errors.push_back(r.name + ": " + error);
    } else {
      rds_timers_.erase(r.name);
    }
  }
  if (listener_sink_) listener_sink_->onRouteConfigsChanged();
  std::weak_ptr<bool> alive = alive_;
  asio::post(main_, [this, alive] {
    if (!alive.expired()) checkInitialized();
  });
  if (errors.empty()) return "";
  return nackMessage("Error updating route configuration(s)", errors);
}

std::string XdsManager::onListeners(const xds::ConfigUpdate& update) {
  std::vector<std::string> errors;
  std::set<std::string> names;
  bool any_applied = false;
  for (const auto& r : update.resources) {
    names.insert(r.name);
    envoy::config::listener::v3::Listener listener;
    if (!r.resource.UnpackTo(&listener)) {
      errors.push_back(r.name + ": the Listener does not decode");
      continue;
    }
    if (listener_sink_ == nullptr) {
      errors.push_back(r.name + ": dynamic listeners (LDS) are not wired into the server in this build");
      continue;
    }
    auto existing = dynamic_listeners_.find(r.name);
    if (existing != dynamic_listeners_.end() &&
        MessageDifferencer::Equals(existing->second.resource, r.resource)) {
      pending_listeners_.erase(r.name);
      existing->second.version = r.version;
      continue;
    }
    // A listener whose TLS secrets come over ADS warms until they are in (Envoy's rule).
    auto refs = adsSecretNames(listener);
    if (!refs.empty()) noteSecretTimeouts(adsSecretFetchTimeouts(listener));
    setSecretRefs(listener_secret_refs_, r.name, std::move(refs));
    auto listener_refs = listener_secret_refs_.find(r.name);
    if (listener_refs != listener_secret_refs_.end() && !secretsReady(listener_refs->second)) {
      hold(pending_listeners_, r, true);
      continue;
    }
    pending_listeners_.erase(r.name);
    std::string error = applyListener(std::move(listener), r);
    if (!error.empty()) {
      errors.push_back(r.name + ": " + error);
      continue;
    }
    any_applied = true;
  }
  std::vector<std::string> removed;
  if (update.state_of_the_world) {
    for (const auto& [name, _] : dynamic_listeners_) {
      if (!names.count(name)) removed.push_back(name);
    }
  } else {
    removed = update.removed;
  }
  if (update.state_of_the_world) {
    for (auto it = pending_listeners_.begin(); it != pending_listeners_.end();) {
      it = names.count(it->first) ? std::next(it) : pending_listeners_.erase(it);
    }
  }
  for (const auto& name : removed) pending_listeners_.erase(name);
  for (auto it = listener_secret_refs_.begin(); it != listener_secret_refs_.end();) {
    const bool gone = std::find(removed.begin(), removed.end(), it->first) != removed.end() ||
                      (!dynamic_listeners_.count(it->first) && !pending_listeners_.count(it->first));
    it = gone ? listener_secret_refs_.erase(it) : std::next(it);
  }
  for (const auto& name : removed) {
    if (!dynamic_listeners_.erase(name)) continue;
    if (listener_sink_) listener_sink_->removeListener(name);
    any_applied = true;
  }
  if (any_applied) lds_stats_.config_reload.inc();
  lds_initial_done_ = true;
  refreshRdsSubscription();
  refreshSdsSubscription();
  scheduleSync();
  std::weak_ptr<bool> alive = alive_;
  asio::post(main_, [this, alive] {
    if (!alive.expired()) checkInitialized();
  });
  if (errors.empty()) return "";
  return nackMessage("Error adding/updating listener(s)", errors);
}

void XdsManager::trimAfterLargeUpdate(const xds::ConfigUpdate& update) {
  if (update.resources.size() < kTrimThreshold) return;
  if (trim_scheduled_) {
    // A big response during a trim sequence (the EDS response right after the CDS one) may be freed after
    // the sequence's last trim. Its decoded message was allocated by gRPC's reader thread, in that thread's
    // malloc arena, where freed chunks below a live one stay resident until a malloc_trim(): run one more
    // sequence afterwards.
    trim_again_ = true;
    return;
  }
  scheduleTrim();
}

void XdsManager::scheduleTrim() {
  trim_scheduled_ = true;
  std::weak_ptr<bool> alive = alive_;
  // After the response and its decoded copies are gone: hand the freed heap back to the kernel, so a big
  // push does not leave its transient buffers in the sidecar's RSS. malloc_trim() locks each malloc arena
  // while it walks it, so workers allocating meanwhile wait: back-to-back big pushes are coalesced into at
  // most one trim per kMinTrimInterval.
  const auto now = std::chrono::steady_clock::now();
  trim_timer_.expires_at(std::max(now, last_trim_ + kMinTrimInterval));
  trim_timer_.async_wait([this, alive](std::error_code ec) {
    if (ec || alive.expired()) return;
    ::malloc_trim(0);
    // Once more a little later: gRPC frees the response's receive buffers on its own threads (into their
    // malloc arenas) after we are done with the message.
    trim_timer_.expires_after(std::chrono::milliseconds(500));
    trim_timer_.async_wait([this, alive](std::error_code ec) {
      if (ec || alive.expired()) return;
      ::malloc_trim(0);
      last_trim_ = std::chrono::steady_clock::now();
      trim_scheduled_ = false;
      if (std::exchange(trim_again_, false)) scheduleTrim();
    });
  });
}

std::string XdsManager::applyListener(envoy::config::listener::v3::Listener listener,
                                      const xds::XdsResource& r) {
  std::string error = listener_sink_->addOrUpdateListener(normalizeListener(std::move(listener)), r.version);
  if (error.empty()) dynamic_listeners_[r.name] = {r.resource, r.version, std::chrono::system_clock::now()};
  return error;
}

std::vector<std::string> XdsManager::rdsNames() const {
  std::vector<std::string> out;
  for (const auto& provider : RouteConfigProviderManager::instance().live()) out.push_back(provider->name());
  return out;
}

void XdsManager::refreshRdsSubscription() {
  if (refresh_rds_scheduled_) return;
  refresh_rds_scheduled_ = true;
  std::weak_ptr<bool> alive = alive_;
  asio::post(main_, [this, alive] {
    if (alive.expired()) return;
    refresh_rds_scheduled_ = false;
    auto names = rdsNames();
    if (!rds_subscribed_) {
      if (names.empty()) return;
      rds_subscribed_ = true;
      rds_sent_ = names;
      xds::SubscriptionCallbacks callbacks;
      callbacks.on_update = [this](const xds::ConfigUpdate& u) { return onRoutes(u); };
      callbacks.initial_fetch_timeout = std::chrono::milliseconds(0);  // per-provider timers instead
      client_->subscribe(std::string(xds::kRouteType), std::move(names), std::move(callbacks));
      return;
    }
    if (names == rds_sent_) return;
    // Forget timers of providers that are gone.
    for (auto it = rds_timers_.begin(); it != rds_timers_.end();) {
      it = std::find(names.begin(), names.end(), it->first) == names.end() ? rds_timers_.erase(it) : ++it;
    }
    rds_sent_ = names;
    client_->updateSubscription(std::string(xds::kRouteType), std::move(names));
  });
}

void XdsManager::startRdsTimer(const std::shared_ptr<RouteConfigProvider>& provider) {
  if (provider->initialized() || rds_timers_.count(provider->name())) return;
  if (provider->initialFetchTimeout().count() <= 0) return;
  auto timer = std::make_unique<asio::steady_timer>(main_, provider->initialFetchTimeout());
  std::weak_ptr<bool> alive = alive_;
  std::weak_ptr<RouteConfigProvider> weak = provider;
  const std::string name = provider->name();
  timer->async_wait([this, alive, weak, name](std::error_code ec) {
    if (ec || alive.expired()) return;
    rds_timers_.erase(name);
    if (auto p = weak.lock()) p->initialFetchTimedOut();
    if (listener_sink_) listener_sink_->onRouteConfigsChanged();
    checkInitialized();
  });
  rds_timers_[name] = std::move(timer);
}

void XdsManager::onConnectionState(bool connected) {
  connected_state_.set(connected ? 1 : 0);
  if (!connected) {
    SKIFF_LOG(kConfig, warn, "xds: lost the ADS stream; serving the last good config while reconnecting");
    for (const auto& provider : RouteConfigProviderManager::instance().live()) provider->connectionFailed();
    forEachEds([this](const std::string& cluster, const EdsTrack&) {
      if (auto info = clusters_.info(cluster)) info->stats.update_failure().inc();
    });
    for (auto& [_, secret] : secret_states_) secret.update_failure.inc();
  } else {
    SKIFF_LOG(kConfig, info, "xds: ADS stream connected");
  }
  scheduleSync();
}

void XdsManager::scheduleSync() {
  if (sync_scheduled_) return;
  sync_scheduled_ = true;
  std::weak_ptr<bool> alive = alive_;
  // Runs after the client has counted the response it is handling (it counts after our callback returns).
  asio::post(main_, [this, alive] {
    if (alive.expired()) return;
    sync_scheduled_ = false;
    syncStats();
  });
}

void XdsManager::syncStats() {
  const auto& types = client_->stats().types;
  auto sync = [&](const std::string& type_url, TypeCounters& c) {
    auto it = types.find(type_url);
    if (it == types.end()) return;
    const xds::TypeStats& now = it->second;
    auto add = [](const stats::Counter& counter, uint64_t now_value, uint64_t& seen) {
      if (now_value > seen) counter.inc(now_value - seen);
      seen = now_value;
    };
    add(c.update_attempt, now.update_attempt, c.synced.update_attempt);
    add(c.update_success, now.update_success, c.synced.update_success);
    add(c.update_rejected, now.update_rejected, c.synced.update_rejected);
    add(c.update_failure, now.update_failure, c.synced.update_failure);
    add(c.init_fetch_timeout, now.init_fetch_timeout, c.synced.init_fetch_timeout);
    if (now.version_info != c.synced.version_info || now.update_success != 0) {
      c.version.set(static_cast<int64_t>(xxHash64(now.version_info)));
    }
    if (now.version_info != c.synced.version_info) c.update_time.set(nowMs());
    c.synced.version_info = now.version_info;
  };
  sync(std::string(xds::kClusterType), cds_stats_);
  sync(std::string(xds::kListenerType), lds_stats_);
  const auto& all = client_->stats();
  if (all.rate_limit_enforced > synced_rate_limit_enforced_) {
    rate_limit_enforced_.inc(all.rate_limit_enforced - synced_rate_limit_enforced_);
    synced_rate_limit_enforced_ = all.rate_limit_enforced;
  }
  // Envoy's text readout of the control plane that answered last (DiscoveryResponse.control_plane).
  if (all.control_plane_identifier != control_plane_identifier_) {
    control_plane_identifier_ = all.control_plane_identifier;
    store_.setText("control_plane.identifier", control_plane_identifier_);
  }
}

void XdsManager::housekeeping() {
  // Providers die with their last HCM (a removed listener's connections drained): drop their names.
  refreshRdsSubscription();
  syncStats();
  housekeeping_timer_.expires_after(std::chrono::seconds(2));
  std::weak_ptr<bool> alive = alive_;
  housekeeping_timer_.async_wait([this, alive](std::error_code ec) {
    if (!ec && !alive.expired()) housekeeping();
  });
}

void XdsManager::checkInitialized() {
  if (initialized_) return;
  if (!cds_initial_done_ || !lds_initial_done_ || !initial_eds_pending_.empty()) return;
  if (!pending_clusters_.empty() || !pending_listeners_.empty() || refresh_sds_scheduled_) return;
  if (refresh_eds_scheduled_ || refresh_rds_scheduled_) return;
  for (const auto& provider : RouteConfigProviderManager::instance().live()) {
    if (!provider->initialized()) return;
  }
  initialized_ = true;
  SKIFF_LOG(kConfig, info, "xds: initial configuration fetched");
  if (initialized_cb_) initialized_cb_();
}

}  // namespace skiff::server
