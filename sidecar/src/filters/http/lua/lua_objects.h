// Internal to the Lua filter: the object model lua_api.cc owns (metatable ids, run-checked object lookup,
// metatable creation) for the files that bind further objects (lua_stream_info.cc).
#pragma once

extern "C" {
#include <lauxlib.h>
#include <lua.h>
}

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace skiff::filters::lua {

struct Direction;
struct Ref;

enum Mt : int {
  kRequestHandleMt,
  kResponseHandleMt,
  kHeadersMt,
  kBufferMt,
  kStreamInfoMt,
  kConnectionMt,
  kMetadataMt,
  kDynamicMetadataMt,
  kMtCount,
};

// What an object stands for within its run (Ref::kind).
enum Kind : int { kHeaders = 0, kTrailers = 1, kBody = 2, kChunk = 3, kOther = 4, kRequestHeaders = 5 };

// Pushes a new object of metatable `mt` bound to `d`'s current run.
void pushRef(lua_State* L, int mt, const Direction& d, int kind, uint64_t seq = 0);

// The direction behind the object at `idx` (an object with metatable `mt`), or a Lua error when it is
// another kind of value or its run ended. `out`, when given, receives the object.
Direction& resolve(lua_State* L, int idx, int mt, Ref** out = nullptr);

// Registers metatable `mt` with `methods` as its __index (and `pairs` as __pairs).
void newMetatable(lua_State* L, int mt, const luaL_Reg* methods, lua_CFunction pairs = nullptr);

// The stream info, connection, route metadata and dynamic metadata metatables (lua_stream_info.cc).
void installStreamInfoApi(lua_State* L);

inline int pushString(lua_State* L, std::string_view s) {
  lua_pushlstring(L, s.data(), s.size());
  return 1;
}

inline std::string_view checkView(lua_State* L, int idx) {
  size_t n = 0;
  const char* s = luaL_checklstring(L, idx, &n);
  return {s, n};
}

}  // namespace skiff::filters::lua
