// Istio EnvoyFilter manifests (networking.istio.io/v1alpha3): the parsed model and the loader.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <google/protobuf/message.h>

namespace skiff::envoy_filter {

// Istio's enum values (istio.networking.v1alpha3.EnvoyFilter).
enum class ApplyTo {
  kInvalid = 0,
  kListener = 1,
  kFilterChain = 2,
  kNetworkFilter = 3,
  kHttpFilter = 4,
  kRouteConfiguration = 5,
  kVirtualHost = 6,
  kHttpRoute = 7,
  kCluster = 8,
  kExtensionConfig = 9,
  kBootstrap = 10,
  kListenerFilter = 11,
};
enum class PatchContext { kAny = 0, kSidecarInbound = 1, kSidecarOutbound = 2, kGateway = 3, kWaypoint = 4 };
enum class Operation {
  kInvalid = 0,
  kMerge = 1,
  kAdd = 2,
  kRemove = 3,
  kInsertBefore = 4,
  kInsertAfter = 5,
  kInsertFirst = 6,
  kReplace = 7,
  kMergeAndReplaceList = 8,  // newer API: MERGE, but lists in the value replace the target's lists
};
enum class RouteAction { kAny = 0, kRoute = 1, kRedirect = 2, kDirectResponse = 3 };

std::string_view applyToName(ApplyTo a);
std::string_view operationName(Operation o);
std::string_view contextName(PatchContext c);

struct ListenerMatch {
  uint32_t port_number = 0;  // 0 = any
  std::string name;
  std::string listener_filter;  // LISTENER_FILTER anchor
  bool has_filter_chain = false;
  struct FilterChain {
    std::string name, sni, transport_protocol, application_protocols;
    uint32_t destination_port = 0;
    std::string filter_name;      // filter.name
    std::string sub_filter_name;  // filter.subFilter.name
  } filter_chain;
};

struct RouteConfigurationMatch {
  uint32_t port_number = 0;
  std::string port_name, gateway, name;
  bool has_vhost = false;
  std::string vhost_name, vhost_domain_name;
  bool has_route = false;
  std::string route_name;
  RouteAction route_action = RouteAction::kAny;
};

struct ClusterMatch {
  uint32_t port_number = 0;
  std::string service, subset, name;
};

struct ConfigPatch {
  std::string path;  // "spec.configPatches[i]", for messages
  ApplyTo apply_to = ApplyTo::kInvalid;
  PatchContext context = PatchContext::kAny;
  std::string proxy_version;  // RE2, unanchored, against node metadata ISTIO_VERSION
  std::map<std::string, std::string> proxy_metadata;
  enum class ObjectMatch {
    kNone,
    kListener,
    kRouteConfiguration,
    kCluster,
    kWaypoint
  } object = ObjectMatch::kNone;
  ListenerMatch listener;
  RouteConfigurationMatch route_configuration;
  ClusterMatch cluster;
  Operation operation = Operation::kInvalid;
  std::string filter_class;  // informational (UNSPECIFIED/AUTHN/AUTHZ/STATS)
  // `value` converted to the Envoy message applyTo names (Listener, FilterChain, Filter, HttpFilter,
  // RouteConfiguration, VirtualHost, Route, Cluster, TypedExtensionConfig, Bootstrap, ListenerFilter).
  // Types Skiff has no .proto for are kept as udpa.type.v1.TypedStruct Anys. Null for REMOVE.
  std::shared_ptr<const google::protobuf::Message> value;
};

struct EnvoyFilter {
  std::string source;  // file it came from
  std::string name, namespace_;
  std::string creation_timestamp;  // metadata.creationTimestamp (RFC 3339), may be empty
  int32_t priority = 0;
  bool has_workload_selector = false;
  std::map<std::string, std::string> workload_labels;
  bool has_target_refs = false;
  std::vector<ConfigPatch> patches;

  // "ns/name" or "name"; what logs, stats and /config_dump call it.
  std::string key() const { return namespace_.empty() ? name : namespace_ + "/" + name; }
};

// Parses every EnvoyFilter of a multi-document YAML stream (other kinds are skipped). Throws
// config::ConfigError "<source>: EnvoyFilter '<name>': <field path>: <problem>".
std::vector<EnvoyFilter> parseEnvoyFilters(std::string_view yaml, const std::string& source);
// A file, or every *.yaml / *.yml / *.json file of a directory (sorted, not recursive). Throws ConfigError.
std::vector<EnvoyFilter> loadEnvoyFilters(const std::string& path);
// Each comma-separated path in turn.
std::vector<EnvoyFilter> loadEnvoyFilterPaths(const std::string& paths);

// Istio's application order: the config root namespace (istio-system) first, then priority, creation time,
// namespace, name. Stable.
void sortForApplication(std::vector<EnvoyFilter>& filters);

}  // namespace skiff::envoy_filter
