// Server: start-up (config, clusters, listeners, workers, admin), server stats, and graceful shutdown.
#include "server/server.h"

#include <malloc.h>

#include <google/protobuf/util/json_util.h>
#include <asio/post.hpp>
#include <cstdio>
#include <fstream>

#include "filters/http/wasm/wasm_plugin_config.h"  // Wasm code.remote fetches (WASM-FEAT)
#include "filters/istio/workload.h"                // Istio local node (ISTIO-STATS)
#include "server/listener_filters/listener_filter.h"
#include "server/xds/route_config_provider.h"
#include "server/xds/xds_manager.h"
#include "skiff/common/logging.h"
#include "skiff/config/bootstrap_loader.h"
#include "skiff/envoy_filter/runtime.h"
#include "skiff/stats/stats.h"
#include "skiff/tls/secret_provider.h"
#include "wasm/plugin.h"

namespace skiff::server {

namespace {

constexpr std::string_view kVersion = "skiff/0.1.0";

void applyNodeFlags(const Options& options, envoy::config::bootstrap::v3::Bootstrap& bootstrap) {
  auto* node = bootstrap.mutable_node();
  if (!options.service_node.empty()) node->set_id(options.service_node);
  if (!options.service_cluster.empty()) node->set_cluster(options.service_cluster);
  if (!options.service_zone.empty()) node->mutable_locality()->set_zone(options.service_zone);
  node->set_user_agent_name("skiff");
}

}  // namespace

envoy::config::bootstrap::v3::Bootstrap loadConfig(const Options& options) {
  registerListenerExtensions();
  envoy::config::bootstrap::v3::Bootstrap bootstrap;
  std::vector<std::string> warnings;
  if (!options.config_path.empty()) {
    auto result = config::loadBootstrapFile(options.config_path);
    bootstrap = std::move(result.bootstrap);
    warnings = std::move(result.warnings);
  }
  if (!options.config_yaml.empty()) {
    auto result = config::loadBootstrapYaml(options.config_yaml);
    bootstrap.MergeFrom(result.bootstrap);
    warnings.insert(warnings.end(), result.warnings.begin(), result.warnings.end());
  }
  for (const auto& w : warnings) SKIFF_LOG(kConfig, warn, "{}", w);
  applyNodeFlags(options, bootstrap);
  // EnvoyFilter manifests: --envoy-filters, else the bootstrap's runtime key skiff.envoy_filters.
  auto& envoy_filters = envoy_filter::Runtime::instance();
  envoy_filters.configure(
      options.envoy_filters.empty() ? envoy_filter::pathsFromBootstrap(bootstrap) : options.envoy_filters,
      bootstrap.node());
  envoy_filters.patchBootstrap(bootstrap);
  return bootstrap;
}

// static_resources.secrets: what TLS contexts' SDS references without a config source resolve to.
static void addStaticSecrets(const envoy::config::bootstrap::v3::Bootstrap::StaticResources& sr) {
  for (int i = 0; i < sr.secrets_size(); ++i) {
    try {
      tls::processSecretManager().addStaticSecret(sr.secrets(i));
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("static_resources.secrets[" + std::to_string(i) + "]: " + e.what());
    }
  }
}

void validateConfig(const Options& options, const envoy::config::bootstrap::v3::Bootstrap& bootstrap) {
  asio::io_context io;
  stats::Store store(options.concurrency + 1);
  upstream::ClusterManager clusters(io, store);
  const auto& sr = bootstrap.static_resources();
  addStaticSecrets(sr);
  for (int i = 0; i < sr.clusters_size(); ++i) {
    try {
      clusters.addOrUpdateCluster(sr.clusters(i));
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("static_resources.clusters[" + std::to_string(i) + "]." + e.what());
    }
  }
  // xDS: checked here; HCMs with `rds` need ADS in the bootstrap.
  if (XdsManager::configured(bootstrap)) XdsManager::validate(bootstrap);
  RouteConfigProviderManager::instance().setAdsConfigured(XdsManager::configured(bootstrap));
  for (int i = 0; i < sr.listeners_size(); ++i) {
    ListenerConfig(sr.listeners(i), "static_resources.listeners[" + std::to_string(i) + "]", store,
                   options.concurrency);
  }
}

Server::Server(Options options, envoy::config::bootstrap::v3::Bootstrap bootstrap)
    : options_(std::move(options)), bootstrap_(std::move(bootstrap)) {}

Server::~Server() {
  xds_.reset();  // it holds a raw pointer to listener_manager_
  for (auto& w : workers_) w->stop();
}

stats::Store& Server::stats() {
  return stats::defaultStore();
}

void Server::setUp() {
  stats::Store& store = stats::defaultStore();
  wasm::setLocalNode(bootstrap_.node());            // node.* properties of WASM plugins
  filters::istio::setLocalNode(bootstrap_.node());  // Istio workload labels and peer metadata
  const uint32_t n = options_.concurrency;
  for (uint32_t i = 0; i < n; ++i) workers_.push_back(std::make_unique<Worker>(i));

  cluster_manager_ = std::make_unique<upstream::ClusterManager>(main_, store);
  filters::wasm::installRemoteCodeFetch(main_, *cluster_manager_, store);  // Wasm code.remote (WASM-FEAT)
  cluster_manager_->setUpdateCallback([this](const std::string& name,
                                             const upstream::ClusterInfoConstSharedPtr& info,
                                             const upstream::HostSetConstSharedPtr& hosts) {
    for (auto& w : workers_) w->updateCluster(name, info, hosts);
  });
  cluster_manager_->setInitializedCallback([this] { maybeLive(); });
  const auto& sr = bootstrap_.static_resources();
  addStaticSecrets(sr);
  for (int i = 0; i < sr.clusters_size(); ++i) {
    try {
      cluster_manager_->addOrUpdateCluster(sr.clusters(i));
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("static_resources.clusters[" + std::to_string(i) + "]." + e.what());
    }
  }

  const bool xds = XdsManager::configured(bootstrap_);
  if (xds) XdsManager::validate(bootstrap_);
  RouteConfigProviderManager::instance().setAdsConfigured(xds);
  listener_manager_ =
      std::make_unique<ListenerManager>(store, workers_, std::chrono::seconds(options_.drain_time_s));
  listener_manager_->setWarmedCallback([this] { maybeLive(); });  // listeners warming on remote Wasm code
  for (int i = 0; i < sr.listeners_size(); ++i) {
    const std::string path = "static_resources.listeners[" + std::to_string(i) + "]";
    try {
      listener_manager_->addStatic(sr.listeners(i), path);
    } catch (const std::exception& e) {
      // A listener an EnvoyFilter changed no longer builds: serve it unpatched and report those filters.
      auto& envoy_filters = envoy_filter::Runtime::instance();
      auto raw = envoy_filters.unpatchedStatic(sr.listeners(i).name());
      if (!raw) throw;
      listener_manager_->addStatic(raw->first, path);
      envoy_filters.recordRejected("static listener '" + raw->first.name() + "'", raw->second, e.what());
      *bootstrap_.mutable_static_resources()->mutable_listeners(i) = raw->first;
    }
  }

  if (envoy_filter::Runtime::instance().enabled()) {
    envoy_filters_ =
        std::make_unique<EnvoyFilterGlue>(main_, *listener_manager_, *cluster_manager_, bootstrap_);
  }
  if (xds) {
    // After the static listeners, so it subscribes to the route configs their HCMs name.
    xds_ = std::make_unique<XdsManager>(main_, store, *cluster_manager_, bootstrap_);
    xds_->setInitializedCallback([this] { maybeLive(); });
    xds_->setListenerSink(envoy_filters_ ? static_cast<ListenerSink*>(envoy_filters_.get())
                                         : listener_manager_.get());
  }

  if (bootstrap_.has_admin() && bootstrap_.admin().has_address()) {
    const auto& sa = bootstrap_.admin().address().socket_address();
    std::error_code ec;
    auto address = asio::ip::make_address(sa.address().empty() ? "127.0.0.1" : sa.address(), ec);
    if (ec)
      throw std::invalid_argument("admin.address.socket_address.address: '" + sa.address() +
                                  "' is not an IP");
    admin_ = std::make_unique<AdminServer>(
        main_, asio::ip::tcp::endpoint(address, static_cast<uint16_t>(sa.port_value())), *this);
    SKIFF_LOG(kMain, info, "admin on {}", upstream::formatEndpoint(admin_->localEndpoint()));
  }
}

int Server::run() {
  stats::initDefaultStore(options_.concurrency + 1);
  stats::setThreadSlab(0);
  setUp();
  for (auto& w : workers_) w->start();
  cluster_manager_->start();
  if (xds_) xds_->start();
  if (envoy_filters_) envoy_filters_->start(std::chrono::milliseconds(500));

  signals_.add(SIGTERM);
  signals_.add(SIGINT);
  signals_.async_wait([this](std::error_code ec, int sig) {
    if (ec) return;
    SKIFF_LOG(kMain, info, "caught signal {}; draining for up to {}s", sig, options_.drain_time_s);
    beginShutdown(std::chrono::seconds(options_.drain_time_s));
  });
  updateServerStats();
  main_.run();
  for (auto& w : workers_) w->stop();
  if (admin_) admin_->close();
  SKIFF_LOG(kMain, info, "exiting");
  return exit_code_;
}

void Server::updateServerStats() {
  stats::Store& store = stats::defaultStore();
  const auto uptime =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now() - start_time_);
  store.gauge("server.uptime").set(uptime.count());
  store.gauge("server.state").set(static_cast<int64_t>(state()));
  store.gauge("server.live").set(state() == ServerState::kLive ? 1 : 0);
  store.gauge("server.concurrency").set(options_.concurrency);
  const struct mallinfo2 mi = mallinfo2();
  store.gauge("server.memory_allocated").set(static_cast<int64_t>(mi.uordblks + mi.hblkhd));
  store.gauge("server.memory_heap_size").set(static_cast<int64_t>(mi.arena + mi.hblkhd));
  size_t connections = 0;
  for (auto& w : workers_) connections += w->activeConnections();
  store.gauge("server.total_connections").set(static_cast<int64_t>(connections));
  stats_timer_.expires_after(std::chrono::seconds(1));
  stats_timer_.async_wait([this](std::error_code ec) {
    if (!ec) updateServerStats();
  });
}

