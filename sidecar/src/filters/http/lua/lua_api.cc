// Lua bindings of the stream handle and the objects it hands out (headers, buffers); the run-checked object
// model they share with lua_stream_info.cc.
#include "filters/http/lua/lua_api.h"

extern "C" {
#include <lauxlib.h>
#include <lualib.h>
}

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "envoy/config/core/v3/base.pb.h"
#include "filters/http/lua/lua_crypto.h"
#include "filters/http/lua/lua_filter.h"
#include "filters/http/lua/lua_objects.h"
#include "filters/http/lua/lua_proto_value.h"
#include "filters/http/lua/lua_ssl.h"
#include "skiff/common/logging.h"
#include "skiff/router/route_table.h"

namespace skiff::filters::lua {
namespace {

// Metatables live in the registry under light-userdata keys (a pointer lookup; a string key would be
// hashed and interned on every method call). The names are only for error messages.
constexpr const char* kMtNames[kMtCount] = {
    "request handle", "response handle", "header map", "buffer",
    "stream info",    "connection",      "metadata",   "dynamic metadata",
};
char g_mt_keys[kMtCount];  // only their addresses matter

void pushMetatable(lua_State* L, int mt) {
  lua_pushlightuserdata(L, &g_mt_keys[mt]);
  lua_rawget(L, LUA_REGISTRYINDEX);
}

}  // namespace

// What every userdata holds: which run it belongs to and which object of it.
struct Ref {
  uint64_t run;
  uint32_t slot;
  int kind;
  uint64_t seq;
};

namespace {

// Live runs of this worker: a slot table (Ref.slot indexes it; the run id tells a reused slot apart),
// so checking an object costs an index, not a hash lookup.
struct RunSlot {
  uint64_t run = 0;  // 0 = free
  Direction* d = nullptr;
  uint32_t gen = 0;  // bumped by every run in this slot; light objects carry it (see below)
  uint32_t next_free = 0;
};
static_assert(std::is_trivially_copyable_v<RunSlot>);  // the slot array grows with realloc
// Plain thread-locals (no constructor or destructor), so reading them costs no TLS wrapper call on the
// per-method path; SlotOwner frees the array at thread exit.
constexpr uint32_t kNoSlot = UINT32_MAX;
thread_local RunSlot* t_slots = nullptr;
thread_local uint32_t t_slot_count = 0;
thread_local uint32_t t_slot_capacity = 0;
thread_local uint32_t t_free_head = kNoSlot;  // free slots chained through RunSlot::next_free
thread_local uint64_t t_next_run = 1;
thread_local bool t_slot_owner_set = false;
struct SlotOwner {
  ~SlotOwner() {
    std::free(t_slots);
    t_slots = nullptr;
    t_slot_count = t_slot_capacity = 0;
    t_free_head = kNoSlot;
  }
  void use() { used = true; }
  bool used = false;
};
thread_local SlotOwner t_slot_owner;

}  // namespace

void pushRef(lua_State* L, int mt, const Direction& d, int kind, uint64_t seq) {
  auto* r = static_cast<Ref*>(lua_newuserdata(L, sizeof(Ref)));
  *r = Ref{d.run, d.slot, kind, seq};
  pushMetatable(L, mt);
  lua_setmetatable(L, -2);
}

namespace {

static_assert(kMtCount == kApiMetatableCount);
thread_local const void* const* t_active_mts = nullptr;

bool hasMetatable(lua_State* L, int idx, int mt) {
  if (!lua_getmetatable(L, idx)) return false;
  if (t_active_mts != nullptr) {
    const bool same = lua_topointer(L, -1) == t_active_mts[mt];
    lua_pop(L, 1);
    return same;
  }
  pushMetatable(L, mt);
  const bool same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same;
}

// ---- light objects ----
// The stream handles and header maps, objects most scripts touch on every request, are light
// userdata: a token (kind, run slot, the slot's generation) instead of an allocated object, so a run that
// only uses them leaves no garbage for the GC. Lua has one metatable for all light userdata, so its
// __index holds the methods of all kinds and every method checks the kind. respond() (request handle
// only) and downstreamRequestHeaders() (response handle only) are not in that table: a miss falls back
// to a function that hands them out by the direction being run, so the response handle has no respond()
// (a nil-method error, as in Envoy). A token kept past its run fails the generation check as a full
// object fails the run-id check. Generations are 20 bits per slot
// and never wrap: a slot whose generation reaches the limit is retired (never reused), so a kept token
// can never come back to life; a worker may retire all 2^16 light slots (2^36 runs), then runs use full
// objects.
// 3 + 16 + 20 bits: below 2^39, so LuaJIT (GC64) stores them without a light-userdata segment of their own.
enum LightKind : uint64_t {
  kLightInvalid = 0,
  kLightRequestHandle,
  kLightHeaders,
  kLightTrailers,
  kLightRequestHeaders,
  kLightResponseHandle,
};
constexpr int kLightKindBits = 3;
constexpr int kLightSlotBits = 16;
constexpr uint32_t kLightGenMask = (1u << 20) - 1;

// False when the run's slot does not fit a token (more than 65536 runs at once): use a full object.
bool pushLight(lua_State* L, const Direction& d, LightKind kind) {
  if (d.slot >= (1u << kLightSlotBits)) return false;
  const uint64_t token = (uint64_t{t_slots[d.slot].gen} << (kLightKindBits + kLightSlotBits)) |
                         (uint64_t{d.slot} << kLightKindBits) | kind;
  lua_pushlightuserdata(L, reinterpret_cast<void*>(token));
  return true;
}

// The value at `idx` as a token: one API call tells light objects from everything else, since a full
// userdata's block is 8-byte aligned (kind bits 0 = kLightInvalid) and other values give nullptr.
uint64_t tokenAt(lua_State* L, int idx) {
  return reinterpret_cast<uint64_t>(lua_touserdata(L, idx));
}

// The kind of a token (kLightInvalid when the value is no light object).
LightKind lightKind(uint64_t token) {
  const uint64_t kind = token & ((1u << kLightKindBits) - 1);
  return kind > kLightResponseHandle ? kLightInvalid : static_cast<LightKind>(kind);
}

// The direction of a light object's token (its kind already checked), or a Lua error when its run ended.
Direction& lightDirection(lua_State* L, uint64_t token) {
  const auto slot = static_cast<uint32_t>((token >> kLightKindBits) & ((1u << kLightSlotBits) - 1));
  const auto gen = static_cast<uint32_t>(token >> (kLightKindBits + kLightSlotBits));
  if (slot >= t_slot_count || t_slots[slot].run == 0 || t_slots[slot].gen != gen) {
    luaL_error(L, "object used outside of proper scope");
  }
  return *t_slots[slot].d;
}

Direction& liveDirection(lua_State* L, const Ref* r) {
  if (r->slot >= t_slot_count || t_slots[r->slot].run != r->run) {
    luaL_error(L, "object used outside of proper scope");
  }
  return *t_slots[r->slot].d;
}

}  // namespace

Direction& resolve(lua_State* L, int idx, int mt, Ref** out) {
  auto* r = static_cast<Ref*>(lua_touserdata(L, idx));
  if (r == nullptr || !hasMetatable(L, idx, mt)) {
    luaL_error(L, "bad argument #%d (%s expected, got %s; use ':' to call methods)", idx, kMtNames[mt],
               luaL_typename(L, idx));
  }
  if (out != nullptr) *out = r;
  return liveDirection(L, r);
}

namespace {

Direction& resolveHandle(lua_State* L) {
  const uint64_t token = tokenAt(L, 1);
  const LightKind light = lightKind(token);
  if (light == kLightRequestHandle || light == kLightResponseHandle) return lightDirection(L, token);
  auto* r = light == kLightInvalid ? reinterpret_cast<Ref*>(token) : nullptr;
  if (r != nullptr && (hasMetatable(L, 1, kRequestHandleMt) || hasMetatable(L, 1, kResponseHandleMt))) {
    return liveDirection(L, r);
  }
  luaL_error(L, "bad self: expected a stream handle (use ':' to call methods)");
  __builtin_unreachable();
}

// For the methods that yield (and respond()): the handle must belong to the coroutine running this call. A
// handle kept in a global by another stream's (or direction's) script is live but not running: yielding
// here would suspend the caller with nothing to resume it.
Direction& resolveRunningHandle(lua_State* L, const char* method) {
  Direction& d = resolveHandle(L);
  if (d.co != L) luaL_error(L, "%s() called on a handle of a script that is not the one running", method);
  return d;
}

// ---- header map ----

http::HeaderMap& headerMap(lua_State* L, Direction** dir = nullptr, bool for_write = false,
                           int* kind_out = nullptr) {
  Direction* dp = nullptr;
  int kind = kHeaders;
  const uint64_t token = tokenAt(L, 1);
  switch (lightKind(token)) {
    case kLightHeaders:
      dp = &lightDirection(L, token);
      break;
    case kLightTrailers:
      dp = &lightDirection(L, token);
      kind = kTrailers;
      break;
    case kLightRequestHeaders:
      dp = &lightDirection(L, token);
      kind = kRequestHeaders;
      break;
    default: {
      Ref* r = nullptr;
      dp = &resolve(L, 1, kHeadersMt, &r);
      kind = r->kind;
    }
  }
  Direction& d = *dp;
  http::HeaderMap* map = kind == kTrailers ? d.trailers : d.headers;
  if (kind == kRequestHeaders) {
    map = d.filter->requestDirection().headers;
    if (for_write) luaL_error(L, "downstream request headers are read-only");
  }
  if (map == nullptr) luaL_error(L, "object used outside of proper scope");
  if (for_write && kind == kHeaders && d.headers_continued) {
    luaL_error(L, "header map can no longer be modified");
  }
  if (dir != nullptr) *dir = &d;
  if (kind_out != nullptr) *kind_out = kind;
  return *map;
}

// After a change to request header `name` (Lua.clear_route_cache): the route is chosen again, unless the
// filter manager knows the change cannot affect it (see StreamCallbacks::requestHeaderChanged).
void headerChanged(Direction& d, int kind, std::string_view name, uint64_t version_before) {
  if (kind == kHeaders && d.request && d.filter->config().clearRouteCache()) {
    d.callbacks().requestHeaderChanged(name, version_before);
  }
}

std::string lowerName(lua_State* L, int idx) {
  std::string name(checkView(L, idx));
  http::toLowerInPlace(name);
  return name;
}

int headersGet(lua_State* L) {
  const http::HeaderMap& map = headerMap(L);
  const std::string name = lowerName(L, 2);
  std::string joined;
  bool found = false;
  for (const auto& [k, v] : map) {
    if (k != name) continue;
    if (found) joined += ',';
    joined += v;
    found = true;
  }
  if (!found) return lua_pushnil(L), 1;
  lua_pushlstring(L, joined.data(), joined.size());
  return 1;
}

int headersGetAtIndex(lua_State* L) {
  const http::HeaderMap& map = headerMap(L);
  const std::string name = lowerName(L, 2);
  const lua_Integer index = luaL_checkinteger(L, 3);
  lua_Integer i = 0;
  for (const auto& [k, v] : map) {
    if (k != name) continue;
    if (i++ == index) return lua_pushlstring(L, v.data(), v.size()), 1;
  }
  lua_pushnil(L);
  return 1;
}

int headersGetNumValues(lua_State* L) {
  const http::HeaderMap& map = headerMap(L);
  lua_pushinteger(L, static_cast<lua_Integer>(map.count(lowerName(L, 2))));
  return 1;
}

int headersAdd(lua_State* L) {
  Direction* d = nullptr;
  int kind = kHeaders;
  http::HeaderMap& map = headerMap(L, &d, true, &kind);
  const std::string_view name = checkView(L, 2);
  const std::string_view value = checkView(L, 3);
  const uint64_t before = map.version();
  map.add(name, value);
  headerChanged(*d, kind, name, before);
  return 0;
}

int headersReplace(lua_State* L) {
  Direction* d = nullptr;
  int kind = kHeaders;
  http::HeaderMap& map = headerMap(L, &d, true, &kind);
  const std::string_view name = checkView(L, 2);
  const std::string_view value = checkView(L, 3);
  const uint64_t before = map.version();
  map.set(name, value);
  headerChanged(*d, kind, name, before);
  return 0;
}

int headersRemove(lua_State* L) {
  Direction* d = nullptr;
  int kind = kHeaders;
  http::HeaderMap& map = headerMap(L, &d, true, &kind);
  const std::string name = lowerName(L, 2);
  const uint64_t before = map.version();
  map.remove(name);
  headerChanged(*d, kind, name, before);
  return 0;
}

int headersSetReasonPhrase(lua_State* L) {
  Direction* d = nullptr;
  headerMap(L, &d, true);
  if (d->request) return luaL_error(L, "setHttp1ReasonPhrase() is only valid on response headers");
  d->callbacks().streamInfo().http1_reason_phrase = std::string(checkView(L, 2));
  return 0;
}

// Iterator state: upvalue 1 = the header object, upvalue 2 = the next index.
int headersNext(lua_State* L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_replace(L, 1);
  const http::HeaderMap& map = headerMap(L);
  const auto i = static_cast<size_t>(lua_tointeger(L, lua_upvalueindex(2)));
  if (i >= map.size()) return 0;
  lua_pushinteger(L, static_cast<lua_Integer>(i + 1));
  lua_replace(L, lua_upvalueindex(2));
  const auto& [k, v] = map.entries()[i];
  lua_pushlstring(L, k.data(), k.size());
  lua_pushlstring(L, v.data(), v.size());
  return 2;
}

int headersPairs(lua_State* L) {
  headerMap(L);
  lua_pushvalue(L, 1);
  lua_pushinteger(L, 0);
  lua_pushcclosure(L, headersNext, 2);
  return 1;
}

// iterate(fn): calls fn(key, value) per entry until it returns false.
int headersIterate(lua_State* L) {
  luaL_checktype(L, 2, LUA_TFUNCTION);
  for (size_t i = 0;; ++i) {
    const http::HeaderMap& map = headerMap(L);
    if (i >= map.size()) break;
    std::string k = map.entries()[i].first, v = map.entries()[i].second;
    lua_pushvalue(L, 2);
    lua_pushlstring(L, k.data(), k.size());
    lua_pushlstring(L, v.data(), v.size());
    lua_call(L, 2, 1);
    const bool stop = lua_isboolean(L, -1) && !lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (stop) break;
  }
  return 0;
}

// ---- buffer ----

http::Buffer& buffer(lua_State* L) {
  Ref* r = nullptr;
  Direction& d = resolve(L, 1, kBufferMt, &r);
  if (r->kind == kChunk) {
    if (d.chunk == nullptr || d.chunk_seq != r->seq) luaL_error(L, "object used outside of proper scope");
    return *d.chunk;
  }
  return *d.bodyBuffer();
}

int bufferLength(lua_State* L) {
  lua_pushinteger(L, static_cast<lua_Integer>(buffer(L).size()));
  return 1;
}

int bufferGetBytes(lua_State* L) {
  const http::Buffer& b = buffer(L);
  const lua_Integer index = luaL_checkinteger(L, 2);
  const lua_Integer length = luaL_checkinteger(L, 3);
  if (index < 0 || length < 0 || static_cast<uint64_t>(index + length) > b.size()) {
    return luaL_error(L, "index/length must be >= 0 and (index + length) must be <= buffer size");
  }
  lua_pushlstring(L, b.data() + index, static_cast<size_t>(length));
  return 1;
}

int bufferSetBytes(lua_State* L) {
  http::Buffer& b = buffer(L);
  const std::string_view s = checkView(L, 2);
  b.assign(s.data(), s.size());
  // A whole body replaced before the headers went on keeps content-length truthful (as Envoy does).
  Ref* r = nullptr;
  Direction& d = resolve(L, 1, kBufferMt, &r);
  if (r->kind == kBody && !d.headers_continued && d.headers != nullptr &&
      d.headers->get(http::headers::kContentLength) != nullptr) {
    d.headers->set(http::headers::kContentLength, std::to_string(b.size()));
  }
  return 0;
}

// ---- handle ----

int handleHeaders(lua_State* L) {
  Direction& d = resolveHandle(L);
  if (!pushLight(L, d, kLightHeaders)) pushRef(L, kHeadersMt, d, kHeaders);
  return 1;
}

int handleBody(lua_State* L) {
  Direction& d = resolveRunningHandle(L, "body");
  const bool always_wrap = lua_toboolean(L, 2);
  if (d.body_ready) return pushBody(L, d), 1;
  if (d.end_seen) {
    if (d.had_data && !d.headers_continued) {
      // Iteration was stopped (e.g. by httpCall) while the body arrived: the filter manager holds it all.
      d.body_ready = true;
      d.body_in_held = true;
      return pushBody(L, d), 1;
    }
    if (!always_wrap) return lua_pushnil(L), 1;
    d.body_ready = true;
    return pushBody(L, d), 1;
  }
  if (d.headers_continued) return luaL_error(L, "body() cannot be called after the headers were passed on");
  d.wait = Direction::Wait::kBody;
  return lua_yield(L, 0);
}

int chunkIterator(lua_State* L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_replace(L, 1);
  Direction& d = resolveRunningHandle(L, "bodyChunks");
  if (d.end_seen) return lua_pushnil(L), 1;
  d.wait = Direction::Wait::kChunk;
  return lua_yield(L, 0);
}

int handleBodyChunks(lua_State* L) {
  resolveRunningHandle(L, "bodyChunks");
  lua_pushvalue(L, 1);
  lua_pushcclosure(L, chunkIterator, 1);
  return 1;
}

int handleTrailers(lua_State* L) {
  Direction& d = resolveRunningHandle(L, "trailers");
  if (d.trailers != nullptr) return pushTrailers(L, d), 1;
  if (d.end_seen) return lua_pushnil(L), 1;
  d.wait = Direction::Wait::kTrailers;
  return lua_yield(L, 0);
}

// Reads a {name = value | {values...}} table into `out`.
void readHeaderTable(lua_State* L, int idx, http::HeaderMap& out) {
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "header names must be strings");
    const std::string name(checkView(L, -2));
    if (lua_istable(L, -1)) {
      const int n = static_cast<int>(lua_objlen(L, -1));
      for (int i = 1; i <= n; ++i) {
        lua_rawgeti(L, -1, i);
        out.add(name, checkView(L, -1));
        lua_pop(L, 1);
      }
    } else {
      out.add(name, checkView(L, -1));
    }
    lua_pop(L, 1);
  }
}

