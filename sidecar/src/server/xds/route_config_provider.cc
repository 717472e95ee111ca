// RouteConfigProvider (per-name RDS state, lock-free per-worker reads) and the process-wide registry.
#include "server/xds/route_config_provider.h"

#include <google/protobuf/util/message_differencer.h>
#include <google/protobuf/util/time_util.h>

#include <stdexcept>

#include "server/xds/version_hash.h"
#include "skiff/common/logging.h"

namespace skiff::server {

RdsStats::RdsStats(stats::Store& store, const std::string& p)
    : config_reload(store.counter(p + "config_reload")),
      init_fetch_timeout(store.counter(p + "init_fetch_timeout")),
      update_attempt(store.counter(p + "update_attempt")),
      update_success(store.counter(p + "update_success")),
      update_failure(store.counter(p + "update_failure")),
      update_rejected(store.counter(p + "update_rejected")),
      update_empty(store.counter(p + "update_empty")),
      version(store.gauge(p + "version")) {}

RouteConfigProvider::RouteConfigProvider(std::string route_config_name, const std::string& stat_prefix,
                                         stats::Store& store, uint32_t workers,
                                         std::chrono::milliseconds initial_fetch_timeout)
    : name_(std::move(route_config_name)),
      initial_fetch_timeout_(initial_fetch_timeout),
      stats_(store, "http." + stat_prefix + ".rds." + name_ + "."),
      slots_(std::make_unique<Slot[]>(std::max<uint32_t>(workers, 1))),
      slot_count_(std::max<uint32_t>(workers, 1)) {}

RouteConfigProvider::RouteTableConstSharedPtr RouteConfigProvider::current(uint32_t worker) const {
  const uint64_t generation = generation_.load(std::memory_order_acquire);
  if (worker >= slot_count_) {
    std::lock_guard lock(mutex_);
    return latest_;
  }
  Slot& slot = slots_[worker];
  if (slot.generation != generation) {
    std::lock_guard lock(mutex_);
    slot.table = latest_;
    slot.generation = generation_.load(std::memory_order_relaxed);
  }
  return slot.table;
}

std::string RouteConfigProvider::update(const envoy::config::route::v3::RouteConfiguration& config,
                                        const std::string& version) {
  stats_.update_attempt.inc();
  if (config_ && google::protobuf::util::MessageDifferencer::Equals(*config_, config)) {
    version_ = version;
    initialized_ = true;
    stats_.update_success.inc();
    stats_.version.set(static_cast<int64_t>(xxHash64(version)));
    return "";
  }
  RouteTableConstSharedPtr table;
  try {
    table = router::RouteTable::create(config);
  } catch (const std::invalid_argument& e) {
    stats_.update_rejected.inc();
    return e.what();
  }
  {
    std::lock_guard lock(mutex_);
    latest_ = std::move(table);
    generation_.fetch_add(1, std::memory_order_release);
  }
  config_ = config;
  version_ = version;
  last_updated_ = std::chrono::system_clock::now();
  initialized_ = true;
  stats_.update_success.inc();
  stats_.config_reload.inc();
  stats_.version.set(static_cast<int64_t>(xxHash64(version)));
  SKIFF_LOG(kConfig, info, "rds: route config '{}' version '{}' applied", name_, version);
  return "";
}

void RouteConfigProvider::initialFetchTimedOut() {
  if (initialized_) return;
  initialized_ = true;
  stats_.init_fetch_timeout.inc();
  SKIFF_LOG(kConfig, warn, "rds: route config '{}' did not arrive within initial_fetch_timeout", name_);
}

RouteConfigProviderManager& RouteConfigProviderManager::instance() {
  static RouteConfigProviderManager manager;
  return manager;
}

RouteConfigProviderSharedPtr RouteConfigProviderManager::getOrCreate(
    const envoy::extensions::filters::network::http_connection_manager::v3::Rds& rds,
    const std::string& stat_prefix, stats::Store& store, uint32_t workers, const std::string& path) {
  if (rds.route_config_name().empty()) throw std::invalid_argument(path + ".route_config_name: must be set");
  const auto& source = rds.config_source();
  if (!source.has_ads()) {
    throw std::invalid_argument(path +
                                ".config_source: only `ads: {}` is supported (path, api_config_source and "
                                "self are not)");
  }
  if (!ads_configured_) {
    throw std::invalid_argument(path +
                                ".config_source.ads: the bootstrap has no dynamic_resources.ads_config");
  }
  std::chrono::milliseconds timeout{15000};
  if (source.has_initial_fetch_timeout()) {
    timeout = std::chrono::milliseconds(
        google::protobuf::util::TimeUtil::DurationToMilliseconds(source.initial_fetch_timeout()));
  }
  RouteConfigProviderSharedPtr provider;
  {
    std::lock_guard lock(mutex_);
    auto& slot = providers_[rds.route_config_name()];
    provider = slot.lock();
    if (provider) return provider;
    provider =
        std::make_shared<RouteConfigProvider>(rds.route_config_name(), stat_prefix, store, workers, timeout);
    slot = provider;
  }
  if (on_created_) on_created_(provider);
  return provider;
}

std::vector<RouteConfigProviderSharedPtr> RouteConfigProviderManager::live() const {
  std::lock_guard lock(mutex_);
  std::vector<RouteConfigProviderSharedPtr> out;
  for (const auto& [name, weak] : providers_) {
    if (auto p = weak.lock()) out.push_back(std::move(p));
  }
  return out;
}

RouteConfigProviderSharedPtr RouteConfigProviderManager::find(const std::string& name) const {
  std::lock_guard lock(mutex_);
  auto it = providers_.find(name);
  return it == providers_.end() ? nullptr : it->second.lock();
}

}  // namespace skiff::server