void Server::beginShutdown(std::chrono::seconds drain_time) {
  if (shutting_down_) return;
  shutting_down_ = true;
  if (envoy_filters_) envoy_filters_->stop();
  state_ = ServerState::kDraining;
  if (listener_manager_) listener_manager_->stopUpdates();
  drain_baseline_.clear();
  for (auto& w : workers_) {
    drain_baseline_.push_back(w->drainsDone());
    w->drain();
  }
  drain_deadline_ = std::chrono::steady_clock::now() + drain_time;
  pollDrain();
}

// Polls the workers' connection counts until every connection finished or the drain time ran out.
void Server::pollDrain() {
  // A worker's count is only trusted once it has closed its listeners (carried out our drain()); before
  // that it may predate a connection accepted a moment ago.
  size_t active = 0;
  bool counted = true;
  for (size_t i = 0; i < workers_.size(); ++i) {
    counted = counted && workers_[i]->drainsDone() > drain_baseline_[i];
    active += workers_[i]->activeConnections();
  }
  if ((counted && active == 0) || std::chrono::steady_clock::now() >= drain_deadline_) {
    if (active != 0) SKIFF_LOG(kMain, warn, "drain time over; closing {} connections", active);
    stats_timer_.cancel();
    signals_.cancel();
    if (admin_) admin_->close();
    xds_.reset();  // before the clusters it updates
    cluster_manager_.reset();
    main_.stop();
    return;
  }
  // Workers refresh their counts on their own loops; ask them now and look again shortly.
  for (auto& w : workers_) w->drain();
  drain_timer_.expires_after(std::chrono::milliseconds(50));
  drain_timer_.async_wait([this](std::error_code ec) {
    if (!ec) pollDrain();
  });
}

