// Loading a bootstrap file: read, parse against the v3 Bootstrap descriptor, validate.
#include "skiff/config/bootstrap_loader.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "skiff/api/api_types.h"
#include "skiff/config/yaml_to_proto.h"

namespace skiff::config {

LoadResult loadBootstrapYaml(std::string_view text) {
  api::linkAllApiTypes();  // every Any payload type must be in the descriptor pool
  LoadResult result;
  loadMessageYaml(text, result.bootstrap, result.warnings);
  validateBootstrap(result.bootstrap, result.warnings);
  return result;
}

LoadResult loadBootstrapFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(fmt::format("{}: cannot read config file: {}", path, std::strerror(errno)));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return loadBootstrapYaml(buffer.str());
}

}  // namespace skiff::config
