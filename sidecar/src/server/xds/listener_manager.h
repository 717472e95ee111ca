// The process's listeners, static and from LDS: builds their configs, binds their sockets, hands them to
// every worker, replaces and removes them with Envoy's drain, and keeps listener_manager.* stats.
// Main thread only.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "server/listener.h"
#include "server/worker.h"
#include "server/xds/listener_sink.h"
#include "skiff/common/init_target.h"
#include "skiff/stats/stats.h"

namespace skiff::server {

class ListenerManager : public ListenerSink {
 public:
  // `workers` outlive the manager; `drain_time` bounds the drain of a replaced or removed listener.
  ListenerManager(stats::Store& store, const std::vector<std::unique_ptr<Worker>>& workers,
                  std::chrono::milliseconds drain_time);

  // Before the workers start; throws std::invalid_argument / std::system_error naming `path` or the
  // address.
  void addStatic(const envoy::config::listener::v3::Listener& proto, const std::string& path);
  // Once the server drains for shutdown: LDS changes are refused from then on.
  void stopUpdates() {
    updates_stopped_ = true;
    releaseSockets(false);
  }
  // After /drain_listeners?inboundonly: INBOUND listeners cannot be added or modified any more (Envoy).
  void stopInboundUpdates() {
    inbound_stopped_ = true;
    releaseSockets(true);
  }
  // Closes the manager's copies of the listening sockets (of INBOUND listeners only, or of all) once the
  // workers stop accepting on them, so new connections are refused rather than left in a backlog.
  void releaseSockets(bool inbound_only);
  ~ListenerManager() override;

  // ListenerSink
  std::string addOrUpdateListener(const envoy::config::listener::v3::Listener& listener,
                                  const std::string& version) override;
  bool removeListener(const std::string& name) override;
  // EnvoyFilter re-application (server/envoy_filter_glue): adds or replaces (with drain) a static listener;
  // "" or the error (the previous listener keeps serving). An identical config is a no-op.
  std::string updateStatic(const envoy::config::listener::v3::Listener& listener, const std::string& path);
  void onRouteConfigsChanged() override;
  bool isWarming(const std::string& name) const override { return warming_.count(name) > 0; }

  // (name, bound address) of every active listener, in the order they were added.
  std::vector<std::pair<std::string, std::string>> addresses() const;
  size_t activeCount() const { return listeners_.size(); }
  size_t warmingCount() const { return warming_.size(); }
  // Listeners warming on init targets (a Wasm code.remote fetch); the server is not LIVE meanwhile.
  size_t warmingOnTargets() const;
  // Called (main thread) each time a listener leaves warming: installed, removed or replaced while warming
  // (so readiness waiting on warmingOnTargets() is looked at again).
  void setWarmedCallback(std::function<void()> callback) { on_warmed_ = std::move(callback); }

 private:
  struct Active {
    ListenerConfigSharedPtr config;
    std::string hash;               // the serialized proto: an identical update is a no-op
    asio::ip::tcp::endpoint bound;  // the port the kernel chose for port 0
    std::string address;            // bound (or configured, for bind_to_port: false)
    bool is_static = false;
    uint64_t order = 0;
    // dup()s of the workers' listening sockets: a replacement on the same address takes them over, so
    // connections in the accept queue survive the swap (a new SO_REUSEPORT socket would reset them).
    std::vector<int> spare_fds;
  };
  static void closeAll(std::vector<int>& fds);

  // A listener whose HCMs wait for RDS (Envoy's warming): built, not bound, until its route configs are in.
  struct Warming {
    ListenerConfigSharedPtr config;  // keeps its route config providers alive
    std::string path;
    std::string hash;
    std::vector<std::string> rds;  // route_config_names of its HCMs
    bool is_static = false;
    std::shared_ptr<init::Targets> targets;  // its filters' init targets (remote Wasm code)
  };

  // Builds `proto`, then installs it or parks it in warming_; throws.
  void addOrWarm(const envoy::config::listener::v3::Listener& proto, const std::string& path, bool is_static,
                 bool before_start);
  // Binds and hands `config` to the workers (replacing the listener of the same name); throws.
  void install(const ListenerConfigSharedPtr& config, const std::string& path, bool is_static,
               bool before_start);
  // Two listeners on one address would silently share it through SO_REUSEPORT; throws.
  void checkAddress(const ListenerConfig& config, const std::string& path) const;
  // One total_listeners_draining per listener, done when every worker has drained it.
  std::function<void()> drainTracker();
  void updateGauges();
  // warming_ lost or replaced an entry: tell whoever waits on warmingOnTargets().
  void warmingChanged() {
    if (on_warmed_) on_warmed_();
  }

  stats::Store& store_;
  const std::vector<std::unique_ptr<Worker>>& workers_;
  const std::chrono::milliseconds drain_time_;
  std::map<std::string, Active> listeners_;
  std::map<std::string, Warming> warming_;
  uint64_t next_order_ = 0;
  bool updates_stopped_ = false;
  bool inbound_stopped_ = false;
  stats::Counter added_, modified_, removed_, create_success_, create_failure_;
  stats::Gauge total_active_, total_draining_, total_warming_;
  std::function<void()> on_warmed_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // for init-target callbacks
};

}  // namespace skiff::server