// LIVE once the clusters are warm and, with xDS, the first full configuration is in (or timed out).
void Server::maybeLive() {
  if (state_ != ServerState::kInitializing || !cluster_manager_->initialized()) return;
  if (xds_ && !xds_->initialized()) return;
  if (listener_manager_ && listener_manager_->warmingOnTargets() > 0) return;  // Envoy's listener init
  state_ = ServerState::kLive;
  SKIFF_LOG(kMain, info, "all clusters initialized{}; server is LIVE", xds_ ? " and xDS fetched" : "");
}

void Server::dumpDynamicConfig(const std::function<bool(const std::string&)>& match,
                               envoy::admin::v3::ClustersConfigDump& clusters,
                               envoy::admin::v3::EndpointsConfigDump& endpoints,
                               envoy::admin::v3::ListenersConfigDump& listeners,
                               envoy::admin::v3::RoutesConfigDump& routes) const {
  if (xds_) xds_->dumpConfig(match, clusters, endpoints, listeners, routes);
}

void Server::dumpDynamicSecrets(const std::function<bool(const std::string&)>& match,
                                envoy::admin::v3::SecretsConfigDump& secrets) const {
  if (xds_) xds_->dumpSecrets(match, secrets);
}

std::vector<std::pair<std::string, std::string>> Server::listenerAddresses() const {
  return listener_manager_ ? listener_manager_->addresses()
                           : std::vector<std::pair<std::string, std::string>>{};
}

