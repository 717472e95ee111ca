// Worker: runs one io_context on its own thread; everything it owns is touched only from that thread.
#include "server/worker.h"

#include <pthread.h>

#include <algorithm>
#include <asio/post.hpp>
#include <string>

#include "skiff/common/logging.h"
#include "skiff/stats/stats.h"
#include "skiff/upstream/host.h"

namespace skiff::server {

namespace {
constexpr std::chrono::seconds kHousekeepingPeriod{1};
// How often a draining listener's connections are asked again to close (an HTTP/1 connection closes
// once its in-flight request is done and it is idle).
constexpr std::chrono::milliseconds kDrainTick{100};

// The live entries of `connections` (closing one may close or free others).
std::vector<DownstreamConnection*> snapshot(const std::unordered_set<DownstreamConnection*>& connections) {
  return {connections.begin(), connections.end()};
}
}  // namespace

Worker::Worker(uint32_t index)
    : ctx_(io_, index), work_(asio::make_work_guard(io_)), housekeeping_timer_(io_), drain_timer_(io_) {}

Worker::~Worker() {
  stop();
  // Acceptors and timers before the loop they belong to; configs and index_ outlive it.
  listeners_.clear();
}

void Worker::addListener(ListenerConfigSharedPtr config, int fd, const asio::ip::tcp::endpoint& bound) {
  index_.add(config, bound);
  listeners_.push_back(Entry{std::move(config), nullptr, fd, upstream::formatEndpoint(bound)});
}

void Worker::addUnboundListener(ListenerConfigSharedPtr config) {
  index_.add(config, config->endpoint);
}

void Worker::addOrReplaceListener(ListenerConfigSharedPtr config, int fd,
                                  const asio::ip::tcp::endpoint& bound, std::chrono::milliseconds drain_time,
                                  std::function<void()> drained) {
  asio::post(
      io_, [this, config = std::move(config), fd, bound, drain_time, drained = std::move(drained)]() mutable {
        // The new sockets are already listening (bound on the main thread), so the address never refuses
        // connections while the old acceptor goes.
        ListenerConfigSharedPtr old = detach(config->name);
        Entry entry{config, nullptr, fd, upstream::formatEndpoint(fd >= 0 ? bound : config->endpoint)};
        index_.add(config, fd >= 0 ? bound : config->endpoint);
        if (fd >= 0) {
          entry.active = std::make_shared<ActiveListener>(ctx_, index_, config, fd, entry.bound_address);
          if (ctx_.draining || (inbound_stopped_ && config->inbound)) {
            entry.active->stop();  // stopped by /drain_listeners or shutdown: the socket only closes
          } else {
            entry.active->start();
          }
        }
        listeners_.push_back(std::move(entry));
        if (old) {
          beginDrain(std::move(old), drain_time, std::move(drained));
        } else if (drained) {
          drained();
        }
      });
}

void Worker::removeListener(const std::string& name, std::chrono::milliseconds drain_time,
                            std::function<void()> drained) {
  asio::post(io_, [this, name, drain_time, drained = std::move(drained)]() mutable {
    ListenerConfigSharedPtr old = detach(name);
    if (old) {
      beginDrain(std::move(old), drain_time, std::move(drained));
    } else if (drained) {
      drained();
    }
  });
}

ListenerConfigSharedPtr Worker::detach(const std::string& name) {
  auto it = std::find_if(listeners_.begin(), listeners_.end(),
                         [&](const Entry& e) { return e.config->name == name; });
  if (it == listeners_.end()) return nullptr;
  ListenerConfigSharedPtr config = it->config;
  if (it->active) it->active->stop();
  listeners_.erase(it);
  index_.remove(config.get());
  return config;
}

void Worker::beginDrain(ListenerConfigSharedPtr config, std::chrono::milliseconds drain_time,
                        std::function<void()> drained) {
  draining_.push_back(
      Draining{std::move(config), std::chrono::steady_clock::now() + drain_time, std::move(drained)});
  checkDraining();
}

void Worker::checkDraining() {
  const auto now = std::chrono::steady_clock::now();
  for (auto it = draining_.begin(); it != draining_.end();) {
    const ListenerConfig* config = it->config.get();
    const bool expired = now >= it->deadline;
    for (auto* c : snapshot(ctx_.connections)) {
      if (!ctx_.connections.count(c) || c->accepted_by != config) continue;
      if (expired) {
        c->close();
      } else {
        c->drain();
      }
    }
    bool left = false;
    for (auto* c : ctx_.connections) left = left || c->accepted_by == config;
    if (left && !expired) {
      ++it;
      continue;
    }
    if (left) SKIFF_LOG(kMain, debug, "listener '{}': drain time over", config->name);
    flushAccessLogs(*config, ctx_.index);
    auto drained = std::move(it->drained);
    it = draining_.erase(it);
    if (drained) drained();
  }
  active_connections_.store(ctx_.connections.size(), std::memory_order_release);
  if (draining_.empty() || drain_timer_armed_) return;
  drain_timer_armed_ = true;
  drain_timer_.expires_after(kDrainTick);
  drain_timer_.async_wait([this](std::error_code ec) {
    drain_timer_armed_ = false;
    if (!ec) checkDraining();
  });
}

void Worker::updateCluster(const std::string& name, upstream::ClusterInfoConstSharedPtr info,
                           upstream::HostSetConstSharedPtr hosts) {
  asio::post(io_, [this, name, info = std::move(info), hosts = std::move(hosts)]() mutable {
    if (!info) ctx_.pools.remove(name);
    ctx_.clusters.update(name, std::move(info), std::move(hosts));
  });
}

void Worker::start() {
  thread_ = std::thread([this] {
    // Envoy's thread name; lets top -H and /proc/<pid>/task/*/comm tell the workers apart.
    const std::string name = "wrk:worker_" + std::to_string(ctx_.index);
    pthread_setname_np(pthread_self(), name.c_str());
    stats::setThreadSlab(ctx_.index + 1);
    for (auto& l : listeners_) {
      if (l.fd < 0 || l.active) continue;
      l.active = std::make_shared<ActiveListener>(ctx_, index_, l.config, l.fd, l.bound_address);
      l.active->start();
    }
    housekeeping();
    io_.run();
  });
}

void Worker::housekeeping() {
  active_connections_.store(ctx_.connections.size(), std::memory_order_relaxed);
  flushAccessLogs();
  ctx_.pools.closeIdle(false);
  ctx_.clusters.cleanup(std::chrono::steady_clock::now());
  housekeeping_timer_.expires_after(kHousekeepingPeriod);
  housekeeping_timer_.async_wait([this](std::error_code ec) {
    if (!ec) housekeeping();
  });
}

void Worker::flushAccessLogs() {
  for (const auto& l : index_.all()) flushAccessLogs(*l, ctx_.index);
  for (const auto& d : draining_) flushAccessLogs(*d.config, ctx_.index);
}

void Worker::flushAccessLogs(const ListenerConfig& config, uint32_t worker) {
  // HCM and tcp_proxy sinks buffer per worker; each chain flushes its own.
  for (const auto& chain : config.filter_chains) chain->flushAccessLogs(worker);
  if (config.default_chain) config.default_chain->flushAccessLogs(worker);
}

void Worker::drain(bool inbound_only) {
  asio::post(io_, [this, inbound_only] {
    // ?inboundonly: only INBOUND listeners (bound, or reached by hand-off) and their connections.
    if (inbound_only) {
      inbound_stopped_ = true;
    } else {
      ctx_.draining = true;
    }
    for (auto& l : listeners_) {
      if (inbound_only && !l.config->inbound) continue;
      if (l.active) l.active->stop();
    }
    std::unordered_set<const ListenerConfig*> inbound;
    for (const auto& l : index_.all()) {
      if (l->inbound) inbound.insert(l.get());
    }
    // drain() may close a connection, which removes it from the set.
    for (auto* c : snapshot(ctx_.connections)) {
      if (!ctx_.connections.count(c)) continue;
      if (!inbound_only || inbound.count(c->accepted_by)) c->drain();
    }
    active_connections_.store(ctx_.connections.size(), std::memory_order_release);
    drains_done_.fetch_add(1, std::memory_order_acq_rel);
  });
}

void Worker::stop() {
  if (!thread_.joinable()) return;
  asio::post(io_, [this] {
    std::vector<DownstreamConnection*> conns(ctx_.connections.begin(), ctx_.connections.end());
    for (auto* c : conns) {
      if (ctx_.connections.count(c)) c->close();
    }
    for (auto& l : listeners_) {
      if (l.active) l.active->stop();
    }
    flushAccessLogs();
    ctx_.pools.stop();
    housekeeping_timer_.cancel();
    drain_timer_.cancel();
    work_.reset();
    io_.stop();
  });
  thread_.join();
}

}  // namespace skiff::server
