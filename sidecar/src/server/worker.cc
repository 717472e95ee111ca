// Worker: runs one io_context on its own thread; everything it owns is touched only from that thread.
#include "server/worker.h"

#include <pthread.h>

#include <asio/post.hpp>
#include <string>

#include "skiff/common/logging.h"
#include "skiff/stats/stats.h"

namespace skiff::server {

namespace {
constexpr std::chrono::seconds kHousekeepingPeriod{1};
}

Worker::Worker(uint32_t index)
    : ctx_(io_, index), work_(asio::make_work_guard(io_)), housekeeping_timer_(io_) {}

Worker::~Worker() {
  stop();
}

void Worker::addListener(ListenerConfigSharedPtr config, int fd, std::string bound_address) {
  listeners_.push_back(Entry{std::move(config), nullptr, fd, std::move(bound_address)});
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
      l.active = std::make_shared<ActiveListener>(ctx_, l.config, l.fd, l.bound_address);
      l.active->start();
    }
    housekeeping();
    io_.run();
  });
}

void Worker::housekeeping() {
  active_connections_.store(ctx_.connections.size(), std::memory_order_relaxed);
  for (auto& l : listeners_) l.config->hcm->access_logs->flush(ctx_.index);
  ctx_.pools.closeIdle(false);
  housekeeping_timer_.expires_after(kHousekeepingPeriod);
  housekeeping_timer_.async_wait([this](std::error_code ec) {
    if (!ec) housekeeping();
  });
}

void Worker::drain(bool inbound_only) {
  asio::post(io_, [this, inbound_only] {
    ctx_.draining = true;
    for (auto& l : listeners_) {
      if (inbound_only && !l.config->inbound) continue;
      if (l.active) l.active->stop();
    }
    // drain() may close a connection, which removes it from the set.
    std::vector<DownstreamConnection*> conns(ctx_.connections.begin(), ctx_.connections.end());
    for (auto* c : conns) {
      if (ctx_.connections.count(c)) c->drain();
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
      l.config->hcm->access_logs->flush(ctx_.index);
    }
    ctx_.pools.closeIdle(true);
    housekeeping_timer_.cancel();
    work_.reset();
    io_.stop();
  });
  thread_.join();
}

}  // namespace skiff::server
