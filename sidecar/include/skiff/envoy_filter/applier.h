// Applies EnvoyFilter configPatches to Envoy v3 messages the way istiod does, one EnvoyFilter at a time:
// each is applied to a copy and kept only if all of its patches succeeded.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "envoy/config/bootstrap/v3/bootstrap.pb.h"
#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/core/v3/base.pb.h"
#include "envoy/config/core/v3/extension.pb.h"
#include "envoy/config/listener/v3/listener.pb.h"
#include "envoy/config/route/v3/route.pb.h"
#include "skiff/envoy_filter/envoy_filter.h"

namespace skiff::envoy_filter {

// What istiod knows about the workload, read from the bootstrap node.
struct Proxy {
  std::map<std::string, std::string> labels;    // node.metadata.LABELS (a map, or a JSON object string)
  std::map<std::string, std::string> metadata;  // the string-valued node.metadata keys
  std::string istio_version;                    // node.metadata.ISTIO_VERSION
  std::string namespace_;                       // node.metadata.NAMESPACE, else the node id's
  bool gateway = false;                         // node.id "router~..."

  static Proxy fromNode(const envoy::config::core::v3::Node& node);
};

// The outcome of patching one object (or the bootstrap).
struct ApplyReport {
  std::vector<std::string> applied;                         // keys of EnvoyFilters that changed it
  std::vector<std::pair<std::string, std::string>> failed;  // (key, error): left out entirely
  bool removed = false;                                     // a REMOVE patch deleted the object
  void append(const ApplyReport& other);
};

class Applier {
 public:
  // Keeps the filters that select `proxy` (workloadSelector, namespace), in application order.
  Applier(std::vector<EnvoyFilter> filters, Proxy proxy);

  const Proxy& proxy() const { return proxy_; }
  const std::vector<EnvoyFilter>& selected() const { return selected_; }
  // (key, reason) of the filters that do not select this proxy.
  const std::vector<std::pair<std::string, std::string>>& notSelected() const { return not_selected_; }

  // LISTENER (MERGE/REMOVE), LISTENER_FILTER, FILTER_CHAIN, NETWORK_FILTER, HTTP_FILTER, then
  // ROUTE_CONFIGURATION / VIRTUAL_HOST / HTTP_ROUTE on the route configs inlined in its HCMs, then HTTP
  // filters that name an EXTENSION_CONFIG (config_discovery) get its typed_config inlined.
  ApplyReport patchListener(envoy::config::listener::v3::Listener& listener) const;
  // RDS: the context comes from the name (inbound|... / gateway / outbound).
  ApplyReport patchRouteConfiguration(envoy::config::route::v3::RouteConfiguration& config) const;
  ApplyReport patchCluster(envoy::config::cluster::v3::Cluster& cluster) const;
  // LISTENER ADD / CLUSTER ADD values (themselves patched by the other patches), in order.
  std::vector<envoy::config::listener::v3::Listener> addedListeners(ApplyReport* report) const;
  std::vector<envoy::config::cluster::v3::Cluster> addedClusters(ApplyReport* report) const;
  // The whole static bootstrap: BOOTSTRAP MERGE, static listeners and clusters (REMOVE drops them), then
  // the ADDed listeners and clusters appended.
  ApplyReport patchBootstrap(envoy::config::bootstrap::v3::Bootstrap& bootstrap) const;

  // Internal: patch inline route configs with the context/port of their listener.
  ApplyReport patchRouteConfigurationIn(envoy::config::route::v3::RouteConfiguration& config,
                                        PatchContext context, uint32_t listener_port) const;

 private:
  Proxy proxy_;
  std::vector<EnvoyFilter> selected_;
  std::vector<std::pair<std::string, std::string>> not_selected_;
  std::map<std::string, envoy::config::core::v3::TypedExtensionConfig> extension_configs_;
};

}  // namespace skiff::envoy_filter