int handleRespond(lua_State* L) {
  Direction& d = resolveRunningHandle(L, "respond");
  // Reachable with a response handle only through a function kept from a request run.
  if (!d.request) return luaL_error(L, "respond() is only available on the request handle");
  if (d.headers_continued)
    return luaL_error(L, "respond() cannot be called after headers have been continued");
  auto headers = std::make_unique<http::HeaderMap>();
  readHeaderTable(L, 2, *headers);
  const std::string* status = headers->get(http::headers::kStatus);
  if (status == nullptr) return luaL_error(L, ":status must be set in the respond() headers");
  const int code = std::atoi(status->c_str());
  if (code < 200 || code >= 600) return luaL_error(L, ":status must be between 200 and 599");
  d.reply_headers = std::move(headers);
  d.reply_body = lua_isnoneornil(L, 3) ? std::string() : std::string(checkView(L, 3));
  d.responded = true;
  return lua_yield(L, 0);
}

template <spdlog::level::level_enum Level>
int handleLog(lua_State* L) {
  resolveHandle(L);
  const std::string_view msg = checkView(L, 2);
  auto& logger = skiff::log::get(skiff::log::Component::kLua);
  if (logger.should_log(Level)) logger.log(Level, "script log: {}", msg);
  return 0;
}

int handleStreamInfo(lua_State* L) {
  Direction& d = resolveHandle(L);
  pushRef(L, kStreamInfoMt, d, kOther);
  return 1;
}

