// Helpers for the EnvoyFilter tests: YAML -> messages, one-manifest appliers, fixture paths.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

#include "envoy_filter/internal.h"
#include "skiff/envoy_filter/applier.h"
#include "skiff/envoy_filter/envoy_filter.h"

namespace skiff::envoy_filter::testing {

template <class T>
T fromYaml(const std::string& yaml) {
  T out;
  internal::yamlToMessage(YAML::Load(yaml), out, "test");
  return out;
}

inline Proxy sidecar(std::map<std::string, std::string> labels = {}) {
  Proxy p;
  p.labels = std::move(labels);
  p.namespace_ = "default";
  p.istio_version = "1.20.1";
  return p;
}

inline Applier applierFor(const std::string& manifest, Proxy proxy = sidecar()) {
  return Applier(parseEnvoyFilters(manifest, "test.yaml"), std::move(proxy));
}

// ../shared relative to the repository, or "" when absent.
inline std::string sharedDir() {
  const char* src = std::getenv("SKIFF_SOURCE_DIR");
  std::filesystem::path p = std::filesystem::path(src ? src : SKIFF_SOURCE_DIR) / ".." / "shared";
  return std::filesystem::is_directory(p) ? p.string() : "";
}

}  // namespace skiff::envoy_filter::testing
