// The sidecar's side of ADS: owns the AdsClient, turns bootstrap dynamic_resources into subscriptions
// (CDS wildcard, EDS for the EDS clusters known, RDS for the route configs HCMs name, LDS into a
// ListenerSink), applies updates to the ClusterManager and the RDS providers, keeps Envoy's stats, and
// tells the server when the first full configuration is in. Main thread only.
#pragma once

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "envoy/admin/v3/config_dump.pb.h"
#include "envoy/admin/v3/config_dump_shared.pb.h"
#include "envoy/config/bootstrap/v3/bootstrap.pb.h"
#include "server/xds/listener_sink.h"
#include "skiff/stats/stats.h"
#include "skiff/upstream/cluster_manager.h"
#include "skiff/xds/ads_client.h"

namespace skiff::server {

// A ConfigSource's initial_fetch_timeout, or Envoy's default of 15 s.
std::chrono::milliseconds initialFetchTimeout(const envoy::config::core::v3::ConfigSource& source);

class XdsManager {
 public:
  // Whether the bootstrap asks for xDS at all (dynamic_resources has any field set).
  static bool configured(const envoy::config::bootstrap::v3::Bootstrap& bootstrap);
  // Checks dynamic_resources; throws std::invalid_argument naming the field for what Skiff does not do
  // (REST, per-type gRPC sources, path configs, resource locators, V2, TLS settings the control-plane
  // channel cannot use: see control_plane_tls.h).
  static void validate(const envoy::config::bootstrap::v3::Bootstrap& bootstrap);
  // The ADS target ("ip:port", "host:port" or "unix:/path") of the bootstrap's ads_config; throws like
  // validate().
  static std::string adsTarget(const envoy::config::bootstrap::v3::Bootstrap& bootstrap);

  // Validates (throws) and records the subscriptions; nothing is sent before start().
  XdsManager(asio::io_context& main, stats::Store& store, upstream::ClusterManager& clusters,
             const envoy::config::bootstrap::v3::Bootstrap& bootstrap);
  ~XdsManager();
  XdsManager(const XdsManager&) = delete;
  XdsManager& operator=(const XdsManager&) = delete;

  // Opens the ADS stream and starts the warming timers of static EDS clusters and RDS providers. Call after
  // ClusterManager::start().
  void start();

  // True once the initial CDS (and the EDS of its clusters), LDS and RDS fetches are done or timed out.
  bool initialized() const { return initialized_; }
  // Called once, when initialized() becomes true.
  void setInitializedCallback(std::function<void()> cb) { initialized_cb_ = std::move(cb); }
  // LDS target; without one, LDS responses are NACKed ("dynamic listeners are not wired").
  void setListenerSink(ListenerSink* sink) { listener_sink_ = sink; }

  // /config_dump: dynamic clusters (active/warming), endpoints, listeners and route configs whose names
  // pass `match`.
  void dumpConfig(const std::function<bool(const std::string&)>& match,
                  envoy::admin::v3::ClustersConfigDump& clusters,
                  envoy::admin::v3::EndpointsConfigDump& endpoints,
                  envoy::admin::v3::ListenersConfigDump& listeners,
                  envoy::admin::v3::RoutesConfigDump& routes) const;
  // /config_dump: the secrets ADS delivered (dynamic_active_secrets, unredacted: the admin redacts) and
  // those subscribed but not in yet (dynamic_warming_secrets, name only), as Envoy shows them.
  void dumpSecrets(const std::function<bool(const std::string&)>& match,
                   envoy::admin::v3::SecretsConfigDump& secrets) const;

  // Update handlers, public for tests. Each returns "" (ACK) or the NACK text naming resources and fields.
  // As Envoy does, the valid resources of a response are applied even when others are rejected.
  std::string onClusters(const xds::ConfigUpdate& update);
  std::string onEndpoints(const xds::ConfigUpdate& update);
  std::string onRoutes(const xds::ConfigUpdate& update);
  std::string onListeners(const xds::ConfigUpdate& update);
  // SDS over ADS: stores secrets in the process SecretManager's store (what `sds_config: {ads: {}}`
  // resolves to); listeners/clusters waiting for them go active; changed secrets rotate TLS contexts.
  std::string onSecrets(const xds::ConfigUpdate& update);

  // Current named subscriptions (sorted).
  std::vector<std::string> edsNames() const;
  std::vector<std::string> rdsNames() const;
  std::vector<std::string> sdsNames() const;
  // Listeners/clusters held back until their ADS secrets arrive (sorted names).
  std::vector<std::string> warmingOnSecrets() const;
  const xds::AdsClient& client() const { return *client_; }