int handleConnection(lua_State* L) {
  Direction& d = resolveHandle(L);
  pushRef(L, kConnectionMt, d, kOther);
  return 1;
}

int handleMetadata(lua_State* L) {
  Direction& d = resolveHandle(L);
  pushRef(L, kMetadataMt, d, kOther);
  return 1;
}

int handleBase64Escape(lua_State* L) {
  resolveHandle(L);
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const std::string_view in = checkView(L, 2);
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += kAlphabet[(v >> s) & 63];
  }
  if (i < in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    if (i + 1 < in.size()) v |= uint8_t(in[i + 1]) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < in.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return pushString(L, out);
}

// Milliseconds since the epoch, or microseconds for EnvoyTimestampResolution.MICROSECOND.
int64_t now(lua_State* L) {
  const bool micro = lua_isstring(L, 2) && std::string_view(lua_tostring(L, 2)) == "microsecond";
  const auto since = std::chrono::system_clock::now().time_since_epoch();
  return micro ? std::chrono::duration_cast<std::chrono::microseconds>(since).count()
               : std::chrono::duration_cast<std::chrono::milliseconds>(since).count();
}

int handleTimestamp(lua_State* L) {
  resolveHandle(L);
  lua_pushnumber(L, static_cast<lua_Number>(now(L)));
  return 1;
}

