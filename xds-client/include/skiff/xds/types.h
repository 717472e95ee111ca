#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <google/protobuf/any.pb.h>

namespace skiff::xds {

// v3 type URLs of the resources Skiff subscribes to.
inline constexpr std::string_view kListenerType = "type.googleapis.com/envoy.config.listener.v3.Listener";
inline constexpr std::string_view kRouteType = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
inline constexpr std::string_view kClusterType = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
inline constexpr std::string_view kEndpointType =
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
inline constexpr std::string_view kSecretType =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

// Envoy's request order on (re)connect: clusters before their endpoints, listeners before their routes.
// Unknown types sort after these, by URL.
int typeOrder(std::string_view type_url);

// LDS and CDS are wildcard by nature; the others are always named.
bool isWildcardType(std::string_view type_url);

struct XdsResource {
  std::string name;
  std::string version;  // Delta: the resource's version; SotW: the response's version_info
  google::protobuf::Any resource;
};

// One response, as handed to the subscriber.
struct ConfigUpdate {
  std::string type_url;
  std::vector<XdsResource> resources;
  // Delta: the response's removed_resources. SotW wildcard types: names delivered before and absent now
  // (a SotW LDS/CDS response is the complete set). SotW named types: always empty.
  std::vector<std::string> removed;
  std::string system_version;  // SotW version_info / Delta system_version_info
  bool state_of_the_world = false;
};

}  // namespace skiff::xds
