// RDS: one RouteConfigProvider per route_config_name, shared by every HTTP connection manager that names
// it. The main thread publishes immutable RouteTables; workers read them without taking a lock.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "envoy/config/route/v3/route.pb.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "skiff/router/route_table.h"
#include "skiff/stats/stats.h"

namespace skiff::server {

// http.<stat_prefix>.rds.<route_config_name>.* (Envoy's subscription statistics).
struct RdsStats {
  RdsStats(stats::Store& store, const std::string& prefix);
  stats::Counter config_reload, init_fetch_timeout, update_attempt, update_success, update_failure,
      update_rejected, update_empty;
  stats::Gauge version;
};

class RouteConfigProvider {
 public:
  using RouteTableConstSharedPtr = std::shared_ptr<const router::RouteTable>;

  // `workers`: how many worker slots to keep (worker indexes 0..workers-1); `stat_prefix` is the HCM's.
  RouteConfigProvider(std::string route_config_name, const std::string& stat_prefix, stats::Store& store,
                      uint32_t workers, std::chrono::milliseconds initial_fetch_timeout);
  RouteConfigProvider(const RouteConfigProvider&) = delete;
  RouteConfigProvider& operator=(const RouteConfigProvider&) = delete;

  const std::string& name() const { return name_; }
  std::chrono::milliseconds initialFetchTimeout() const { return initial_fetch_timeout_; }

  // Worker `worker`'s view of the current table (nullptr before the first config: the router answers 404
  // NR). Steady state: one atomic load and the worker's own slot. Only the first call on a worker after an
  // update takes the publish mutex, to copy the new pointer into the slot. A stream keeps the table it got,
  // so in-flight requests finish on the configuration they started with.
  RouteTableConstSharedPtr current(uint32_t worker) const;

  // Main thread. Validates and publishes `config`; returns "" or the error (the previous table stays).
  // An identical config only refreshes the version (no config_reload).
  std::string update(const envoy::config::route::v3::RouteConfiguration& config, const std::string& version);
  // Main thread: initial_fetch_timeout passed without a config (serving stays 404 until one arrives).
  void initialFetchTimedOut();
  // Main thread: the stream to the control plane failed.
  void connectionFailed() { stats_.update_failure.inc(); }

  // True once a config arrived or the initial fetch timed out.
  bool initialized() const { return initialized_; }
  bool hasConfig() const { return config_.has_value(); }
  // For /config_dump (main thread).
  const std::optional<envoy::config::route::v3::RouteConfiguration>& config() const { return config_; }
  const std::string& version() const { return version_; }
  std::chrono::system_clock::time_point lastUpdated() const { return last_updated_; }
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

 private:
  struct alignas(64) Slot {
    uint64_t generation = 0;
    RouteTableConstSharedPtr table;
  };

  const std::string name_;
  const std::chrono::milliseconds initial_fetch_timeout_;
  RdsStats stats_;
  // Publish side: latest_ and generation_ change together under mutex_; workers compare generation_ with
  // their slot's and take the mutex only when they differ.
  mutable std::mutex mutex_;
  RouteTableConstSharedPtr latest_;
  std::atomic<uint64_t> generation_{0};
  std::unique_ptr<Slot[]> slots_;  // one per worker, each touched only by its worker
  const uint32_t slot_count_;
  // Main thread only.
  std::optional<envoy::config::route::v3::RouteConfiguration> config_;
  std::string version_;
  std::chrono::system_clock::time_point last_updated_;
  bool initialized_ = false;
};

using RouteConfigProviderSharedPtr = std::shared_ptr<RouteConfigProvider>;

// Process-wide registry of RDS providers, keyed by route_config_name (main thread). HCM configs hold the
// providers; the registry only keeps weak references, so a provider goes away with its last HCM.
class RouteConfigProviderManager {
 public:
  static RouteConfigProviderManager& instance();

  // Returns the provider for `rds.route_config_name`, creating it with the HCM's stat prefix. Throws
  // std::invalid_argument naming `path` when the config source is not ADS or the bootstrap has no ADS.
  RouteConfigProviderSharedPtr getOrCreate(
      const envoy::extensions::filters::network::http_connection_manager::v3::Rds& rds,
      const std::string& stat_prefix, stats::Store& store, uint32_t workers, const std::string& path);

  // Whether the bootstrap configures ADS (set before listeners are built). Without it, `rds` is an error.
  void setAdsConfigured(bool configured) { ads_configured_ = configured; }
  // Called (main thread) after a provider is created, so the xDS manager can extend its RDS subscription.
  void setOnCreated(std::function<void(const RouteConfigProviderSharedPtr&)> cb) {
    on_created_ = std::move(cb);
  }

  // Every provider still referenced by some HCM, by name.
  std::vector<RouteConfigProviderSharedPtr> live() const;
  RouteConfigProviderSharedPtr find(const std::string& name) const;

 private:
  mutable std::mutex mutex_;
  std::map<std::string, std::weak_ptr<RouteConfigProvider>> providers_;
  bool ads_configured_ = false;
  std::function<void(const RouteConfigProviderSharedPtr&)> on_created_;
};

}  // namespace skiff::server