int handleTimestampString(lua_State* L) {
  resolveHandle(L);
  return pushString(L, std::to_string(now(L)));
}

// ---- crypto (lua_crypto.cc) ----

int handleImportPublicKey(lua_State* L) {
  resolveHandle(L);
  return importPublicKey(L);
}

int handleVerifySignature(lua_State* L) {
  resolveHandle(L);
  return verifySignature(L);
}

// httpCall(cluster, headers, body, timeout_ms[, asynchronous]) or httpCall(cluster, headers, body, options).
int handleHttpCall(lua_State* L) {
  Direction& d = resolveRunningHandle(L, "httpCall");
  const std::string cluster(checkView(L, 2));
  http::HeaderMap headers;
  readHeaderTable(L, 3, headers);
  if (headers.get(http::headers::kPath) == nullptr || headers.get(http::headers::kMethod) == nullptr ||
      headers.get(http::headers::kAuthority) == nullptr) {
    return luaL_error(L, "http call headers must include ':path', ':method', and ':authority'");
  }
  std::string body;
  if (!lua_isnoneornil(L, 4)) body = std::string(checkView(L, 4));
  lua_Integer timeout_ms = 0;
  bool asynchronous = false;
  bool duplicates = false;
  if (lua_istable(L, 5)) {
    lua_getfield(L, 5, "timeout_ms");
    timeout_ms = lua_isnil(L, -1) ? 0 : luaL_checkinteger(L, -1);
    lua_getfield(L, 5, "asynchronous");
    asynchronous = lua_toboolean(L, -1);
    lua_getfield(L, 5, "return_duplicate_headers");
    duplicates = lua_toboolean(L, -1);
    lua_pop(L, 3);
  } else {
    timeout_ms = luaL_checkinteger(L, 5);
    asynchronous = lua_toboolean(L, 6);
  }
  if (timeout_ms < 0) return luaL_error(L, "http call timeout must be >= 0");
  switch (d.filter->startHttpCall(d, cluster, std::move(headers), std::move(body),
                                  std::chrono::milliseconds(timeout_ms), asynchronous)) {
    case LuaFilter::CallStart::kUnknownCluster:
      return luaL_error(L, "http call cluster invalid. Must be configured");
    case LuaFilter::CallStart::kAsync:
      return 0;
    case LuaFilter::CallStart::kNoHost:
      pushHttpResponse(L, nullptr, "", false);
      return 2;
    case LuaFilter::CallStart::kStarted:
      break;
  }
  d.return_duplicate_headers = duplicates;
  d.wait = Direction::Wait::kHttpCall;
  return lua_yield(L, 0);
}

