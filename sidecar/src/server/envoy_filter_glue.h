// EnvoyFilter hooks of the server: a ListenerSink in front of the ListenerManager that patches every LDS
// listener, and the mtime poll that re-applies a changed EnvoyFilter set to the running configuration
// (static and LDS listeners are replaced with Envoy's drain, clusters and RDS configs updated).
#pragma once

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <set>
#include <string>

#include "envoy/config/bootstrap/v3/bootstrap.pb.h"
#include "server/xds/listener_manager.h"
#include "skiff/upstream/cluster_manager.h"

namespace skiff::server {

class EnvoyFilterGlue : public ListenerSink {
 public:
  // `bootstrap` is the server's (patched) bootstrap: re-application keeps its static resources and the
  // status shown in /config_dump current.
  EnvoyFilterGlue(asio::io_context& main, ListenerManager& listeners, upstream::ClusterManager& clusters,
                  envoy::config::bootstrap::v3::Bootstrap& bootstrap);

  // Starts polling the EnvoyFilter paths every `interval`.
  void start(std::chrono::milliseconds interval);
  void stop() { timer_.cancel(); }
  // Writes the status into bootstrap node metadata (SKIFF_ENVOY_FILTERS).
  void publishStatus();

  // ListenerSink
  std::string addOrUpdateListener(const envoy::config::listener::v3::Listener& listener,
                                  const std::string& version) override;
  bool removeListener(const std::string& name) override;
  void onRouteConfigsChanged() override { listeners_.onRouteConfigsChanged(); }
  bool isWarming(const std::string& name) const override { return listeners_.isWarming(name); }

 private:
  void poll();
  void reapply();

  asio::io_context& main_;
  ListenerManager& listeners_;
  upstream::ClusterManager& clusters_;
  envoy::config::bootstrap::v3::Bootstrap& bootstrap_;
  asio::steady_timer timer_;
  std::chrono::milliseconds interval_{1000};
  // LDS listeners as received (name -> (listener, version)), for re-application.
  std::map<std::string, std::pair<envoy::config::listener::v3::Listener, std::string>> lds_;
  std::set<std::string> added_clusters_;  // names of CLUSTER ADD clusters installed
};

}  // namespace skiff::server
