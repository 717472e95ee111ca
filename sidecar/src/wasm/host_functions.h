// The proxy-wasm and WASI host functions a module may import, as a table the VM binds into its imports.
#pragma once

#include <cstdint>
#include <span>

#include "wasm/types.h"

namespace skiff::wasm {

class Vm;

// Argument i of a host call: i32 arguments arrive as uint32_t, i64 ones as uint64_t.
using HostFn = uint64_t (*)(Vm& vm, const uint64_t* args);

struct HostFunction {
  const char* module;  // "env", or "wasi_snapshot_preview1" (also bound as "wasi_unstable")
  const char* name;
  HostFn fn;
  uint8_t arity;
  uint32_t i64_args;  // bit i set: argument i is an i64
  bool returns;       // false: `() -> ()` style (proc_exit, emscripten_notify_memory_growth)
  // ABI versions that may import it (bit per AbiVersion); 0 = all.
  uint32_t abis;
};

std::span<const HostFunction> hostFunctions();
inline constexpr uint32_t abiBit(AbiVersion v) {
  return 1u << static_cast<uint32_t>(v);
}

}  // namespace skiff::wasm