int handleClearRouteCache(lua_State* L) {
  resolveHandle(L).callbacks().clearRouteCache();
  return 0;
}

int handleDownstreamRequestHeaders(lua_State* L) {
  Direction& d = resolveRunningHandle(L, "downstreamRequestHeaders");
  // Reachable with a request handle only through a function kept from a response run.
  if (d.request) return luaL_error(L, "downstreamRequestHeaders() is only available on the response handle");
  // A read-only view of the stream's request headers, valid for this (response) run.
  if (d.filter->requestDirection().headers == nullptr) return lua_pushnil(L), 1;
  if (!pushLight(L, d, kLightRequestHeaders)) pushRef(L, kHeadersMt, d, kRequestHeaders);
  return 1;
}

// __index of the light objects' method table, for the keys it lacks: respond() while a request script
// runs, downstreamRequestHeaders() while a response script runs, else nil. (The object itself is not
// passed to a table's __index, so the running direction decides.)
int lightMethodFallback(lua_State* L) {
  const Direction* running = runningDirection();
  if (running != nullptr && lua_type(L, 2) == LUA_TSTRING) {
    const std::string_view key = lua_tostring(L, 2);
    if (running->request && key == "respond") return lua_pushvalue(L, lua_upvalueindex(1)), 1;
    if (!running->request && key == "downstreamRequestHeaders") {
      return lua_pushvalue(L, lua_upvalueindex(2)), 1;
    }
  }
  lua_pushnil(L);
  return 1;
}

}  // namespace

