// Process-wide shared data for proxy_get/set_shared_data: vm_id → key → (value, cas), visible to every
// worker's VMs. A mutex guards it; plugins reach it only when they call the two host functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "wasm/types.h"

namespace skiff::wasm {

class SharedData {
 public:
  static SharedData& instance();
  // (value, cas) or nullopt when the key is absent.
  std::optional<std::pair<std::string, uint32_t>> get(std::string_view vm_id, std::string_view key);
  // cas 0 writes unconditionally; otherwise an existing key whose cas differs gives CasMismatch.
  WasmResult set(std::string_view vm_id, std::string_view key, std::string_view value, uint32_t cas);
  void clearForTest();
};

}  // namespace skiff::wasm
