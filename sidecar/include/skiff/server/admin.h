// Envoy's admin API (/stats, /clusters, /config_dump, /logging, /ready, /quitquitquit ...) served over
// HTTP/1.1 on the main thread's event loop. Paths, methods, status codes and output shapes follow Envoy's
// admin.
#pragma once

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace envoy::config::bootstrap::v3 {
class Bootstrap;
}
namespace envoy::admin::v3 {
class ClustersConfigDump;
class EndpointsConfigDump;
class ListenersConfigDump;
class RoutesConfigDump;
class SecretsConfigDump;
}  // namespace envoy::admin::v3
namespace skiff::stats {
class Store;
}
namespace skiff::upstream {
class ClusterManager;
}

namespace skiff::server {

// admin.v3.ServerInfo.State (and the `server.state` gauge).
enum class ServerState { kLive = 0, kDraining = 1, kPreInitializing = 2, kInitializing = 3 };

// "LIVE", "DRAINING", "PRE_INITIALIZING", "INITIALIZING".
std::string_view serverStateName(ServerState state);

// What the admin API reads from and acts on; the server implements it. Called on the main thread only.
class AdminContext {
 public:
  virtual ~AdminContext() = default;
  virtual skiff::stats::Store& stats() = 0;
  virtual const skiff::upstream::ClusterManager& clusterManager() const = 0;
  virtual ServerState state() const = 0;
  // Each listener's name and bound address ("0.0.0.0:15001"; the real port when configured with port 0).
  virtual std::vector<std::pair<std::string, std::string>> listenerAddresses() const = 0;
  // Static listeners/clusters/route configs and the node for /config_dump and /server_info come from it.
  virtual const envoy::config::bootstrap::v3::Bootstrap& bootstrap() const = 0;
  // Adds the xDS-delivered resources whose names pass `match` to the /config_dump sections. Default: none.
  virtual void dumpDynamicConfig(const std::function<bool(const std::string&)>& /*match*/,
                                 envoy::admin::v3::ClustersConfigDump& /*clusters*/,
                                 envoy::admin::v3::EndpointsConfigDump& /*endpoints*/,
                                 envoy::admin::v3::ListenersConfigDump& /*listeners*/,
                                 envoy::admin::v3::RoutesConfigDump& /*routes*/) const {}
  // Adds the ADS-delivered secrets (dynamic_active_secrets, dynamic_warming_secrets) whose names pass
  // `match`; /config_dump redacts them as it redacts static ones. Default: none.
  virtual void dumpDynamicSecrets(const std::function<bool(const std::string&)>& /*match*/,
                                  envoy::admin::v3::SecretsConfigDump& /*secrets*/) const {}
  // JSON object of admin.v3.CommandLineOptions (concurrency, log_level, drain_time, service_cluster, ...).
  virtual std::string serverInfoCommandLine() const = 0;
  virtual std::chrono::system_clock::time_point startTime() const = 0;
  virtual void setHealthCheckFailed(bool failed) = 0;
  virtual void drainListeners(bool inbound_only, bool graceful, bool skip_exit) = 0;
  // /quitquitquit, called after the "OK" response has been written: drain and stop.
  virtual void quit() = 0;
};

class AdminServer {
 public:
  // Binds to `endpoint` on `loop` (the main thread's io_context) and starts accepting. Throws
  // std::system_error on bind failure. `context` must outlive the server.
  AdminServer(asio::io_context& loop, const asio::ip::tcp::endpoint& endpoint, AdminContext& context);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // The bound address (the real port when bound to port 0).
  asio::ip::tcp::endpoint localEndpoint() const;
  // Stops accepting and closes every admin connection. Idempotent; must run on the loop's thread.
  void close();

  struct Response {
    uint32_t status;
    std::string content_type;
    std::string body;
  };
  // Handles one request without a connection, for other listeners that route to the admin (Istio's 15021
  // /healthz/ready and 15090 /stats/prometheus). Counts in http.admin.* like a request on the admin port.
  // /quitquitquit answers at once and calls quit() from a task posted to the loop. Main thread only.
  Response handle(std::string_view method, std::string_view path_and_query, std::string_view body = {});

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;  // Shared with connection coroutines, which may outlive close().
};

}  // namespace skiff::server
