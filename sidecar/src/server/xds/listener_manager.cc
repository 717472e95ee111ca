// ListenerManager: static and LDS listeners, their sockets, hand-off to workers, drains and stats.
#include "server/xds/listener_manager.h"

#include <algorithm>
#include <atomic>
#include <functional>
#include <stdexcept>
#include <system_error>

#include <unistd.h>

#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "server/xds/route_config_provider.h"
#include "skiff/common/logging.h"
#include "skiff/upstream/host.h"

namespace skiff::server {

namespace {

// The route_config_names the listener's HTTP connection managers fetch over RDS.
std::vector<std::string> rdsNamesOf(const envoy::config::listener::v3::Listener& proto) {
  std::vector<std::string> out;
  auto scan = [&](const envoy::config::listener::v3::FilterChain& chain) {
    for (const auto& filter : chain.filters()) {
      envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager hcm;
      if (!filter.has_typed_config() || !filter.typed_config().UnpackTo(&hcm) || !hcm.has_rds()) continue;
      const auto& name = hcm.rds().route_config_name();
      if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(name);
    }
  };
  for (const auto& chain : proto.filter_chains()) scan(chain);
  if (proto.has_default_filter_chain()) scan(proto.default_filter_chain());
  return out;
}

// Every named route config has arrived or timed out.
bool routesReady(const std::vector<std::string>& names) {
  for (const auto& name : names) {
    auto provider = RouteConfigProviderManager::instance().find(name);
    if (provider && !provider->initialized()) return false;
  }
  return true;
}

}  // namespace

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
      total_draining_(store.gauge("listener_manager.total_listeners_draining")),
      total_warming_(store.gauge("listener_manager.total_listeners_warming")) {
  updateGauges();
}

void ListenerManager::addStatic(const envoy::config::listener::v3::Listener& proto, const std::string& path) {
  addOrWarm(proto, path, true, true);
}

std::string ListenerManager::addOrUpdateListener(const envoy::config::listener::v3::Listener& listener,
                                                 const std::string& version) {
  if (listener.name().empty()) return "name: must be set";
  auto it = listeners_.find(listener.name());
  auto warm = warming_.find(listener.name());
  if ((it != listeners_.end() && it->second.is_static) ||
      (warm != warming_.end() && warm->second.is_static)) {
    return "listener '" + listener.name() + "' is a static listener and cannot be added or updated by LDS";
  }
  const std::string hash = listener.SerializeAsString();
  if (warm != warming_.end() ? warm->second.hash == hash
                             : (it != listeners_.end() && it->second.hash == hash)) {
    return "";
  }
  if (updates_stopped_) return "the server is draining; listeners cannot be added or modified";
  if (inbound_stopped_ && listener.traffic_direction() == envoy::config::core::v3::INBOUND) {
    return "traffic_direction: INBOUND listeners were stopped by /drain_listeners?inboundonly and cannot be "
           "added or modified";
  }
  try {
    addOrWarm(listener, "listener", false, false);
  } catch (const std::exception& e) {
    return e.what();
  }
  SKIFF_LOG(kConfig, info, "lds: listener '{}' {} (version {})", listener.name(),
            it != listeners_.end() ? "updated" : "added", version);
  return "";
}

std::string ListenerManager::updateStatic(const envoy::config::listener::v3::Listener& listener,
                                          const std::string& path) {
  auto it = listeners_.find(listener.name());
  auto warm = warming_.find(listener.name());
  const std::string hash = listener.SerializeAsString();
  if (warm != warming_.end() ? warm->second.hash == hash
                             : (it != listeners_.end() && it->second.hash == hash)) {
    return "";
  }
  if (updates_stopped_) return "the server is draining; listeners cannot be added or modified";
  try {
    addOrWarm(listener, path, true, false);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

bool ListenerManager::removeListener(const std::string& name) {
  auto warm = warming_.find(name);
  bool removed_warming = false;
  if (warm != warming_.end() && !warm->second.is_static) {
    warming_.erase(warm);
    removed_warming = true;
  }
  auto it = listeners_.find(name);
  if (it == listeners_.end() || it->second.is_static) {
    if (removed_warming) {
      removed_.inc();
      updateGauges();
      SKIFF_LOG(kConfig, info, "lds: warming listener '{}' removed", name);
      warmingChanged();
    }
    return removed_warming;
  }
  if (removed_warming) warmingChanged();
  closeAll(it->second.spare_fds);
  listeners_.erase(it);
  removed_.inc();
  total_draining_.inc();
  auto drained = drainTracker();
  for (const auto& w : workers_) w->removeListener(name, drain_time_, drained);
  updateGauges();
  SKIFF_LOG(kConfig, info, "lds: listener '{}' removed; draining for up to {}ms", name, drain_time_.count());
  return true;
}

void ListenerManager::addOrWarm(const envoy::config::listener::v3::Listener& proto, const std::string& path,
                                bool is_static, bool before_start) {
  const auto workers = static_cast<uint32_t>(workers_.size());
  init::InitScope scope;  // filters that need work done first (remote Wasm code) register here
  auto config = std::make_shared<const ListenerConfig>(proto, path, store_, workers);
  checkAddress(*config, path);
  auto rds = rdsNamesOf(proto);
  const auto& targets = scope.targets();
  if (routesReady(rds) && targets->ready()) {
    install(config, path, is_static, before_start);
    if (warming_.erase(config->name)) {
      updateGauges();
      if (!before_start) warmingChanged();  // the replaced one may have been what readiness waited for
    }
    return;
  }
  // Envoy's warming: not bound (new connections are refused; a replaced listener keeps serving) until
  // the route configs arrive or their initial_fetch_timeout passes, and its init targets are done.
  Warming entry{config, path, proto.SerializeAsString(), std::move(rds), is_static, targets};
  std::string names;
  for (const auto& n : entry.rds) names += (names.empty() ? "route config " : ", route config ") + n;
  for (const auto& n : targets->pending()) names += (names.empty() ? "" : ", ") + n;
  targets->onReady([this, alive = std::weak_ptr<bool>(alive_)] {
    if (alive.lock()) onRouteConfigsChanged();
  });
  const bool replaced = warming_.count(config->name) > 0;
  warming_[config->name] = std::move(entry);
  updateGauges();
  if (replaced && !before_start) warmingChanged();
  SKIFF_LOG(kConfig, info, "listener '{}' warming: waiting for {}", config->name, names);
}

size_t ListenerManager::warmingOnTargets() const {
  size_t n = 0;
  for (const auto& [_, entry] : warming_) n += entry.targets && !entry.targets->ready();
  return n;
}

void ListenerManager::onRouteConfigsChanged() {
  if (updates_stopped_) {  // shutting down: a listener that finishes warming now is not started
    if (!warming_.empty()) {
      warming_.clear();
      updateGauges();
    }
    return;
  }
  std::vector<std::string> ready;
  for (const auto& [name, entry] : warming_) {
    if (routesReady(entry.rds) && (!entry.targets || entry.targets->ready())) ready.push_back(name);
  }
  for (const auto& name : ready) {
    Warming entry = std::move(warming_.at(name));
    warming_.erase(name);
    try {
      checkAddress(*entry.config, entry.path);
      install(entry.config, entry.path, entry.is_static, false);
    } catch (const std::exception& e) {
      create_failure_.inc();
      SKIFF_LOG(kConfig, err, "listener '{}' could not start after warming: {}", name, e.what());
    }
  }
  if (!ready.empty()) updateGauges();
  if (!ready.empty() && on_warmed_) on_warmed_();
}

void ListenerManager::checkAddress(const ListenerConfig& config, const std::string& path) const {
  if (!config.bind_to_port || config.endpoint.port() == 0) return;
  for (const auto& [name, active] : listeners_) {
    if (name != config.name && active.config->bind_to_port && active.bound == config.endpoint) {
      throw std::invalid_argument(path + ".address: " + upstream::formatEndpoint(config.endpoint) +
                                  " is already used by listener '" + name + "'");
    }
  }
}

void ListenerManager::install(const ListenerConfigSharedPtr& config, const std::string& path, bool is_static,
                              bool before_start) {
  const auto workers = static_cast<uint32_t>(workers_.size());
  std::vector<int> fds(workers, -1);
  asio::ip::tcp::endpoint bound = config->endpoint;
  auto existing = listeners_.find(config->name);
  const bool replacing = existing != listeners_.end();
  std::vector<int> spare;
  if (replacing && config->bind_to_port && config->endpoint.port() != 0 &&
      existing->second.spare_fds.size() == workers && existing->second.bound == config->endpoint &&
      existing->second.config->transparent == config->transparent &&
      existing->second.config->freebind == config->freebind) {
    // Same address: keep the listening sockets (Envoy reuses them too), no accepted-queue reset.
    spare = std::move(existing->second.spare_fds);
    existing->second.spare_fds.clear();
    for (uint32_t w = 0; w < workers; ++w) fds[w] = ::dup(spare[w]);
  } else if (config->bind_to_port) {
    fds = bindListenerSockets(*config, workers, &bound);
    for (int fd : fds) spare.push_back(::dup(fd));
  }
  if (config->bind_to_port && (std::find(fds.begin(), fds.end(), -1) != fds.end() ||
                               std::find(spare.begin(), spare.end(), -1) != spare.end())) {
    closeAll(fds);
    closeAll(spare);
    throw std::system_error(errno, std::generic_category(), path + ": dup() of a listening socket failed");
  }
  if (replacing) closeAll(existing->second.spare_fds);
  std::function<void()> drained;
  if (replacing) {
    modified_.inc();
    total_draining_.inc();
    drained = drainTracker();
  } else {
    added_.inc();
  }
  if (before_start) {
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
  active.hash = config->proto.SerializeAsString();
  active.bound = bound;
  active.address = upstream::formatEndpoint(bound);
  active.is_static = is_static;
  active.spare_fds = std::move(spare);
  active.order = replacing ? existing->second.order : next_order_++;
  listeners_[config->name] = std::move(active);
  updateGauges();
  SKIFF_LOG(kMain, info, "listener '{}' on {}{} ({} workers)", config->name, upstream::formatEndpoint(bound),
            config->bind_to_port ? "" : " (bind_to_port: false)", workers);
}

ListenerManager::~ListenerManager() {
  releaseSockets(false);
}

void ListenerManager::closeAll(std::vector<int>& fds) {
  for (int fd : fds) {
    if (fd >= 0) ::close(fd);
  }
  fds.clear();
}

void ListenerManager::releaseSockets(bool inbound_only) {
  for (auto& [_, active] : listeners_) {
    if (!inbound_only || active.config->inbound) closeAll(active.spare_fds);
  }
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
  total_warming_.set(static_cast<int64_t>(warming_.size()));
}

std::vector<std::pair<std::string, std::string>> ListenerManager::addresses() const {
  std::vector<std::pair<uint64_t, const Active*>> ordered;
  ordered.reserve(listeners_.size());
  for (const auto& [_, active] : listeners_) ordered.emplace_back(active.order, &active);
  std::sort(ordered.begin(), ordered.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(ordered.size());
  for (const auto& [_, active] : ordered) out.emplace_back(active->config->name, active->address);
  return out;
}

}  // namespace skiff::server
