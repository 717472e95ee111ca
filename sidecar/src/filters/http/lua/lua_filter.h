// Envoy's Lua HTTP filter (envoy.filters.http.lua) on LuaJIT: scripts run per stream as coroutines on a
// per-worker interpreter, so body()/bodyChunks()/trailers() yield instead of blocking the worker.
//
// Two config types build it, both under the name envoy.filters.http.lua:
// - envoy.extensions.filters.http.lua.v3.Lua: Envoy's; a script error is logged, counted, and the stream
//   continues (fail open); the instruction budget is kDefaultInstructionBudget.
// - skiff.extensions.filters.http.lua.v1.Lua (xds-client/proto/skiff/...): wraps Envoy's message and adds
//   fail_closed (a script error answers 500 "lua_runtime_error" / "lua_instruction_budget_exceeded" while
//   the direction's headers are still held, else resets the stream) and instruction_budget.
#pragma once

extern "C" {
#include <lua.h>
}

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "filters/http/lua/lua_api.h"
#include "skiff/filters/http_filter_registry.h"
#include "skiff/http/filter.h"
#include "skiff/stats/stats.h"

namespace skiff::filters::lua {

class LuaHttpCall;

inline constexpr std::string_view kFilterName = "envoy.filters.http.lua";

// One script loaded into one interpreter (one per worker thread per script).
class ScriptState {
 public:
  // Loads and runs `code` (defines the globals). Throws std::invalid_argument naming `name` and the line.
  ScriptState(const std::string& name, const std::string& code);
  ~ScriptState();
  ScriptState(const ScriptState&) = delete;
  ScriptState& operator=(const ScriptState&) = delete;

  lua_State* lua() const { return L_; }
  const std::string& name() const { return name_; }
  int onRequest() const { return on_request_; }  // registry refs, LUA_NOREF when the script lacks one
  int onResponse() const { return on_response_; }

  // Coroutines are reused: a thread whose function returned normally is as good as a new one, and
  // creating one per stream (a thread object and its stack, then GC work) was most of the per-request
  // Lua cost. `ref` anchors the thread in the registry.
  struct Coroutine {
    lua_State* co = nullptr;
    int ref = -2;  // LUA_NOREF
  };
  Coroutine acquire();
  // `reusable`: the coroutine finished normally (not yielded, not failed).
  void release(Coroutine c, bool reusable);

  const void* const* metatables() const { return metatables_; }

  // Heap bytes last added to the memory gauge by this interpreter, and runs since then.
  int64_t reported_bytes = 0;
  uint32_t runs_since_report = 0;

 private:
  lua_State* L_ = nullptr;
  std::string name_;
  int on_request_;
  int on_response_;
  std::vector<Coroutine> idle_;
  const void* metatables_[kApiMetatableCount] = {};
};

struct LuaStats {
  stats::Counter errors;
  stats::Counter executions;
  stats::Counter budget_exceeded;  // runs stopped by the instruction budget (also counted in errors)
  stats::Gauge memory_bytes;       // heap of this config's interpreters, summed over workers
};

// VM instructions one callback may run before it is stopped (counted by a hook every 1000 instructions;
// the JIT is off because LuaJIT never runs hooks inside compiled traces). Envoy has no such limit; it keeps
// a runaway script from owning the worker. The hook yields rather than raising, so pcall cannot catch it.
inline constexpr uint64_t kDefaultInstructionBudget = 100'000'000;

// The validated filter config, shared by all workers; interpreters are created lazily per worker.
class LuaConfig : public http::FilterFactory, public std::enable_shared_from_this<LuaConfig> {
 public:
  // `sources`: script name → code; "" is the default script (inline_code / default_source_code).
  LuaConfig(std::map<std::string, std::string> sources, LuaStats stats,
            uint64_t instruction_budget = kDefaultInstructionBudget);
  ~LuaConfig() override;

  void createFilters(http::FilterChainBuilder& builder) const override;

  // This thread's interpreter for script `name` (nullptr when there is no such script). A per-route
  // inline script is keyed by its code and compiled on first use (nullptr and an error log if it fails).
  ScriptState* script(const std::string& name) const;
  ScriptState* inlineScript(const std::string& code) const;
  const LuaStats& stats() const { return stats_; }
  uint64_t instructionBudget() const { return instruction_budget_; }
  // Lua.clear_route_cache (default true): request header edits make the route be chosen again.
  bool clearRouteCache() const { return clear_route_cache_; }
  void setClearRouteCache(bool clear) { clear_route_cache_ = clear; }
  // skiff.extensions.filters.http.lua.v1.Lua.fail_closed: a script error answers 500 / resets the stream.
  bool failClosed() const { return fail_closed_; }
  void setFailClosed(bool fail_closed) { fail_closed_ = fail_closed; }
  // The HCM's name for this filter: route metadata and typed_per_filter_config are looked up under it
  // first, then under kFilterName (Envoy's filterConfigName() lookup).
  const std::string& filterName() const { return filter_name_; }
  void setFilterName(std::string name) { filter_name_ = std::move(name); }
  // Brings memory_bytes up to date with `state`'s heap: on its first run, then every kMemoryReportEvery
  // runs (reading the heap size is cheap; the point is not touching the shared gauge per request).
  void reportMemory(ScriptState& state) const;
  static constexpr uint32_t kMemoryReportEvery = 64;

 private:
  using WorkerScripts = std::unordered_map<std::string, std::unique_ptr<ScriptState>>;
  WorkerScripts& workerScripts() const;

