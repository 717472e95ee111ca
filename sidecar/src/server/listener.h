// Listeners: the immutable config built from an Envoy Listener (listener filters, filter chains and
// their match table), the per-worker index used for use_original_dst hand-off, and the acceptor.
#pragma once

#include <array>
#include <asio/ip/tcp.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "envoy/config/listener/v3/listener.pb.h"
#include "server/filter_chain.h"
#include "server/listener_filters/listener_filter.h"
#include "server/listener_stats.h"
#include "server/worker_context.h"
#include "skiff/stats/stats.h"

namespace skiff::server {

// Owned through ListenerConfigSharedPtr; what is still working on one of its sockets (listener filters)
// holds weak_from_this().lock() so a removed listener outlives its last pending socket.
struct ListenerConfig : std::enable_shared_from_this<ListenerConfig> {
  // Validates the listener; throws std::invalid_argument naming `path` and the field.
  ListenerConfig(const envoy::config::listener::v3::Listener& proto, const std::string& path,
                 stats::Store& store, uint32_t workers);

  // The chain for a connection: the best FilterChainMatch, else default_filter_chain, else null.
  const FilterChainConfig* selectChain(const network::ConnectionInfo& info) const;
  // Every http_connection_manager of the listener (access log flushing).
  void forEachHcm(const std::function<void(const ConnectionManagerConfig&)>& fn) const;

  std::string name;
  asio::ip::tcp::endpoint endpoint;  // as configured (port may be 0)
  bool bind_to_port = true;
  bool inbound = false;  // traffic_direction INBOUND
  bool use_original_dst = false;
  bool transparent = false;
  bool freebind = false;
  uint32_t buffer_limit = 1024 * 1024;
  uint32_t backlog = 1024;
  ListenerStats stats;
  std::vector<ListenerFilterEntry> listener_filters;
  std::chrono::milliseconds listener_filters_timeout{15000};  // 0: none
  bool continue_on_listener_filters_timeout = false;
  size_t max_peek_bytes = 0;  // the most any listener filter may peek
  std::vector<FilterChainConfigConstSharedPtr> filter_chains;
  FilterChainConfigConstSharedPtr default_chain;
  FilterChainMatcher matcher;
  envoy::config::listener::v3::Listener proto;
};
using ListenerConfigSharedPtr = std::shared_ptr<const ListenerConfig>;

// Every listener a worker knows (bound or bind_to_port: false), by address.
class ListenerIndex {
 public:
  void add(const ListenerConfigSharedPtr& config, const asio::ip::tcp::endpoint& address);
  // Forgets `config` (a removed or replaced listener); false when it is not in the index.
  bool remove(const ListenerConfig* config);
  // The listener on exactly `address`, else the wildcard one (0.0.0.0 / ::) on its port; null if none.
  const ListenerConfig* find(const asio::ip::tcp::endpoint& address) const;
  const std::vector<ListenerConfigSharedPtr>& all() const { return all_; }

 private:
  struct Key {
    std::array<uint8_t, 16> ip{};
    uint16_t port = 0;
    bool v6 = false;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };
  static Key keyOf(const asio::ip::address& ip, uint16_t port);
  std::unordered_map<Key, const ListenerConfig*, KeyHash> by_address_;
  std::vector<ListenerConfigSharedPtr> all_;
};

// Opens `count` listening sockets on the same address with SO_REUSEPORT, so the kernel spreads
// connections over the workers. The first bind resolves port 0; the rest reuse the chosen port.
// Throws std::system_error naming the address on failure.
std::vector<int> bindListenerSockets(const ListenerConfig& config, uint32_t count,
                                     asio::ip::tcp::endpoint* bound);

// A worker's accept loop for one listener.
class ActiveListener : public std::enable_shared_from_this<ActiveListener> {
 public:
  ActiveListener(WorkerContext& worker, const ListenerIndex& index, ListenerConfigSharedPtr config, int fd,
                 std::string bound_address);
  void start();
  void stop();

 private:
  void accept();
  void onAcceptedAfterStop(asio::ip::tcp::socket socket);

  WorkerContext& worker_;
  const ListenerIndex& index_;
  ListenerConfigSharedPtr config_;
  asio::ip::tcp::acceptor acceptor_;
  std::string bound_address_;
  bool stopped_ = false;
};

}  // namespace skiff::server
