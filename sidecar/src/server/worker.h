// A worker thread: its own event loop, listener sockets, connections, cluster view and connection pools.
#pragma once

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "server/listener.h"
#include "server/worker_context.h"

namespace skiff::server {

class Worker {
 public:
  explicit Worker(uint32_t index);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Before start(): the worker takes ownership of `fd`.
  void addListener(ListenerConfigSharedPtr config, int fd, std::string bound_address);
  // From the main thread: the worker applies it on its own thread.
  void updateCluster(const std::string& name, upstream::ClusterInfoConstSharedPtr info,
                     upstream::HostSetConstSharedPtr hosts);
  void start();
  // Stop accepting (close the listening sockets, so new connections are refused) and let connections
  // finish what they are doing; `inbound_only` limits it to INBOUND listeners.
  void drain(bool inbound_only = false);
  size_t activeConnections() const { return active_connections_.load(std::memory_order_acquire); }
  // How many drain() calls this worker has carried out; activeConnections() is fresh after each.
  uint64_t drainsDone() const { return drains_done_.load(std::memory_order_acquire); }
  // Closes every connection and ends the thread.
  void stop();

 private:
  void housekeeping();

  // ctx_ outlives io_: handlers still queued when the loop is destroyed release connections that
  // unregister themselves from ctx_.
  WorkerContext ctx_;
  asio::io_context io_{1};
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  struct Entry {
    ListenerConfigSharedPtr config;
    std::shared_ptr<ActiveListener> active;
    int fd;
    std::string bound_address;
  };
  std::vector<Entry> listeners_;
  asio::steady_timer housekeeping_timer_;
  std::atomic<size_t> active_connections_{0};
  std::atomic<uint64_t> drains_done_{0};
  std::thread thread_;
};

}  // namespace skiff::server
