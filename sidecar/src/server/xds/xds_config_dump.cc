// XdsManager's part of /config_dump: the dynamic listeners, clusters, endpoints, routes and secrets it holds.
#include "server/xds/xds_manager.h"

#include <google/protobuf/util/time_util.h>

#include <map>

#include "server/xds/route_config_provider.h"

namespace skiff::server {
namespace {

google::protobuf::Timestamp toTimestamp(std::chrono::system_clock::time_point t) {
  return google::protobuf::util::TimeUtil::NanosecondsToTimestamp(
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}

}  // namespace

void XdsManager::dumpConfig(const std::function<bool(const std::string&)>& match,
                            envoy::admin::v3::ClustersConfigDump& clusters,
                            envoy::admin::v3::EndpointsConfigDump& endpoints,
                            envoy::admin::v3::ListenersConfigDump& listeners,
                            envoy::admin::v3::RoutesConfigDump& routes) const {
  clusters.set_version_info(clusters_.cdsVersionInfo());
  std::map<std::string, upstream::ClusterInfoConstSharedPtr> latest;
  for (const auto& info : clusters_.allClusters()) latest[info->name] = info;
  for (const auto& [name, resource] : dynamic_clusters_) {
    if (!match(name)) continue;
    auto active = clusters_.info(name);
    auto it = latest.find(name);
    const bool warming = !active || it == latest.end() || it->second != active;
    auto* entry = warming ? clusters.add_dynamic_warming_clusters() : clusters.add_dynamic_active_clusters();
    if (resource.version) entry->set_version_info(*resource.version);
    entry->mutable_cluster()->set_type_url(std::string(xds::kClusterType));
    if (resource.received) {
      entry->mutable_cluster()->set_value(*resource.received);
    } else if (it != latest.end()) {
      entry->mutable_cluster()->set_value(it->second->configBytes());
    }
    *entry->mutable_last_updated() = toTimestamp(resource.last_updated);
    entry->set_client_status(envoy::admin::v3::ACKED);
  }
  for (const auto& [name, pending] : pending_clusters_) {
    if (!match(name)) continue;
    auto* entry = clusters.add_dynamic_warming_clusters();  // waiting for its secrets
    entry->set_version_info(pending.resource.version);
    *entry->mutable_cluster() = pending.resource.resource;
    entry->set_client_status(envoy::admin::v3::ACKED);
  }
  for (const auto& [name, error] : cluster_errors_) {
    if (!match(name)) continue;
    auto* entry = clusters.add_dynamic_warming_clusters();
    auto* state = entry->mutable_error_state();
    state->set_details(error.first);
    *state->mutable_last_update_attempt() = toTimestamp(error.second);
    entry->set_client_status(envoy::admin::v3::NACKED);
    envoy::config::cluster::v3::Cluster named;
    named.set_name(name);
    state->mutable_failed_configuration()->PackFrom(named);
  }
  for (const auto& [name, resource] : endpoints_) {
    if (!match(name)) continue;
    auto* entry = endpoints.add_dynamic_endpoint_configs();
    if (resource.version) entry->set_version_info(*resource.version);
    entry->mutable_endpoint_config()->set_type_url(std::string(xds::kEndpointType));
    entry->mutable_endpoint_config()->set_value(resource.bytes);
    *entry->mutable_last_updated() = toTimestamp(resource.last_updated);
    entry->set_client_status(envoy::admin::v3::ACKED);
  }
  listeners.set_version_info(client_->stats().types.count(std::string(xds::kListenerType))
                                 ? client_->stats().types.at(std::string(xds::kListenerType)).version_info
                                 : "");
  for (const auto& [name, resource] : dynamic_listeners_) {
    if (!match(name)) continue;
    auto* entry = listeners.add_dynamic_listeners();
    entry->set_name(name);
    const bool warming = listener_sink_ && listener_sink_->isWarming(name);
    auto* state = warming ? entry->mutable_warming_state() : entry->mutable_active_state();
    state->set_version_info(resource.version);
    *state->mutable_listener() = resource.resource;
    *state->mutable_last_updated() = toTimestamp(resource.last_updated);
    entry->set_client_status(envoy::admin::v3::ACKED);
  }
  for (const auto& [name, pending] : pending_listeners_) {
    if (!match(name) || dynamic_listeners_.count(name)) continue;
    auto* entry = listeners.add_dynamic_listeners();  // waiting for its secrets
    entry->set_name(name);
    entry->mutable_warming_state()->set_version_info(pending.resource.version);
    *entry->mutable_warming_state()->mutable_listener() = pending.resource.resource;
    entry->set_client_status(envoy::admin::v3::ACKED);
  }
  for (const auto& provider : RouteConfigProviderManager::instance().live()) {
    if (!provider->config() || !match(provider->name())) continue;
    auto* entry = routes.add_dynamic_route_configs();
    entry->set_version_info(provider->version());
    entry->mutable_route_config()->PackFrom(*provider->config());
    *entry->mutable_last_updated() = toTimestamp(provider->lastUpdated());
    entry->set_client_status(envoy::admin::v3::ACKED);
  }
}

}  // namespace skiff::server