void newMetatable(lua_State* L, int mt, const luaL_Reg* methods, lua_CFunction pairs) {
  lua_newtable(L);
  lua_pushlightuserdata(L, &g_mt_keys[mt]);
  lua_pushvalue(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  luaL_register(L, nullptr, methods);
  lua_setfield(L, -2, "__index");
  if (pairs != nullptr) {
    lua_pushcfunction(L, pairs);
    lua_setfield(L, -2, "__pairs");
  }
  lua_pop(L, 1);
}

namespace {

// LuaJIT is built without LUAJIT_ENABLE_LUA52COMPAT here, so pairs() must honour __pairs itself.
constexpr const char* kPrelude = R"lua(
local raw_pairs = pairs
pairs = function(t)
  local mt = getmetatable(t)
  if type(mt) == "table" and mt.__pairs then return mt.__pairs(t) end
  return raw_pairs(t)
end
EnvoyTimestampResolution = { MILLISECOND = "millisecond", MICROSECOND = "microsecond" }
)lua";

}  // namespace

const void* const* setActiveMetatables(const void* const* metatables) {
  const void* const* previous = t_active_mts;
  t_active_mts = metatables;
  return previous;
}

void installApi(lua_State* L, const void* metatables[kApiMetatableCount]) {
  const luaL_Reg common[] = {
      {"headers", handleHeaders},
      {"body", handleBody},
      {"bodyChunks", handleBodyChunks},
      {"trailers", handleTrailers},
      {"logTrace", handleLog<spdlog::level::trace>},
      {"logDebug", handleLog<spdlog::level::debug>},
      {"logInfo", handleLog<spdlog::level::info>},
      {"logWarn", handleLog<spdlog::level::warn>},
      {"logErr", handleLog<spdlog::level::err>},
      {"logCritical", handleLog<spdlog::level::critical>},
      {"streamInfo", handleStreamInfo},
      {"connection", handleConnection},
      {"metadata", handleMetadata},
      {"base64Escape", handleBase64Escape},
      {"timestamp", handleTimestamp},
      {"timestampString", handleTimestampString},
      {"clearRouteCache", handleClearRouteCache},
      {"httpCall", handleHttpCall},
      {"importPublicKey", handleImportPublicKey},
      {"verifySignature", handleVerifySignature},
      {nullptr, nullptr},
  };
  newMetatable(L, kRequestHandleMt, common);
  pushMetatable(L, kRequestHandleMt);
  lua_getfield(L, -1, "__index");
  lua_pushcfunction(L, handleRespond);
  lua_setfield(L, -2, "respond");
  lua_pop(L, 2);
  newMetatable(L, kResponseHandleMt, common);
  pushMetatable(L, kResponseHandleMt);
  lua_getfield(L, -1, "__index");
  lua_pushcfunction(L, handleDownstreamRequestHeaders);
  lua_setfield(L, -2, "downstreamRequestHeaders");
  lua_pop(L, 2);

  const luaL_Reg headers[] = {
      {"get", headersGet},
      {"getAtIndex", headersGetAtIndex},
      {"getNumValues", headersGetNumValues},
      {"add", headersAdd},
      {"replace", headersReplace},
      {"remove", headersRemove},
      {"setHttp1ReasonPhrase", headersSetReasonPhrase},
      {"iterate", headersIterate},
      {nullptr, nullptr},
  };
  newMetatable(L, kHeadersMt, headers, headersPairs);
  // The light-userdata metatable (see pushLight): the handles' common methods and the header map's (a
  // method called on the other kind raises a type error); respond() and downstreamRequestHeaders() come
  // from lightMethodFallback, by the direction being run.
  lua_newtable(L);
  lua_newtable(L);
  luaL_register(L, nullptr, common);
  luaL_register(L, nullptr, headers);
  lua_newtable(L);
  lua_pushcfunction(L, handleRespond);
  lua_pushcfunction(L, handleDownstreamRequestHeaders);
  lua_pushcclosure(L, lightMethodFallback, 2);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, headersPairs);
  lua_setfield(L, -2, "__pairs");
  lua_pushlightuserdata(L, nullptr);
  lua_insert(L, -2);
  lua_setmetatable(L, -2);
  lua_pop(L, 1);
  const luaL_Reg buffer[] = {
      {"length", bufferLength},
      {"getBytes", bufferGetBytes},
      {"setBytes", bufferSetBytes},
      {nullptr, nullptr},
  };
  newMetatable(L, kBufferMt, buffer);
  installStreamInfoApi(L);

  installCrypto(L);

  for (int mt = 0; mt < kMtCount; ++mt) {
    pushMetatable(L, mt);
    metatables[mt] = lua_topointer(L, -1);
    lua_pop(L, 1);
  }

  if (luaL_dostring(L, kPrelude) != 0) lua_pop(L, 1);
}

