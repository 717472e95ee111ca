// What a worker thread offers the connections it owns.
#pragma once

#include <asio/io_context.hpp>
#include <atomic>
#include <cstdint>
#include <functional>
#include <unordered_set>

#include "skiff/upstream/conn_pool.h"
#include "skiff/upstream/thread_local_cluster.h"

namespace skiff::server {

struct ListenerConfig;

class DownstreamConnection {
 public:
  virtual ~DownstreamConnection() = default;
  // Finish what is in flight, then close; idle connections close at once.
  virtual void drain() = 0;
  // Close now.
  virtual void close() = 0;

  // The listener whose socket accepted it (identity only, never dereferenced): lets a worker drain the
  // connections of one removed or replaced listener.
  const ListenerConfig* accepted_by = nullptr;
};

struct WorkerContext {
  WorkerContext(asio::io_context& loop, uint32_t worker_index) : io(loop), index(worker_index), pools(loop) {}

  asio::io_context& io;
  uint32_t index;  // 0-based worker index (stats slab index - 1)
  upstream::ThreadLocalClusterManager clusters;
  upstream::ConnPoolMap pools;
  // Connections, and sockets still in listener filters; each registers itself while it lives.
  std::unordered_set<DownstreamConnection*> connections;
  bool draining = false;

  static uint64_t nextConnectionId() {
    static std::atomic<uint64_t> next{1};
    return next.fetch_add(1, std::memory_order_relaxed);
  }
};

}  // namespace skiff::server