 private:
  struct DynamicResource {
    google::protobuf::Any resource;
    std::string version;
    std::chrono::system_clock::time_point last_updated;
  };
  // A resource's version_info, shared by the resources of one response (a SotW push gives 10,000s of them
  // the same one).
  using Version = std::shared_ptr<const std::string>;
  Version internVersion(const std::string& version);
  Version last_version_;
  // An EDS cluster's subscription: its service name (null when it is the cluster's own name, the common
  // case) and initial_fetch_timeout.
  struct EdsTrack {
    std::unique_ptr<const std::string> service;
    uint32_t timeout_ms = 0;  // 32 bits (~49 days) keep the record 8 bytes smaller: one per cluster
    bool tracked = false;
    std::chrono::milliseconds timeout() const { return std::chrono::milliseconds(timeout_ms); }
  };
  // A CDS cluster in force. Its bytes are the ClusterInfo's (one copy per cluster); the bytes as received
  // are kept only when EnvoyFilters may patch clusters (then the two differ).
  struct ClusterRecord {
    EdsTrack eds;       // here rather than in a map of its own: one entry per cluster, not two
    uint64_t hash = 0;  // xxHash64 of the resource as received: a SotW resend is recognised without decoding
    Version version;
    std::chrono::system_clock::time_point last_updated;
    std::unique_ptr<const std::string> received;  // null unless EnvoyFilters patch clusters
  };
  // The last accepted ClusterLoadAssignment of an EDS name, as received.
  struct EndpointRecord {
    std::string bytes;
    Version version;
    std::chrono::system_clock::time_point last_updated;
  };

  struct TypeCounters {
    stats::Counter update_attempt, update_success, update_rejected, update_failure, init_fetch_timeout,
        config_reload;
    stats::Gauge version, update_time;
    xds::TypeStats synced;  // library counters already added
  };

  // The comma-separated `skiff.allow_unknown_extensions` of the bootstrap's static runtime layers.
  static std::set<std::string> allowedUnknownExtensions(const envoy::config::bootstrap::v3::Bootstrap& b);
  static std::string edsNameOf(const envoy::config::cluster::v3::Cluster& cluster);
  TypeCounters makeCounters(const std::string& prefix);
  void trackEdsCluster(const envoy::config::cluster::v3::Cluster& cluster);
  // Clusters subscribed to the EDS name `service` (sorted).
  std::vector<std::string> edsUsers(const std::string& service) const;
  // Whether `cluster` (already decoded) is the one in force under `record`.
  bool sameCluster(const ClusterRecord& record, const envoy::config::cluster::v3::Cluster& cluster) const;
  void untrackEdsCluster(const std::string& cluster);
  void startWarmTimer(const std::string& cluster, std::chrono::milliseconds timeout);
  void refreshEdsSubscription();
  void refreshRdsSubscription();
  void startRdsTimer(const std::shared_ptr<class RouteConfigProvider>& provider);
  void onConnectionState(bool connected);
  void syncStats();
  void scheduleSync();
  void checkInitialized();
  void housekeeping();
  // Responses with this many resources or more are followed by malloc_trim() on the main thread.
  static constexpr size_t kTrimThreshold = 1000;
  void trimAfterLargeUpdate(const xds::ConfigUpdate& update);
  void scheduleTrim();
  bool trim_scheduled_ = false;
  bool trim_again_ = false;  // a big response came during a trim sequence: one more sequence after it
  static constexpr std::chrono::seconds kMinTrimInterval{2};
  std::chrono::steady_clock::time_point last_trim_{};
  stats::Counter clusterCounter(const std::string& cluster, const std::string& name);

  asio::io_context& main_;
  stats::Store& store_;
  upstream::ClusterManager& clusters_;
  const bool ads_cds_;
  const bool ads_lds_;
  std::chrono::milliseconds cds_timeout_{15000};
  std::chrono::milliseconds lds_timeout_{15000};
  std::unique_ptr<xds::AdsClient> client_;
  ListenerSink* listener_sink_ = nullptr;

