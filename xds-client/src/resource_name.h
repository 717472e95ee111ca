#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace skiff::xds {

// The name of a serialized xDS resource without decoding it: every resource type Skiff subscribes to
// (Listener, RouteConfiguration, Cluster, ClusterLoadAssignment, Secret, ...) keeps its name in field 1.
// nullopt when field 1 is absent or the bytes before it are malformed.
std::optional<std::string> resourceNameOf(std::string_view bytes);

}  // namespace skiff::xds