  std::map<std::string, std::string> sources_;
  LuaStats stats_;
  const uint64_t instruction_budget_;
  const uint64_t
      id_;  // unique per config, so a thread-local cache never mistakes a newer config for this one
  bool clear_route_cache_ = true;
  bool fail_closed_ = false;
  std::string filter_name_ = std::string(kFilterName);
  mutable std::mutex mu_;
  mutable std::unordered_map<std::thread::id, std::unique_ptr<WorkerScripts>> workers_;
};

// Builds the factory from an envoy.extensions.filters.http.lua.v3.Lua Any.
http::FilterFactorySharedPtr createLuaFilterFactory(const google::protobuf::Any& config,
                                                    const FactoryContext& context);
void registerLuaFilter();

class LuaFilter;
struct Direction;

// The direction whose coroutine this thread is running (innermost), or nullptr.
const Direction* runningDirection();

// One direction of one stream: its coroutine and what the script may touch.
struct Direction {
  enum class Wait { kNone, kBody, kChunk, kTrailers, kHttpCall };

  LuaFilter* filter = nullptr;
  bool request = true;
  ScriptState* script = nullptr;
  lua_State* co = nullptr;  // the running coroutine, nullptr when none
  int co_ref = -2;          // LUA_NOREF
  uint64_t run = 0;         // id that handle/header/buffer objects check to know they are still valid
  uint32_t slot = 0;        // where the run is registered (see beginRun())
  Wait wait = Wait::kNone;

  http::HeaderMap* headers = nullptr;
  http::HeaderMap* trailers = nullptr;
  bool end_seen = false;           // the direction's end of stream arrived
  bool headers_continued = false;  // headers went on: they can no longer be modified
  bool responded = false;          // respond() was called
  bool had_data = false;           // a body chunk arrived

  http::Buffer body;              // the whole body for body(), while we own it
  bool body_ready = false;        // body() has a complete body
  bool body_in_held = false;      // the body lives in the filter manager's buffer instead of `body`
  http::Buffer* chunk = nullptr;  // the chunk being delivered to bodyChunks()
  uint64_t chunk_seq = 0;
  uint64_t instructions = 0;    // run by the current callback, for the budget
  bool budget_stopped = false;  // the last error was the budget hook's
  bool running = false;         // inside lua_resume(): the coroutine must not be reused or resumed

  std::shared_ptr<LuaHttpCall> http_call;  // the synchronous httpCall() being waited on
  bool return_duplicate_headers = false;

  std::unique_ptr<http::HeaderMap> reply_headers;  // respond()
  std::string reply_body;

  http::StreamCallbacks& callbacks() const;
  http::Buffer* heldBuffer() const;  // what the filter manager buffered for us, or nullptr
  http::Buffer* bodyBuffer();        // the body body() exposes
};

class LuaFilter : public http::StreamFilter {
 public:
  explicit LuaFilter(std::shared_ptr<const LuaConfig> config);
  ~LuaFilter() override;
  // One filter per stream: recycled through a small per-thread free list instead of malloc/free.
  static void* operator new(size_t size);
  static void operator delete(void* p, size_t size);

  void setDecoderFilterCallbacks(http::DecoderFilterCallbacks& callbacks) override { decoder_ = &callbacks; }
  void setEncoderFilterCallbacks(http::EncoderFilterCallbacks& callbacks) override { encoder_ = &callbacks; }
  http::HeadersStatus decodeHeaders(http::HeaderMap& headers, bool end_stream) override;
  http::DataStatus decodeData(http::Buffer& data, bool end_stream) override;
  http::TrailersStatus decodeTrailers(http::HeaderMap& trailers) override;
  http::HeadersStatus encodeHeaders(http::HeaderMap& headers, bool end_stream) override;
  http::DataStatus encodeData(http::Buffer& data, bool end_stream) override;
  http::TrailersStatus encodeTrailers(http::HeaderMap& trailers) override;
  void onDestroy() override;

  http::DecoderFilterCallbacks* decoder() const { return decoder_; }
  http::EncoderFilterCallbacks* encoder() const { return encoder_; }
  const LuaConfig& config() const { return *config_; }
  const Direction& requestDirection() const { return request_; }

  enum class CallStart { kStarted, kAsync, kUnknownCluster, kNoHost };
  // httpCall(): kStarted means the coroutine must yield until the answer resumes it.
  CallStart startHttpCall(Direction& d, const std::string& cluster, http::HeaderMap headers, std::string body,
                          std::chrono::milliseconds timeout, bool asynchronous);

 private:
  enum class RunResult { kDone, kWaiting, kResponded };
  // After a script error with fail_closed: 500 while `d`'s headers are held, else reset the stream.
  void failClosed(Direction& d, bool budget);

  void selectScripts();
  http::HeadersStatus onHeaders(Direction& d, http::HeaderMap& headers, bool end_stream);
  http::DataStatus onData(Direction& d, http::Buffer& data, bool end_stream);
  http::TrailersStatus onTrailers(Direction& d, http::HeaderMap& trailers);
  RunResult resume(Direction& d, int nargs);
  // Ends the run; `returned`: resume() saw the function return (so its coroutine can be reused).
  void finish(Direction& d, bool returned = false);
  void sendReply(Direction& d);
  void onHttpCallDone(Direction& d, std::unique_ptr<http::HeaderMap> headers, const std::string& body);

  std::shared_ptr<const LuaConfig> config_;
  http::DecoderFilterCallbacks* decoder_ = nullptr;
  http::EncoderFilterCallbacks* encoder_ = nullptr;
  bool scripts_selected_ = false;
  bool destroyed_ = false;
  bool failed_closed_ = false;  // a fail-closed error answered the stream: no more script runs
  Direction request_;
  Direction response_;
};

}  // namespace skiff::filters::lua