  // CDS
  std::set<std::string> static_clusters_;
  std::map<std::string, ClusterRecord> dynamic_clusters_;
  std::map<std::string, std::pair<std::string, std::chrono::system_clock::time_point>> cluster_errors_;
  // EDS: the subscriptions of static clusters (CDS ones are in their ClusterRecord); service name ->
  // clusters naming it when that is not their own name (rare); last accepted CLA per service name.
  std::map<std::string, EdsTrack> static_eds_;
  EdsTrack* edsTrack(const std::string& cluster);
  const EdsTrack* edsTrack(const std::string& cluster) const;
  // Every tracked EDS cluster with its subscription.
  void forEachEds(const std::function<void(const std::string&, const EdsTrack&)>& fn) const;
  std::multimap<std::string, std::string> eds_aliases_;
  std::map<std::string, EndpointRecord> endpoints_;
  // EDS clusters waiting for their first assignment -> initial_fetch_timeout deadline; one timer for all.
  std::map<std::string, std::chrono::steady_clock::time_point> warm_deadlines_;
  bool eds_subscribed_ = false;
  uint64_t eds_sent_hash_ = 0;
  // RDS
  bool rds_subscribed_ = false;
  std::vector<std::string> rds_sent_;
  std::map<std::string, std::unique_ptr<asio::steady_timer>> rds_timers_;
  // LDS
  std::map<std::string, DynamicResource> dynamic_listeners_;
  // HTTP filters Skiff does not implement that LDS listeners may still name (runtime key
  // skiff.allow_unknown_extensions): dropped from the listener, logged once per (filter, listener).
  std::set<std::string> allowed_unknown_;
  std::set<std::pair<std::string, std::string>> skipped_logged_;
  // Drops allow-listed unknown HTTP filters and maps deprecated_v1.bind_to_port; returns the listener.
  envoy::config::listener::v3::Listener normalizeListener(envoy::config::listener::v3::Listener listener);

  // SDS: secrets referenced with sds_config {ads: {}} by each LDS listener / CDS cluster (applied or
  // pending) and by static ones; resources held until their secrets arrive (or sds_timeout_ passes).
  struct Pending {
    xds::XdsResource resource;
  };
  bool applyCluster(const envoy::config::cluster::v3::Cluster& cluster, const xds::XdsResource& r, bool first,
                    std::string* error);
  std::string applyListener(envoy::config::listener::v3::Listener listener, const xds::XdsResource& r);
  static void setSecretRefs(std::map<std::string, std::set<std::string>>& refs, const std::string& user,
                            std::set<std::string> names);
  // Every name delivered, or its initial fetch timed out (the resource then goes on without it, as Envoy's).
  bool secretsReady(const std::set<std::string>& names) const;
  void hold(std::map<std::string, Pending>& pending, const xds::XdsResource& r, bool listener);
  void releasePending(std::map<std::string, Pending>& pending, bool listener, bool force = false,
                      const std::string& only = "");
  void refreshSdsSubscription();
  std::map<std::string, std::set<std::string>> listener_secret_refs_, cluster_secret_refs_;
  std::set<std::string> static_secret_refs_;
  std::map<std::string, Pending> pending_listeners_, pending_clusters_;
  std::map<std::string, DynamicResource> secrets_;
  // Per secret: Envoy's sds.<name>.* stats and the initial fetch timer of its sds_config.
  struct SecretState {
    stats::Counter update_attempt, update_success, update_rejected, update_failure, init_fetch_timeout,
        key_rotation_failed;
    stats::Gauge version, update_time;
    std::chrono::milliseconds timeout{15000};
    std::unique_ptr<asio::steady_timer> timer;  // runs until the first version arrives
    bool timed_out = false;
  };
  SecretState& secretState(const std::string& name);
  void noteSecretTimeouts(const std::map<std::string, std::chrono::milliseconds>& timeouts);
  void startSecretTimer(const std::string& name, SecretState& state);
  std::map<std::string, SecretState> secret_states_;
  std::map<std::string, std::chrono::milliseconds> secret_timeouts_;  // first reference's timeout wins
  bool sds_subscribed_ = false;
  bool refresh_sds_scheduled_ = false;
  std::vector<std::string> sds_sent_;

  // Readiness.
  bool cds_initial_done_ = true;
  bool lds_initial_done_ = true;
  std::set<std::string> initial_eds_pending_;
  bool initialized_ = false;
  std::function<void()> initialized_cb_;

  TypeCounters cds_stats_, lds_stats_;
  stats::Gauge connected_state_;
  stats::Counter rate_limit_enforced_;
  uint64_t synced_rate_limit_enforced_ = 0;
  std::string control_plane_identifier_;
  bool sync_scheduled_ = false;
  bool refresh_eds_scheduled_ = false;
  bool refresh_rds_scheduled_ = false;
  asio::steady_timer housekeeping_timer_;
  asio::steady_timer warm_timer_;
  asio::steady_timer trim_timer_;
  bool warm_timer_armed_ = false;
  std::chrono::steady_clock::time_point warm_timer_deadline_;
  void armWarmTimer(std::chrono::steady_clock::time_point deadline);
  void onWarmDeadlines();
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace skiff::server
