#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <google/protobuf/any.pb.h>

#include "envoy/config/bootstrap/v3/bootstrap.pb.h"
#include "skiff/config/config_error.h"

namespace skiff::config {

struct LoadResult {
  envoy::config::bootstrap::v3::Bootstrap bootstrap;
  std::vector<std::string> warnings;  // each starts with the field path
};

// Loads an Envoy v3 bootstrap from YAML or JSON, then validates it: extensions must be
// registered (an HTTP filter with `is_optional: true` is dropped with a warning instead),
// plus the semantic checks Envoy makes at start-up. Throws ConfigError naming the field path.
LoadResult loadBootstrapFile(const std::string& path);
LoadResult loadBootstrapYaml(std::string_view text);

// Validation only, for a bootstrap built some other way. May remove optional HTTP filters.
void validateBootstrap(envoy::config::bootstrap::v3::Bootstrap& bootstrap,
                       std::vector<std::string>& warnings);

// Unpacks an Any into T; a type mismatch is a ConfigError naming `path`.
template <class T>
T unpackTo(const google::protobuf::Any& any, std::string_view path) {
  T out;
  if (!any.UnpackTo(&out)) {
    throw ConfigError(std::string(path) + ": expected type " + T::descriptor()->full_name() + ", got '" +
                      any.type_url() + "'");
  }
  return out;
}

}  // namespace skiff::config
