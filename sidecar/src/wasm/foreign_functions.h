// proxy_call_foreign_function: the foreign functions Envoy registers that make sense here (compress,
// uncompress, declare_property, set_envoy_filter_state, clear_route_cache), with Envoy's argument formats.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "wasm/types.h"

namespace skiff::wasm {

class PluginVm;

// What declare_property said about a property (Envoy's CelStatePrototype).
struct DeclaredProperty {
  bool readonly = false;
  uint32_t type = 0;  // WasmType: 0 bytes, 1 string, 2 flatbuffers, 3 protobuf
  std::string schema;
  uint32_t span = 0;  // LifeSpan: 0 filter chain, 1 downstream request, 2 downstream connection
};

// Runs foreign function `name` on `args` for `plugin` (its current stream, when it has one). On kOk
// `*result` holds the bytes to hand back (possibly none). kNotFound for an unknown name; kBadArgument for
// arguments that do not parse; kSerializationFailure when zlib refuses the data.
WasmResult callForeignFunction(PluginVm& plugin, std::string_view name, std::string_view args,
                               std::string* result);

}  // namespace skiff::wasm