void beginRun(Direction& d) {
  d.run = t_next_run++;
  if (t_free_head != kNoSlot) {
    d.slot = t_free_head;
    t_free_head = t_slots[d.slot].next_free;
  } else {
    if (t_slot_count == t_slot_capacity) {
      if (!t_slot_owner_set) {
        t_slot_owner_set = true;
        t_slot_owner.use();  // registers the thread-exit cleanup
      }
      const uint32_t capacity = t_slot_capacity == 0 ? 16 : t_slot_capacity * 2;
      auto* grown = static_cast<RunSlot*>(std::realloc(t_slots, capacity * sizeof(RunSlot)));
      if (grown == nullptr) throw std::bad_alloc();
      t_slots = grown;
      t_slot_capacity = capacity;
    }
    d.slot = t_slot_count++;
    t_slots[d.slot] = RunSlot{};
  }
  RunSlot& s = t_slots[d.slot];
  s.run = d.run;
  s.d = &d;
  // Light slots below the limit (endRun retires them at it); slots past 2^16 make no tokens and may wrap.
  s.gen = (s.gen + 1) & kLightGenMask;
  if (s.gen == 0) s.gen = 1;
}

void endRun(Direction& d) {
  if (d.slot >= t_slot_count || t_slots[d.slot].run != d.run) return;
  t_slots[d.slot].run = 0;  // the generation stays: the next run in this slot moves it on
  t_slots[d.slot].d = nullptr;
  // A light slot whose generation would wrap is retired: a token kept from an old run must stay dead.
  if (d.slot < (1u << kLightSlotBits) && t_slots[d.slot].gen >= kLightGenMask) return;
  t_slots[d.slot].next_free = t_free_head;
  t_free_head = d.slot;
}

