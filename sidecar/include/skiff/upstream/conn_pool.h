// Per-worker pools of upstream TCP connections, one pool per cluster, idle connections kept per host.
#pragma once

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "skiff/network/transport.h"
#include "skiff/upstream/cluster_info.h"
#include "skiff/upstream/host.h"
#include "skiff/upstream/upstream_socket.h"

namespace skiff::upstream {

// Which idle list a connection returns to: the host's endpoint, plus the source key (UpstreamSource::key)
// when the connection was made from a source of its own (empty for the cluster's default source).
struct PoolKey {
  asio::ip::tcp::endpoint endpoint;
  std::string source;
  bool operator==(const PoolKey&) const = default;
};
struct PoolKeyHash {
  size_t operator()(const PoolKey& key) const {
    return EndpointHash()(key.endpoint) ^ (std::hash<std::string>()(key.source) << 1);
  }
};

// Live connections (connecting, busy or idle) per key of one worker's HTTP/1 pool. The connections share
// it: they may outlive the pool.
using LiveConnectionCounts = std::unordered_map<PoolKey, uint32_t, PoolKeyHash>;

// One connection to an upstream host (TCP, or TLS when the cluster's transport says so). While idle the
// pool owns it; while busy, one request does. Requests read and write through `transport`.
struct UpstreamConnection {
  explicit UpstreamConnection(asio::io_context& io)
      : transport(asio::ip::tcp::socket(io)), socket(transport.socket()) {}
  ~UpstreamConnection();

  network::Transport transport;
  asio::ip::tcp::socket& socket;  // transport.socket(): opening, connecting, probing, closing
  uint32_t transport_index = 0;   // the UpstreamTransport it was made with (0: the cluster's default)
  HostSharedPtr host;
  ClusterInfoConstSharedPtr cluster;
  uint32_t requests = 0;  // requests started on this connection
  std::chrono::steady_clock::time_point created = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point idle_since;
  std::string local_address;
  // The TLS session's facts, copied once on first use for the streams' StreamInfo::upstream_tls.
  mutable std::shared_ptr<const tls::TlsConnectionInfo> tls_info;
  PoolKey pool_key;                            // host endpoint + source key: which idle list it returns to
  std::shared_ptr<LiveConnectionCounts> live;  // its pool's counts, which it leaves when destroyed
  // The response read buffer, kept with the connection so a reused connection reuses its memory.
  std::string read_buffer;
};
using UpstreamConnectionPtr = std::unique_ptr<UpstreamConnection>;

enum class PoolFailure { kNone, kConnectFailure, kTimeout, kOverflow };

class ConnPool {
 public:
  // Called exactly once unless cancelled: a connected socket, or a failure with its reason.
  using Callback =
      std::function<void(UpstreamConnectionPtr conn, PoolFailure failure, std::string_view reason)>;

  class Pending {
   public:
    virtual ~Pending() = default;
    // The requester gave up (reset, timeout); the callback will not run.
    virtual void cancel() = 0;
  };
  using PendingPtr = std::shared_ptr<Pending>;

  struct Acquired {
    UpstreamConnectionPtr conn;                // an idle connection, ready now
    PendingPtr pending;                        // or: the callback runs later
    PoolFailure failure = PoolFailure::kNone;  // or: failed at once (overflow)
  };

  ConnPool(asio::io_context& io, ClusterInfoConstSharedPtr cluster);
  ~ConnPool();
  ConnPool(const ConnPool&) = delete;
  ConnPool& operator=(const ConnPool&) = delete;

  // `source` (see upstreamSourceFor) is part of the pool key: connections made from different source
  // addresses or marks are never handed to each other. Empty = the cluster's upstream_bind_config.
  Acquired acquire(const HostSharedPtr& host, Callback cb, const UpstreamSource& source = {});
  // Hands a connection back. `reusable` when the exchange ended cleanly on a keep-alive connection.
  void release(UpstreamConnectionPtr conn, bool reusable);
  // Closes idle connections older than the cluster's idle timeout (called from a periodic worker timer),
  // or every idle one when `all`.
  void closeIdle(bool all);
  // A new cluster version (e.g. changed limits): idle connections stay, new ones use the new info.
  // A changed upstream_bind_config closes the idle connections made from the old source.
  void updateCluster(ClusterInfoConstSharedPtr cluster);
  // The worker is stopping: released connections close and nothing new connects, so no socket operation
  // starts while the loop is being destroyed (its in-flight handlers release connections then).
  void stop() { stopping_ = true; }
  size_t idleCount() const;
  // Host (+ source) keys in the map (an empty host entry stays until the idle sweep).
  size_t hostKeyCount() const { return hosts_.size(); }

 private:
  struct PendingRequest;
  struct HostPool {
    std::vector<UpstreamConnectionPtr> idle;              // most recently used last
    std::deque<std::shared_ptr<PendingRequest>> waiting;  // over the connection limit
  };

  using HostMap = std::unordered_map<PoolKey, HostPool, PoolKeyHash>;
  bool isClusterDefault(const UpstreamSource& source) const;
  void eraseIfEmpty(HostMap::iterator it);
  void connect(const std::shared_ptr<PendingRequest>& request);
  void connected(const std::shared_ptr<PendingRequest>& request, UpstreamConnectionPtr conn);
  void onConnectionClosed();
  void serveWaiting();
  bool isAlive(UpstreamConnection& conn) const;
  bool hasConnection(const PoolKey& key) const { return live_->count(key) != 0; }

  asio::io_context& io_;
  ClusterInfoConstSharedPtr cluster_;
  // By host endpoint (+ source key). Empty source-key entries are erased at once, empty host
  // entries by the idle sweep (closeIdle).
  HostMap hosts_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::shared_ptr<LiveConnectionCounts> live_ = std::make_shared<LiveConnectionCounts>();
  bool stopping_ = false;
};

// A worker's pools, by cluster name.
class ConnPoolMap {
 public:
  explicit ConnPoolMap(asio::io_context& io) : io_(io) {}
  ConnPool& get(const ClusterInfoConstSharedPtr& cluster);
  void remove(const std::string& cluster_name);
  void closeIdle(bool all);
  // Worker shutdown: closes every idle connection and stops every pool, present and future (ConnPool::stop).
  void stop();

 private:
  asio::io_context& io_;
  std::unordered_map<std::string, std::unique_ptr<ConnPool>> pools_;
  bool stopped_ = false;
};

}  // namespace skiff::upstream
