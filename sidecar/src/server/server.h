// The process: loads the bootstrap, owns the main loop, clusters, workers, admin, and the drain sequence.
#pragma once

#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <vector>

#include "envoy/config/bootstrap/v3/bootstrap.pb.h"
#include "server/envoy_filter_glue.h"
#include "server/listener.h"
#include "server/options.h"
#include "server/worker.h"
#include "server/xds/listener_manager.h"
#include "server/xds/xds_manager.h"
#include "skiff/server/admin.h"
#include "skiff/upstream/cluster_manager.h"

namespace skiff::server {

// Loads --config-path/--config-yaml into a bootstrap (warnings logged) and applies the node flags.
// Throws config::ConfigError / std::invalid_argument naming the field.
envoy::config::bootstrap::v3::Bootstrap loadConfig(const Options& options);

// Builds everything the config describes without binding sockets; throws naming the field.
void validateConfig(const Options& options, const envoy::config::bootstrap::v3::Bootstrap& bootstrap);

class Server : public AdminContext {
 public:
  Server(Options options, envoy::config::bootstrap::v3::Bootstrap bootstrap);
  ~Server() override;

  // Serves until SIGTERM/SIGINT or /quitquitquit; returns the process exit code.
  int run();

  // AdminContext
  stats::Store& stats() override;
  const upstream::ClusterManager& clusterManager() const override { return *cluster_manager_; }
  // As Envoy: a live server whose health checks were failed (/healthcheck/fail) reports DRAINING.
  ServerState state() const override {
    return state_ == ServerState::kLive && health_check_failed_ ? ServerState::kDraining : state_;
  }
  std::vector<std::pair<std::string, std::string>> listenerAddresses() const override;
  const envoy::config::bootstrap::v3::Bootstrap& bootstrap() const override { return bootstrap_; }
  void dumpDynamicConfig(const std::function<bool(const std::string&)>& match,
                         envoy::admin::v3::ClustersConfigDump& clusters,
                         envoy::admin::v3::EndpointsConfigDump& endpoints,
                         envoy::admin::v3::ListenersConfigDump& listeners,
                         envoy::admin::v3::RoutesConfigDump& routes) const override;
  void dumpDynamicSecrets(const std::function<bool(const std::string&)>& match,
                          envoy::admin::v3::SecretsConfigDump& secrets) const override;
  std::string serverInfoCommandLine() const override;
  std::chrono::system_clock::time_point startTime() const override { return start_time_; }
  void setHealthCheckFailed(bool failed) override { health_check_failed_ = failed; }
  void drainListeners(bool inbound_only, bool graceful, bool skip_exit) override;
  void quit() override;

 private:
  void setUp();
  void beginShutdown(std::chrono::seconds drain_time);
  void pollDrain();
  void updateServerStats();
  void maybeLive();

  Options options_;
  envoy::config::bootstrap::v3::Bootstrap bootstrap_;
  const std::chrono::system_clock::time_point start_time_ = std::chrono::system_clock::now();
  asio::io_context main_{1};
  asio::signal_set signals_{main_};
  asio::steady_timer stats_timer_{main_};
  asio::steady_timer drain_timer_{main_};
  std::chrono::steady_clock::time_point drain_deadline_;
  std::vector<uint64_t> drain_baseline_;  // each worker's drainsDone() when shutdown began
  std::unique_ptr<upstream::ClusterManager> cluster_manager_;
  std::unique_ptr<XdsManager> xds_;  // after cluster_manager_: destroyed first
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<ListenerManager> listener_manager_;  // after workers_: destroyed first
  std::unique_ptr<EnvoyFilterGlue> envoy_filters_;     // in front of listener_manager_ (EnvoyFilter hooks)
  std::unique_ptr<AdminServer> admin_;
  ServerState state_ = ServerState::kInitializing;
  bool health_check_failed_ = false;
  bool shutting_down_ = false;
  int exit_code_ = 0;
};

}  // namespace skiff::server
