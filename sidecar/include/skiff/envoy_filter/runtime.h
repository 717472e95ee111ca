// The process's EnvoyFilter set (main thread only): loaded from --envoy-filters or the bootstrap's
// runtime key, re-read when the files change, applied to the static bootstrap and to every xDS resource.
// Reports each outcome: a log line, envoy_filter.<name>.{applied,patch_failed} counters, and a status
// list for /config_dump (bootstrap node metadata SKIFF_ENVOY_FILTERS).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include <google/protobuf/struct.pb.h>

#include "skiff/envoy_filter/applier.h"

namespace skiff::envoy_filter {

// Bootstrap option: layered_runtime static layer key holding comma-separated files/directories.
inline constexpr std::string_view kRuntimeKey = "skiff.envoy_filters";
// Node metadata key under which /config_dump shows which EnvoyFilters applied.
inline constexpr std::string_view kStatusMetadataKey = "SKIFF_ENVOY_FILTERS";

// The paths the bootstrap names under kRuntimeKey ("" if none).
std::string pathsFromBootstrap(const envoy::config::bootstrap::v3::Bootstrap& bootstrap);

class Runtime {
 public:
  static Runtime& instance();

  // Loads `paths` (throws config::ConfigError naming file, object and field) for the proxy `node`
  // describes. An empty `paths` disables everything.
  void configure(const std::string& paths, const envoy::config::core::v3::Node& node);
  bool enabled() const { return applier_ != nullptr; }
  const std::string& paths() const { return paths_; }
  const Applier* applier() const { return applier_.get(); }

  // The static bootstrap, patched in place (the raw one is kept for re-application).
  void patchBootstrap(envoy::config::bootstrap::v3::Bootstrap& bootstrap);
  const envoy::config::bootstrap::v3::Bootstrap& rawBootstrap() const { return raw_bootstrap_; }
  // The unpatched static listener `name` and the filters that changed it; nullopt if none did.
  std::optional<std::pair<envoy::config::listener::v3::Listener, ApplyReport>> unpatchedStatic(
      const std::string& name) const;

  // xDS hooks. Each remembers the raw resource (for re-application), patches a copy, reports and returns
  // it. A listener patch that REMOVEs the listener yields nullopt. Never throws.
  std::optional<envoy::config::listener::v3::Listener> patchListener(
      const envoy::config::listener::v3::Listener& raw, const std::string& what,
      ApplyReport* report = nullptr);
  envoy::config::cluster::v3::Cluster patchCluster(const envoy::config::cluster::v3::Cluster& raw);
  void patchRouteConfiguration(envoy::config::route::v3::RouteConfiguration& config);
  const std::map<std::string, envoy::config::cluster::v3::Cluster>& rawClusters() const {
    return raw_clusters_;
  }
  // What patchCluster() last returned for `name` (nullptr if never called).
  const envoy::config::cluster::v3::Cluster* lastPatchedCluster(const std::string& name) const {
    auto it = patched_clusters_.find(name);
    return it == patched_clusters_.end() ? nullptr : &it->second;
  }
  const std::map<std::string, envoy::config::route::v3::RouteConfiguration>& rawRoutes() const {
    return raw_routes_;
  }

  // Reports the outcome of patching `what` (log, stats, status).
  void record(const std::string& what, const ApplyReport& report);
  // A patched object was rejected by the proxy while its unpatched form was accepted: the filters that
  // changed it count as failed.
  void recordRejected(const std::string& what, const ApplyReport& report, const std::string& error);

  // Polls the files (mtime, size, names). True when they changed and the new set loaded; a set that fails
  // to load is logged and counted (envoy_filter.reload_failure) and the old one stays.
  bool pollForChange();

  // Counters can be registered once the server created its stats store; counts so far are added then.
  void startStats();

  // [{name, namespace, source, state: applied|not_applied|not_selected|failed, reason, applied, failed}].
  google::protobuf::Value status() const;

 private:
  struct Entry {
    std::string name, namespace_, source;
    std::string state;  // applied | not_applied | not_selected | failed
    std::string reason;
    uint64_t applied = 0, failed = 0;
  };
  std::string signature() const;
  void load();

  std::string paths_;
  envoy::config::core::v3::Node node_;
  std::string signature_;
  std::unique_ptr<Applier> applier_;
  std::map<std::string, Entry> status_;
  envoy::config::bootstrap::v3::Bootstrap raw_bootstrap_;
  std::map<std::string, envoy::config::cluster::v3::Cluster> raw_clusters_, patched_clusters_;
  std::map<std::string, envoy::config::route::v3::RouteConfiguration> raw_routes_;
};

}  // namespace skiff::envoy_filter