void setLightGenerationsForTest(uint32_t gen) {
  for (uint32_t i = 0; i < t_slot_count; ++i) t_slots[i].gen = gen & kLightGenMask;
}
uint32_t lightGenerationLimitForTest() {
  return kLightGenMask;
}

void pushHandle(lua_State* L, const Direction& d) {
  if (pushLight(L, d, d.request ? kLightRequestHandle : kLightResponseHandle)) return;
  pushRef(L, d.request ? kRequestHandleMt : kResponseHandleMt, d, kOther);
}
void pushBody(lua_State* L, const Direction& d) {
  pushRef(L, kBufferMt, d, kBody);
}
void pushChunk(lua_State* L, const Direction& d) {
  pushRef(L, kBufferMt, d, kChunk, d.chunk_seq);
}
void pushTrailers(lua_State* L, const Direction& d) {
  if (pushLight(L, d, kLightTrailers)) return;
  pushRef(L, kHeadersMt, d, kTrailers);
}

void pushHttpResponse(lua_State* L, const http::HeaderMap* headers, const std::string& body,
                      bool duplicates) {
  lua_newtable(L);
  if (headers == nullptr) {
    // Envoy's answer to any transport failure (reset, timeout, no host).
    lua_pushstring(L, "503");
    lua_setfield(L, -2, ":status");
    lua_pushstring(L, "upstream failure");
    return;
  }
  for (const auto& [name, value] : *headers) {
    const size_t count = duplicates ? headers->count(name) : 1;
    if (count <= 1) {
      lua_pushlstring(L, value.data(), value.size());
      lua_setfield(L, -2, name.c_str());  // the last value wins
      continue;
    }
    lua_getfield(L, -1, name.c_str());
    if (!lua_istable(L, -1)) {
      lua_pop(L, 1);
      lua_newtable(L);
      lua_pushvalue(L, -1);
      lua_setfield(L, -3, name.c_str());
    }
    lua_pushlstring(L, value.data(), value.size());
    lua_rawseti(L, -2, static_cast<int>(lua_objlen(L, -2)) + 1);
    lua_pop(L, 1);
  }
  if (body.empty()) {
    lua_pushnil(L);
  } else {
    lua_pushlstring(L, body.data(), body.size());
  }
}

}  // namespace skiff::filters::lua
