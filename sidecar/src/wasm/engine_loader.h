// Finds and loads the V8 engine module (libskiff_wasm_v8.so) the first time a Wasm VM is needed, so a proxy
// without Wasm filters never maps libnode.
#pragma once

#include <string>
#include <vector>

#include "wasm/engine.h"

namespace skiff::wasm {

inline constexpr const char* kEngineModuleName = "libskiff_wasm_v8.so";
// Overrides where the module is looked for (a path to the .so).
inline constexpr const char* kEngineEnvVar = "SKIFF_WASM_ENGINE";

// Where the module is looked for, in order: $SKIFF_WASM_ENGINE alone when set; otherwise
// <dir of /proc/self/exe>/../lib/ then <dir of /proc/self/exe>/.
std::vector<std::string> engineCandidates();

// The process's engine, loaded (dlopen RTLD_NOW|RTLD_LOCAL) on the first call; later calls return the same
// engine (a failed load is tried again). nullptr with `error` naming config.vm_config.runtime, the paths
// tried and dlerror() when it cannot be loaded. Thread-safe.
engine::Engine* loadEngine(std::string* error);

// Whether the module has been loaded into this process (tests).
bool engineLoaded();

}  // namespace skiff::wasm
