#pragma once

#include <stdexcept>
#include <string>

namespace skiff::config {

// A configuration the proxy cannot accept. The message starts with the field path
// (e.g. "static_resources.clusters[0].hosts: ...") so operators can find the culprit.
class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace skiff::config
