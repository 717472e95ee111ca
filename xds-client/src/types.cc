// Type URL helpers.

#include "skiff/xds/types.h"

namespace skiff::xds {

int typeOrder(std::string_view type_url) {
  if (type_url == kClusterType) return 0;
  if (type_url == kEndpointType) return 1;
  if (type_url == kListenerType) return 2;
  if (type_url == kRouteType) return 3;
  if (type_url == kSecretType) return 4;
  return 5;
}

bool isWildcardType(std::string_view type_url) {
  return type_url == kListenerType || type_url == kClusterType;
}

}  // namespace skiff::xds
