// EnvoyFilterGlue: patches LDS listeners on their way to the ListenerManager and re-applies a changed
// EnvoyFilter set to static listeners/clusters, LDS listeners, CDS clusters and RDS route configs.
#include "server/envoy_filter_glue.h"

#include <cstdlib>

#include <google/protobuf/util/message_differencer.h>

#include "server/xds/route_config_provider.h"
#include "skiff/common/logging.h"
#include "skiff/envoy_filter/runtime.h"

namespace skiff::server {

using envoy_filter::Runtime;

EnvoyFilterGlue::EnvoyFilterGlue(asio::io_context& main, ListenerManager& listeners,
                                 upstream::ClusterManager& clusters,
                                 envoy::config::bootstrap::v3::Bootstrap& bootstrap)
    : main_(main), listeners_(listeners), clusters_(clusters), bootstrap_(bootstrap), timer_(main) {
  for (const auto& c : bootstrap_.static_resources().clusters()) {
    bool raw = false;
    for (const auto& r : Runtime::instance().rawBootstrap().static_resources().clusters()) {
      raw = raw || r.name() == c.name();
    }
    if (!raw) added_clusters_.insert(c.name());
  }
}

void EnvoyFilterGlue::start(std::chrono::milliseconds interval) {
  interval_ = interval;
  Runtime::instance().startStats();
  publishStatus();
  poll();
}

void EnvoyFilterGlue::publishStatus() {
  (*bootstrap_.mutable_node()->mutable_metadata()->mutable_fields())[std::string(
      envoy_filter::kStatusMetadataKey)] = Runtime::instance().status();
}

void EnvoyFilterGlue::poll() {
  if (Runtime::instance().pollForChange()) reapply();
  timer_.expires_after(interval_);
  timer_.async_wait([this](std::error_code ec) {
    if (!ec) poll();
  });
}

std::string EnvoyFilterGlue::addOrUpdateListener(const envoy::config::listener::v3::Listener& listener,
                                                 const std::string& version) {
  lds_[listener.name()] = {listener, version};
  envoy_filter::ApplyReport report;
  auto patched = Runtime::instance().patchListener(listener, "lds listener", &report);
  publishStatus();
  if (!patched) {
    listeners_.removeListener(listener.name());
    return "";
  }
  std::string error = listeners_.addOrUpdateListener(*patched, version);
  if (error.empty() || report.applied.empty()) return error;
  // The patched listener was rejected: serve the unpatched one and report the filters as failed.
  std::string raw_error = listeners_.addOrUpdateListener(listener, version);
  if (!raw_error.empty()) return raw_error;
  Runtime::instance().recordRejected("lds listener '" + listener.name() + "'", report, error);
  publishStatus();
  return "";
}

bool EnvoyFilterGlue::removeListener(const std::string& name) {
  lds_.erase(name);
  return listeners_.removeListener(name);
}

void EnvoyFilterGlue::reapply() {
  auto& rt = Runtime::instance();
  SKIFF_LOG(kConfig, info, "envoy_filter: {} changed; re-applying to the running configuration", rt.paths());
  // Static resources, from the bootstrap as loaded.
  envoy::config::bootstrap::v3::Bootstrap patched = rt.rawBootstrap();
  rt.patchBootstrap(patched);
  const auto& old_sr = bootstrap_.static_resources();
  const auto& new_sr = patched.static_resources();
  std::map<std::string, uint32_t> bound_ports;  // listeners that asked for port 0 keep the port they got
  for (const auto& [name, address] : listeners_.addresses()) {
    const auto colon = address.rfind(':');
    if (colon != std::string::npos)
      bound_ports[name] = static_cast<uint32_t>(std::atoi(address.c_str() + colon + 1));
  }
  for (int i = 0; i < new_sr.listeners_size(); ++i) {
    envoy::config::listener::v3::Listener l = new_sr.listeners(i);
    auto* sa = l.mutable_address()->mutable_socket_address();
    if (l.address().has_socket_address() && sa->port_value() == 0 && bound_ports.count(l.name())) {
      sa->set_port_value(bound_ports[l.name()]);
    }
    std::string error = listeners_.updateStatic(l, "static_resources.listeners[" + std::to_string(i) + "]");
    if (!error.empty())
      SKIFF_LOG(kConfig, err, "envoy_filter: static listener '{}' not updated: {}", l.name(), error);
  }
  for (const auto& l : old_sr.listeners()) {
    bool kept = false;
    for (const auto& n : new_sr.listeners()) kept = kept || n.name() == l.name();
    if (!kept)
      SKIFF_LOG(kConfig, warn, "envoy_filter: static listener '{}' cannot be removed at run time", l.name());
  }
  std::map<std::string, std::string> old_clusters;
  for (const auto& c : old_sr.clusters()) old_clusters[c.name()] = c.SerializeAsString();
  std::set<std::string> raw_static;
  for (const auto& c : rt.rawBootstrap().static_resources().clusters()) raw_static.insert(c.name());
  std::set<std::string> now_added;
  for (const auto& c : new_sr.clusters()) {
    if (!raw_static.count(c.name())) now_added.insert(c.name());
    auto it = old_clusters.find(c.name());
    if (it != old_clusters.end() && it->second == c.SerializeAsString()) continue;
    try {
      clusters_.addOrUpdateCluster(c);
    } catch (const std::exception& e) {
      SKIFF_LOG(kConfig, err, "envoy_filter: cluster '{}' not updated: {}", c.name(), e.what());
    }
  }
  for (const auto& [name, _] : old_clusters) {
    bool kept = false;
    for (const auto& c : new_sr.clusters()) kept = kept || c.name() == name;
    if (!kept) clusters_.removeCluster(name);
  }
  added_clusters_ = std::move(now_added);
  *bootstrap_.mutable_static_resources() = new_sr;

  // LDS listeners as received.
  auto lds = lds_;
  for (const auto& [name, entry] : lds) {
    std::string error = addOrUpdateListener(entry.first, entry.second);
    if (!error.empty())
      SKIFF_LOG(kConfig, err, "envoy_filter: lds listener '{}' not updated: {}", name, error);
  }
  // CDS clusters still present.
  auto raw_clusters = rt.rawClusters();
  for (const auto& [name, raw] : raw_clusters) {
    if (!clusters_.info(name)) continue;
    const auto* last = rt.lastPatchedCluster(name);
    const auto before = last ? *last : raw;
    auto now = rt.patchCluster(raw);
    if (google::protobuf::util::MessageDifferencer::Equals(before, now))
      continue;  // no re-warming for nothing
    try {
      clusters_.addOrUpdateCluster(now, true);
    } catch (const std::exception& e) {
      SKIFF_LOG(kConfig, err, "envoy_filter: cds cluster '{}' not updated: {}", name, e.what());
    }
  }
  // RDS route configs.
  auto raw_routes = rt.rawRoutes();
  for (const auto& [name, raw] : raw_routes) {
    auto provider = RouteConfigProviderManager::instance().find(name);
    if (!provider) continue;
    auto config = raw;
    rt.patchRouteConfiguration(config);
    std::string error = provider->update(config, provider->version());
    if (!error.empty())
      SKIFF_LOG(kConfig, err, "envoy_filter: route config '{}' not updated: {}", name, error);
  }
  listeners_.onRouteConfigsChanged();
  publishStatus();
}

}  // namespace skiff::server
