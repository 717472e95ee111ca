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

// Metatables and the __pairs-aware pairs() (LuaJIT without 5.2 compat ignores __pairs).
void installApi(lua_State* L);

// Objects refer to their direction through a run id: once the run ends they raise an error instead of
// touching freed memory. Runs are per worker thread, like the interpreters.
uint64_t beginRun(Direction* d);
void endRun(uint64_t run);

void pushHandle(lua_State* L, const Direction& d);
void pushBody(lua_State* L, const Direction& d);
void pushChunk(lua_State* L, const Direction& d);
void pushTrailers(lua_State* L, const Direction& d);
// httpCall()'s results: the headers table (`headers` null → Envoy's fake 503) and the body or nil.
void pushHttpResponse(lua_State* L, const http::HeaderMap* headers, const std::string& body, bool duplicates);

}  // namespace skiff::filters::lua
