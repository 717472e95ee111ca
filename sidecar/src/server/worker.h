// A worker thread: its own event loop, listener sockets, connections, cluster view and connection pools.
#pragma once

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <thread>
#include <unordered_set>
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

  // Before start(): the worker takes ownership of `fd`; `bound` is the address it listens on.
  void addListener(ListenerConfigSharedPtr config, int fd, const asio::ip::tcp::endpoint& bound);
  // Before start(): a listener without a socket (bind_to_port: false), reached only by hand-off from a
  // use_original_dst listener.
  void addUnboundListener(ListenerConfigSharedPtr config);
  // After start(), from the main thread (the worker applies them on its own thread). Starts accepting on
  // `fd` (-1: bind_to_port false) for `config`; a listener of the same name stops accepting and drains its
  // connections for at most `drain_time`. `drained` runs on this worker's thread once nothing of the old
  // listener is left (at once when there was none).
  void addOrReplaceListener(ListenerConfigSharedPtr config, int fd, const asio::ip::tcp::endpoint& bound,
                            std::chrono::milliseconds drain_time, std::function<void()> drained);
  // Stops accepting for the listener `name` and drains it like addOrReplaceListener.
  void removeListener(const std::string& name, std::chrono::milliseconds drain_time,
                      std::function<void()> drained);
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
  struct Entry {
    ListenerConfigSharedPtr config;
    std::shared_ptr<ActiveListener> active;
    int fd;
    std::string bound_address;
  };
  struct Draining {
    ListenerConfigSharedPtr config;
    std::chrono::steady_clock::time_point deadline;
    std::function<void()> drained;
  };

  void housekeeping();
  void flushAccessLogs();
  static void flushAccessLogs(const ListenerConfig& config, uint32_t worker);
  // Takes the listener `name` out of listeners_ and index_ and stops its acceptor; null if unknown.
  ListenerConfigSharedPtr detach(const std::string& name);
  void beginDrain(ListenerConfigSharedPtr config, std::chrono::milliseconds drain_time,
                  std::function<void()> drained);
  // Nudges the draining listeners' connections (idle ones close), closes them at the deadline, and
  // reports listeners with nothing left.
  void checkDraining();

  // Declared before io_ so they outlive it: handlers destroyed with the loop release connections and
  // pending sockets that unregister from ctx_ and reach index_ (hand-off) until the end.
  ListenerIndex index_;  // every listener, bound or not
  WorkerContext ctx_;
  asio::io_context io_{1};
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::vector<Entry> listeners_;  // acceptors use io_: released in ~Worker before it
  std::vector<Draining> draining_;
  asio::steady_timer housekeeping_timer_;
  asio::steady_timer drain_timer_;
  bool drain_timer_armed_ = false;
  bool inbound_stopped_ = false;  // /drain_listeners?inboundonly: INBOUND listeners stay stopped
  std::atomic<size_t> active_connections_{0};
  std::atomic<uint64_t> drains_done_{0};
  std::thread thread_;
};

}  // namespace skiff::server
