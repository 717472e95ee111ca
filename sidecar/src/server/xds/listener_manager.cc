// ListenerManager: static and LDS listeners, their sockets, hand-off to workers, drains and stats.
#include "server/xds/listener_manager.h"

#include <algorithm>
#include <atomic>
#include <functional>
#include <stdexcept>
#include <system_error>

#include "skiff/common/logging.h"
#include "skiff/upstream/host.h"

namespace skiff::server {

ListenerManager::ListenerManager(stats::Store& store, const std::vector<std::unique_ptr<Worker>>& workers,
                                 std::chrono::milliseconds drain_time)
    : store_(store),
      workers_(workers),
      drain_time_(drain_time),
      added_(store.counter("listener_manager.listener_added")),
      modified_(store.counter("listener_manager.listener_modified")),
      removed_(store.counter("listener_manager.listener_removed")),
      create_success_(store.counter("listener_manager.listener_create_success")),
      create_failure_(store.counter("listener_manager.listener_create_failure")),
      total_active_(store.gauge("listener_manager.total_listeners_active")),
      total_draining_(store.gauge("listener_manager.total_listeners_draining")) {
  updateGauges();
}

void ListenerManager::addStatic(const envoy::config::listener::v3::Listener& proto, const std::string& path) {
  install(proto, path, true);
}

std::string ListenerManager::addOrUpdateListener(const envoy::config::listener::v3::Listener& listener,
                                                 const std::string& version) {
  if (listener.name().empty()) return "name: must be set";
  auto it = listeners_.find(listener.name());
  if (it != listeners_.end() && it->second.is_static) {
    return "listener '" + listener.name() + "' is a static listener and cannot be added or updated by LDS";
  }
  if (it != listeners_.end() && it->second.hash == listener.SerializeAsString()) return "";
  if (updates_stopped_) return "the server is draining; listeners cannot be added or modified";
  if (inbound_stopped_ && listener.traffic_direction() == envoy::config::core::v3::INBOUND) {
    return "traffic_direction: INBOUND listeners were stopped by /drain_listeners?inboundonly and cannot be "
           "added or modified";
  }
  try {
    install(listener, "listener", false);
  } catch (const std::exception& e) {
    return e.what();
  }
  SKIFF_LOG(kConfig, info, "lds: listener '{}' {} (version {})", listener.name(),
            it != listeners_.end() ? "updated" : "added", version);
  return "";
}

bool ListenerManager::removeListener(const std::string& name) {
  auto it = listeners_.find(name);
  if (it == listeners_.end() || it->second.is_static) return false;
  listeners_.erase(it);
  removed_.inc();
  total_draining_.inc();
  auto drained = drainTracker();
  for (const auto& w : workers_) w->removeListener(name, drain_time_, drained);
  updateGauges();
  SKIFF_LOG(kConfig, info, "lds: listener '{}' removed; draining for up to {}ms", name, drain_time_.count());
  return true;
}

void ListenerManager::install(const envoy::config::listener::v3::Listener& proto, const std::string& path,
                              bool is_static) {
  const auto workers = static_cast<uint32_t>(workers_.size());
  auto config = std::make_shared<const ListenerConfig>(proto, path, store_, workers);
  // Two listeners on one address would silently share it through SO_REUSEPORT: refuse, as Envoy does.
  if (config->bind_to_port && config->endpoint.port() != 0) {
    for (const auto& [name, active] : listeners_) {
      if (name != config->name && active.config->bind_to_port && active.bound == config->endpoint) {
        throw std::invalid_argument(path + ".address: " + upstream::formatEndpoint(config->endpoint) +
                                    " is already used by listener '" + name + "'");
      }
    }
  }
  std::vector<int> fds(workers, -1);
  asio::ip::tcp::endpoint bound = config->endpoint;
  if (config->bind_to_port) fds = bindListenerSockets(*config, workers, &bound);

  auto existing = listeners_.find(config->name);
  const bool replacing = existing != listeners_.end();
  std::function<void()> drained;
  if (replacing) {
    modified_.inc();
    total_draining_.inc();
    drained = drainTracker();
  } else {
    added_.inc();
  }
  if (is_static) {
    for (uint32_t w = 0; w < workers; ++w) {
      if (config->bind_to_port) {
        workers_[w]->addListener(config, fds[w], bound);
      } else {
        workers_[w]->addUnboundListener(config);
      }
    }
  } else {
    for (uint32_t w = 0; w < workers; ++w) {
      workers_[w]->addOrReplaceListener(config, fds[w], bound, drain_time_, drained);
    }
  }
  create_success_.inc(workers);

  Active active;
  active.config = config;
  active.hash = proto.SerializeAsString();
  active.bound = bound;
  active.address = upstream::formatEndpoint(bound);
  active.is_static = is_static;
  active.order = replacing ? existing->second.order : next_order_++;
  listeners_[config->name] = std::move(active);
  updateGauges();
  SKIFF_LOG(kMain, info, "listener '{}' on {}{} ({} workers)", config->name, upstream::formatEndpoint(bound),
            config->bind_to_port ? "" : " (bind_to_port: false)", workers);
}

std::function<void()> ListenerManager::drainTracker() {
  // Runs on each worker's thread; the last one ends the listener's drain.
  auto remaining = std::make_shared<std::atomic<size_t>>(workers_.size());
  stats::Gauge draining = total_draining_;
  if (workers_.empty()) {
    draining.dec();
    return nullptr;
  }
  return [remaining, draining] {
    if (remaining->fetch_sub(1, std::memory_order_acq_rel) == 1) draining.dec();
  };
}

void ListenerManager::updateGauges() {
  total_active_.set(static_cast<int64_t>(listeners_.size()));
}

std::vector<std::pair<std::string, std::string>> ListenerManager::addresses() const {
  std::vector<std::pair<uint64_t, const Active*>> ordered;
  for (const auto& [_, active] : listeners_) ordered.emplace_back(active.order, &active);
  std::sort(ordered.begin(), ordered.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [_, active] : ordered) out.emplace_back(active->config->name, active->address);
  return out;
}

}  // namespace skiff::server
