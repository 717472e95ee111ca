// Listeners: the immutable config built from an Envoy Listener, and the per-worker acceptor.
#pragma once

#include <asio/ip/tcp.hpp>
#include <memory>
#include <string>
#include <vector>

#include "envoy/config/listener/v3/listener.pb.h"
#include "server/http/connection_manager_config.h"
#include "server/listener_stats.h"
#include "server/worker_context.h"
#include "skiff/stats/stats.h"

namespace skiff::server {

struct ListenerConfig {
  // Validates the listener; throws std::invalid_argument naming `path` and the field.
  ListenerConfig(const envoy::config::listener::v3::Listener& proto, const std::string& path,
                 stats::Store& store, uint32_t workers);

  std::string name;
  asio::ip::tcp::endpoint endpoint;  // as configured (port may be 0)
  bool bind_to_port = true;
  bool inbound = false;  // traffic_direction INBOUND
  uint32_t buffer_limit = 1024 * 1024;
  uint32_t backlog = 1024;
  ListenerStats stats;
  ConnectionManagerConfigSharedPtr hcm;
  envoy::config::listener::v3::Listener proto;
};
using ListenerConfigSharedPtr = std::shared_ptr<const ListenerConfig>;

// Opens `count` listening sockets on the same address with SO_REUSEPORT, so the kernel spreads
// connections over the workers. The first bind resolves port 0; the rest reuse the chosen port.
// Throws std::system_error naming the address on failure.
std::vector<int> bindListenerSockets(const ListenerConfig& config, uint32_t count,
                                     asio::ip::tcp::endpoint* bound);

// A worker's accept loop for one listener.
class ActiveListener : public std::enable_shared_from_this<ActiveListener> {
 public:
  ActiveListener(WorkerContext& worker, ListenerConfigSharedPtr config, int fd, std::string bound_address);
  void start();
  void stop();

 private:
  void accept();

  WorkerContext& worker_;
  ListenerConfigSharedPtr config_;
  asio::ip::tcp::acceptor acceptor_;
  std::string bound_address_;
  bool stopped_ = false;
};

}  // namespace skiff::server
