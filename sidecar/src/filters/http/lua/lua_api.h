// The Lua-visible stream API: handle, header map, buffer and stream-info objects (Envoy's method names).
#pragma once

extern "C" {
#include <lua.h>
}

#include <cstdint>
#include <string>

#include "skiff/http/header_map.h"

namespace skiff::filters::lua {

struct Direction;

// Metatables and the __pairs-aware pairs() (LuaJIT without 5.2 compat ignores __pairs). `metatables`
// receives the addresses of the object metatables (stable: LuaJIT's GC does not move tables).
inline constexpr int kApiMetatableCount = 8;
void installApi(lua_State* L, const void* metatables[kApiMetatableCount]);

// The metatable addresses of the interpreter whose coroutine this thread is running (nullptr: look them up
// in the registry). Type checks on every method call compare against them instead of a registry lookup.
// Returns the previous value, to restore after a nested run.
const void* const* setActiveMetatables(const void* const* metatables);

// Objects refer to their direction through a run id: once the run ends they raise an error instead of
// touching freed memory. Runs are per worker thread, like the interpreters.
// Sets d.run / d.slot; endRun() invalidates every object of that run.
void beginRun(Direction& d);
void endRun(Direction& d);
// Test hooks: set every run slot's light-token generation of this thread (simulating a long-lived
// worker), and the generation at which a slot is retired.
void setLightGenerationsForTest(uint32_t gen);
uint32_t lightGenerationLimitForTest();

void pushHandle(lua_State* L, const Direction& d);
void pushBody(lua_State* L, const Direction& d);
void pushChunk(lua_State* L, const Direction& d);
void pushTrailers(lua_State* L, const Direction& d);
// httpCall()'s results: the headers table (`headers` null → Envoy's fake 503) and the body or nil.
void pushHttpResponse(lua_State* L, const http::HeaderMap* headers, const std::string& body, bool duplicates);

}  // namespace skiff::filters::lua