std::string Server::serverInfoCommandLine() const {
  std::string json = "{";
  json += "\"concurrency\":" + std::to_string(options_.concurrency);
  json += ",\"log_level\":\"" + options_.log_level + "\"";
  json += ",\"component_log_level\":\"" + options_.component_log_level + "\"";
  json += ",\"drain_time\":\"" + std::to_string(options_.drain_time_s) + "s\"";
  json += ",\"parent_shutdown_time\":\"" + std::to_string(options_.parent_shutdown_time_s) + "s\"";
  json += ",\"drain_strategy\":\"" +
          std::string(options_.drain_strategy == "immediate" ? "Immediate" : "Gradual") + "\"";
  json += ",\"service_cluster\":\"" + bootstrap_.node().cluster() + "\"";
  json += ",\"service_node\":\"" + bootstrap_.node().id() + "\"";
  json += ",\"service_zone\":\"" + bootstrap_.node().locality().zone() + "\"";
  json += ",\"mode\":\"" + std::string(options_.mode == Options::Mode::kServe ? "Serve" : "Validate") + "\"";
  std::string path = options_.config_path;
  for (size_t p = 0; (p = path.find_first_of("\"\\", p)) != std::string::npos; p += 2) path.insert(p, "\\");
  json += ",\"config_path\":\"" + path + "\"";
  json += "}";
  return json;
}

void Server::drainListeners(bool inbound_only, bool graceful, bool skip_exit) {
  asio::post(main_, [this, inbound_only, graceful, skip_exit] {
    if (!inbound_only && !skip_exit) {
      beginShutdown(graceful ? std::chrono::seconds(options_.drain_time_s) : std::chrono::seconds(0));
      return;
    }
    if (inbound_only && listener_manager_) listener_manager_->stopInboundUpdates();
    if (!inbound_only && listener_manager_) listener_manager_->releaseSockets(false);
    for (auto& w : workers_) w->drain(inbound_only);
  });
}

void Server::quit() {
  asio::post(main_, [this] { beginShutdown(std::chrono::seconds(0)); });
}

}  // namespace skiff::server
