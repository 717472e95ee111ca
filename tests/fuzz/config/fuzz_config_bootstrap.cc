// libFuzzer target: bootstrap loading (YAML/JSON -> protobuf -> validation). Bad config must end in a
// ConfigError naming the field, never a crash, a hang or another exception type.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "skiff/config/bootstrap_loader.h"
#include "skiff/config/config_error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    skiff::config::loadBootstrapYaml(text);
  } catch (const skiff::config::ConfigError&) {
    // the expected outcome for most inputs
  }
  return 0;
}
