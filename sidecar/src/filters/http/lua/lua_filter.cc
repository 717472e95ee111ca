// The Lua filter: config, per-worker interpreters, and the coroutine that runs each direction's script.
#include "filters/http/lua/lua_filter.h"

extern "C" {
#include <lauxlib.h>
#include <luajit.h>
#include <lualib.h>
}

#include <atomic>
#include <stdexcept>

#include "filters/http/lua/lua_api.h"
#include "filters/http/lua/lua_config.h"
#include "filters/http/lua/lua_http_call.h"
#include "skiff/common/logging.h"

namespace skiff::filters::lua {

// ---- instruction budget ----

namespace {

constexpr int kHookEvery = 1000;
thread_local Direction* t_running = nullptr;  // the direction whose coroutine is being resumed

// Over budget, the hook yields (LuaJIT lets count hooks yield) instead of raising an error: a pcall() in
// the script could catch an error and loop on, but not a yield; resume() sees budget_stopped and ends the
// run like a runtime error. Where a yield is impossible (inside a Lua function called from C, e.g. a
// table.sort comparator) lua_yield raises an error instead, and the hook keeps trying on every later
// firing (every kHookEvery instructions) until the script is back where it can be stopped.
void budgetHook(lua_State* L, lua_Debug*) {
  Direction* d = t_running;
  if (d == nullptr) return;
  d->instructions += kHookEvery;
  if (!d->budget_stopped) {
    if (d->instructions <= d->filter->config().instructionBudget()) return;
    d->budget_stopped = true;
    d->filter->config().stats().budget_exceeded.inc();
  }
  lua_yield(L, 0);
}

}  // namespace

const Direction* runningDirection() {
  return t_running;
}

// ---- ScriptState ----

ScriptState::ScriptState(const std::string& name, const std::string& code)
    : name_(name), on_request_(LUA_NOREF), on_response_(LUA_NOREF) {
  L_ = luaL_newstate();
  if (L_ == nullptr) throw std::invalid_argument("lua: cannot create an interpreter");
  luaL_openlibs(L_);
  installApi(L_, metatables_);
  const std::string chunk = "=" + name;
  if (luaL_loadbuffer(L_, code.data(), code.size(), chunk.c_str()) != 0 || lua_pcall(L_, 0, 0, 0) != 0) {
    std::string err = lua_tostring(L_, -1) != nullptr ? lua_tostring(L_, -1) : "unknown error";
    lua_close(L_);
    L_ = nullptr;
    throw std::invalid_argument("lua: script '" + name + "' failed to load: " + err);
  }
  auto ref = [this](const char* global) {
    lua_getglobal(L_, global);
    if (lua_isfunction(L_, -1)) return luaL_ref(L_, LUA_REGISTRYINDEX);
    lua_pop(L_, 1);
    return static_cast<int>(LUA_NOREF);
  };
  on_request_ = ref("envoy_on_request");
  on_response_ = ref("envoy_on_response");
  // LuaJIT keeps hooks per interpreter, not per coroutine: one count hook serves every stream. Compiled
  // traces never call hooks (a hot `while true do end` would escape), so the JIT stays off.
  luaJIT_setmode(L_, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
  lua_sethook(L_, budgetHook, LUA_MASKCOUNT, kHookEvery);
}

ScriptState::~ScriptState() {
  if (L_ != nullptr) lua_close(L_);
}

ScriptState::Coroutine ScriptState::acquire() {
  if (!idle_.empty()) {
    Coroutine c = idle_.back();
    idle_.pop_back();
    return c;
  }
  Coroutine c;
  c.co = lua_newthread(L_);
  c.ref = luaL_ref(L_, LUA_REGISTRYINDEX);
  return c;
}

void ScriptState::release(Coroutine c, bool reusable) {
  // Enough idle threads for the streams one worker runs at once; beyond that they go to the GC.
  constexpr size_t kMaxIdle = 64;
  if (reusable && idle_.size() < kMaxIdle) {
    lua_settop(c.co, 0);
    idle_.push_back(c);
    return;
  }
  luaL_unref(L_, LUA_REGISTRYINDEX, c.ref);
}

// ---- LuaConfig ----

namespace {
std::atomic<uint64_t> g_next_config_id{1};

// The last config this thread asked for its interpreters, so the common case takes no lock.
struct WorkerCache {
  uint64_t config_id = 0;
  void* scripts = nullptr;  // LuaConfig::WorkerScripts*
  ScriptState* default_script = nullptr;
};
thread_local WorkerCache t_worker_cache;
}  // namespace

LuaConfig::LuaConfig(std::map<std::string, std::string> sources, LuaStats stats, uint64_t instruction_budget)
    : sources_(std::move(sources)),
      stats_(stats),
      instruction_budget_(instruction_budget),
      id_(g_next_config_id.fetch_add(1)) {
  // Compile (and run the top level of) every script once now, so a broken script is a config error.
  for (const auto& [name, code] : sources_) ScriptState check(name.empty() ? "default" : name, code);
}

LuaConfig::~LuaConfig() {
  // Give back what this config's interpreters added to the (shared) memory gauge.
  if (!stats_.memory_bytes.valid()) return;
  for (const auto& [thread, scripts] : workers_) {
    for (const auto& [name, state] : *scripts) {
      if (state) stats_.memory_bytes.dec(state->reported_bytes);
    }
  }
}

LuaConfig::WorkerScripts& LuaConfig::workerScripts() const {
  if (t_worker_cache.config_id == id_) return *static_cast<WorkerScripts*>(t_worker_cache.scripts);
  std::lock_guard<std::mutex> lock(mu_);
  auto& slot = workers_[std::this_thread::get_id()];
  if (!slot) slot = std::make_unique<WorkerScripts>();
  t_worker_cache = WorkerCache{id_, slot.get(), nullptr};
  return *slot;
}

ScriptState* LuaConfig::script(const std::string& name) const {
  const bool is_default = name.empty();
  if (is_default && t_worker_cache.config_id == id_ && t_worker_cache.default_script != nullptr) {
    return t_worker_cache.default_script;
  }
  auto src = sources_.find(name);
  if (src == sources_.end()) return nullptr;
  WorkerScripts& scripts = workerScripts();
  auto& state = scripts[name];
  // Validated in the constructor, so loading cannot fail here.
  if (!state) state = std::make_unique<ScriptState>(is_default ? "default" : name, src->second);
  if (is_default) t_worker_cache.default_script = state.get();
  return state.get();
}

ScriptState* LuaConfig::inlineScript(const std::string& code) const {
  WorkerScripts& scripts = workerScripts();
  const std::string key = std::string("\0route:", 7) + code;
  auto it = scripts.find(key);
  if (it != scripts.end()) return it->second.get();
  try {
    auto state = std::make_unique<ScriptState>("route_source_code", code);
    return (scripts[key] = std::move(state)).get();
  } catch (const std::invalid_argument& e) {
    SKIFF_LOG(kLua, err, "{}", e.what());
    stats_.errors.inc();
    scripts[key] = nullptr;  // do not retry on every request
    return nullptr;
  }
}

void LuaConfig::reportMemory(ScriptState& state) const {
  if (state.runs_since_report++ % kMemoryReportEvery != 0 || !stats_.memory_bytes.valid()) return;
  lua_State* L = state.lua();
  const int64_t bytes = int64_t{lua_gc(L, LUA_GCCOUNT, 0)} * 1024 + lua_gc(L, LUA_GCCOUNTB, 0);
  stats_.memory_bytes.inc(bytes - state.reported_bytes);
  state.reported_bytes = bytes;
}

void LuaConfig::createFilters(http::FilterChainBuilder& builder) const {
  builder.addStreamFilter(std::make_unique<LuaFilter>(shared_from_this()));
}

// ---- Direction ----

http::StreamCallbacks& Direction::callbacks() const {
  if (request) return *filter->decoder();
  return *filter->encoder();
}

http::Buffer* Direction::heldBuffer() const {
  return request ? filter->decoder()->decodingBuffer() : filter->encoder()->encodingBuffer();
}

http::Buffer* Direction::bodyBuffer() {
  if (body_in_held) {
    if (http::Buffer* held = heldBuffer()) return held;
  }
  return &body;
}

// ---- LuaFilter ----

namespace {
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kRecycleFilters = false;  // let ASan see every filter's lifetime
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kRecycleFilters = false;
#else
constexpr bool kRecycleFilters = true;
#endif
#else
constexpr bool kRecycleFilters = true;
#endif

// Freed LuaFilter blocks of this thread (streams end on the thread that made them, so this normally
// recycles; a block freed elsewhere just lands in that thread's list). Bounded: a burst of streams is
// given back to malloc. Plain thread-locals (no TLS wrapper call per use); FilterFreeListOwner empties
// the list at thread exit, after which frees (static teardown) go straight to malloc.
constexpr size_t kMaxFreeFilters = 128;
thread_local void* t_free_filters[kMaxFreeFilters];
thread_local size_t t_free_filter_count = 0;
thread_local bool t_free_filters_closed = false;
thread_local bool t_free_filters_owned = false;
struct FilterFreeListOwner {
  ~FilterFreeListOwner() {
    t_free_filters_closed = true;
    while (t_free_filter_count > 0) ::operator delete(t_free_filters[--t_free_filter_count]);
  }
  void use() { used = true; }
  bool used = false;
};
thread_local FilterFreeListOwner t_free_filters_owner;
}  // namespace

void* LuaFilter::operator new(size_t size) {
  if (kRecycleFilters && size == sizeof(LuaFilter) && t_free_filter_count > 0) {
    return t_free_filters[--t_free_filter_count];
  }
  return ::operator new(size);
}

void LuaFilter::operator delete(void* p, size_t size) {
  if (kRecycleFilters && size == sizeof(LuaFilter) && t_free_filter_count < kMaxFreeFilters &&
      !t_free_filters_closed) {
    if (!t_free_filters_owned) {
      t_free_filters_owned = true;
      t_free_filters_owner.use();  // registers the thread-exit cleanup
    }
    t_free_filters[t_free_filter_count++] = p;
    return;
  }
  ::operator delete(p);
}

LuaFilter::LuaFilter(std::shared_ptr<const LuaConfig> config) : config_(std::move(config)) {
  request_.filter = this;
  request_.request = true;
  response_.filter = this;
  response_.request = false;
}

LuaFilter::~LuaFilter() {
  onDestroy();
}

void LuaFilter::onDestroy() {
  destroyed_ = true;
  finish(request_);
  finish(response_);
}

// The default script, or the route's LuaPerRoute choice (disabled / another named / inline script).
void LuaFilter::selectScripts() {
  if (scripts_selected_) return;
  scripts_selected_ = true;
  static const std::string kDefault;
  ScriptState* script = config_->script(kDefault);
  if (decoder_ != nullptr) {
    if (auto choice = perRouteChoice(decoder_->route(), config_->filterName())) {
      switch (choice->kind) {
        case PerRouteChoice::kDisabled:
          script = nullptr;
          break;
        case PerRouteChoice::kName:
          script = config_->script(choice->value);
          if (script == nullptr) {
            SKIFF_LOG(kLua, debug, "lua: no source code named '{}'; filter skipped", choice->value);
          }
          break;
        case PerRouteChoice::kInline:
          script = config_->inlineScript(choice->value);
          break;
      }
    }
  }
  request_.script = script;
  response_.script = script;
}

http::HeadersStatus LuaFilter::decodeHeaders(http::HeaderMap& headers, bool end_stream) {
  return onHeaders(request_, headers, end_stream);
}
http::DataStatus LuaFilter::decodeData(http::Buffer& data, bool end_stream) {
  return onData(request_, data, end_stream);
}
http::TrailersStatus LuaFilter::decodeTrailers(http::HeaderMap& trailers) {
  return onTrailers(request_, trailers);
}
http::HeadersStatus LuaFilter::encodeHeaders(http::HeaderMap& headers, bool end_stream) {
  return onHeaders(response_, headers, end_stream);
}
http::DataStatus LuaFilter::encodeData(http::Buffer& data, bool end_stream) {
  return onData(response_, data, end_stream);
}
http::TrailersStatus LuaFilter::encodeTrailers(http::HeaderMap& trailers) {
  return onTrailers(response_, trailers);
}

http::HeadersStatus LuaFilter::onHeaders(Direction& d, http::HeaderMap& headers, bool end_stream) {
  selectScripts();
  d.headers = &headers;
  d.end_seen = end_stream;
  const int fn =
      d.script == nullptr ? LUA_NOREF : (d.request ? d.script->onRequest() : d.script->onResponse());
  if (fn == LUA_NOREF || destroyed_ || failed_closed_) {
    d.headers_continued = true;
    return http::HeadersStatus::kContinue;
  }
  const ScriptState::Coroutine c = d.script->acquire();
  d.co = c.co;
  d.co_ref = c.ref;
  beginRun(d);
  config_->stats().executions.inc();
  lua_rawgeti(d.co, LUA_REGISTRYINDEX, fn);
  pushHandle(d.co, d);
  if (resume(d, 1) == RunResult::kDone) {
    d.headers_continued = true;
    return http::HeadersStatus::kContinue;
  }
  return http::HeadersStatus::kStop;
}

http::DataStatus LuaFilter::onData(Direction& d, http::Buffer& data, bool end_stream) {
  if (d.responded) {
    data.clear();  // the request was answered: drop the rest of its body
    return http::DataStatus::kStopAndBuffer;
  }
  if (end_stream) d.end_seen = true;
  d.had_data = true;
  if (d.co == nullptr) {
    d.headers_continued = true;
    return http::DataStatus::kContinue;
  }
  RunResult r;
  switch (d.wait) {
    case Direction::Wait::kBody: {
      if (!end_stream) return http::DataStatus::kStopAndBuffer;
      // Take the whole body (what the filter manager held plus this chunk) so the script can edit it.
      d.body.clear();
      if (http::Buffer* held = d.heldBuffer()) d.body.swap(*held);
      d.body.append(data);
      data.clear();
      d.body_ready = true;
      d.body_in_held = false;
      d.wait = Direction::Wait::kNone;
      pushBody(d.co, d);
      r = resume(d, 1);
      if (r == RunResult::kResponded) return http::DataStatus::kStopAndBuffer;
      data.swap(d.body);
      if (r == RunResult::kWaiting) {
        d.body_in_held = true;  // the filter manager holds it from now on
        return http::DataStatus::kStopAndBuffer;
      }
      d.headers_continued = true;
      return http::DataStatus::kContinue;
    }
    case Direction::Wait::kChunk: {
      d.chunk = &data;
      ++d.chunk_seq;
      d.wait = Direction::Wait::kNone;
      pushChunk(d.co, d);
      r = resume(d, 1);
      d.chunk = nullptr;
      if (r == RunResult::kResponded) {
        data.clear();
        return http::DataStatus::kStopAndBuffer;
      }
      if (r == RunResult::kWaiting && d.wait != Direction::Wait::kChunk) {
        return http::DataStatus::kStopAndBuffer;  // now waiting for the rest of the body or trailers
      }
      d.headers_continued = true;
      return http::DataStatus::kContinue;
    }
    case Direction::Wait::kTrailers: {
      if (!end_stream) return http::DataStatus::kStopAndBuffer;
      d.wait = Direction::Wait::kNone;
      lua_pushnil(d.co);
      r = resume(d, 1);
      if (r == RunResult::kDone) {
        d.headers_continued = true;
        return http::DataStatus::kContinue;
      }
      return http::DataStatus::kStopAndBuffer;
    }
    case Direction::Wait::kHttpCall:
    case Direction::Wait::kNone:
      break;
  }
  return http::DataStatus::kStopAndBuffer;  // waiting on something that is not body data
}

http::TrailersStatus LuaFilter::onTrailers(Direction& d, http::HeaderMap& trailers) {
  d.trailers = &trailers;
  d.end_seen = true;
  if (d.responded) return http::TrailersStatus::kStop;
  if (d.co == nullptr) return http::TrailersStatus::kContinue;
  const Direction::Wait wait = d.wait;
  d.wait = Direction::Wait::kNone;
  switch (wait) {
    case Direction::Wait::kBody:
      d.body_ready = true;
      d.body_in_held = true;  // trailers end the body: it is all in the filter manager's buffer
      pushBody(d.co, d);
      break;
    case Direction::Wait::kChunk:
      lua_pushnil(d.co);  // no more chunks
      break;
    case Direction::Wait::kTrailers:
      pushTrailers(d.co, d);
      break;
    case Direction::Wait::kHttpCall:
    case Direction::Wait::kNone:
      d.wait = wait;
      return http::TrailersStatus::kStop;  // waiting on something else (an HTTP call)
  }
  if (resume(d, 1) == RunResult::kDone) {
    d.headers_continued = true;
    return http::TrailersStatus::kContinue;
  }
  return http::TrailersStatus::kStop;
}

LuaFilter::RunResult LuaFilter::resume(Direction& d, int nargs) {
  d.instructions = 0;
  d.budget_stopped = false;
  Direction* outer = t_running;  // a local reply can run the response script inside a request resume
  t_running = &d;
  const void* const* outer_mts = setActiveMetatables(d.script->metatables());
  d.running = true;
  const int status = lua_resume(d.co, nargs);
  d.running = false;
  setActiveMetatables(outer_mts);
  t_running = outer;
  if (status == LUA_YIELD && d.budget_stopped) {
    SKIFF_LOG(kLua, err, "script log: script '{}' exceeded its instruction budget ({} instructions)",
              d.script->name(), config_->instructionBudget());
    config_->stats().errors.inc();
    d.wait = Direction::Wait::kNone;
    if (config_->failClosed()) {
      finish(d);
      failClosed(d, true);
      return RunResult::kResponded;
    }
    finish(d);  // the yielded coroutine is dropped, not reused
    return RunResult::kDone;
  }
  if (status == LUA_YIELD) {
    if (!d.responded) return RunResult::kWaiting;
    sendReply(d);
    finish(d);
    return RunResult::kResponded;
  }
  if (status != 0) {
    const char* msg = lua_tostring(d.co, -1);
    SKIFF_LOG(kLua, err, "script log: {}", msg != nullptr ? msg : "unknown error");
    config_->stats().errors.inc();
    if (config_->failClosed()) {
      const bool budget = d.budget_stopped;
      finish(d);
      failClosed(d, budget);
      return RunResult::kResponded;
    }
  }
  finish(d, status == 0);
  return RunResult::kDone;
}

void LuaFilter::failClosed(Direction& d, bool budget) {
  failed_closed_ = true;
  d.responded = true;  // later data/trailers callbacks of this direction drop what they get
  if (d.headers_continued) {
    // Headers already went on (to the upstream, or to the client): too late to answer, so abort.
    d.callbacks().resetStream();
    return;
  }
  decoder_->sendLocalReply(500, "", budget ? "lua_instruction_budget_exceeded" : "lua_runtime_error",
                           nullptr);
}

void LuaFilter::finish(Direction& d, bool returned) {
  if (d.http_call) {
    auto call = std::move(d.http_call);
    call->cancel();
  }
  if (d.co == nullptr) return;
  endRun(d);
  // Only a coroutine whose function returned can be reused; a yielded or failed one is dropped.
  d.script->release(ScriptState::Coroutine{d.co, d.co_ref},
                    returned || (!d.running && lua_status(d.co) == 0));
  d.co = nullptr;
  d.co_ref = LUA_NOREF;
  config_->reportMemory(*d.script);
  d.wait = Direction::Wait::kNone;
  d.chunk = nullptr;
}

LuaFilter::CallStart LuaFilter::startHttpCall(Direction& d, const std::string& cluster,
                                              http::HeaderMap headers, std::string body,
                                              std::chrono::milliseconds timeout, bool asynchronous) {
  LuaHttpCall::Done done;
  if (!asynchronous) {
    done = [this, &d](std::unique_ptr<http::HeaderMap> h, std::string b) {
      onHttpCallDone(d, std::move(h), std::move(b));
    };
  }
  bool unknown = false;
  auto call = LuaHttpCall::start(d.callbacks(), decoder_ != nullptr ? decoder_->bufferLimit() : 0, cluster,
                                 std::move(headers), std::move(body), timeout, std::move(done), &unknown);
  if (unknown) return CallStart::kUnknownCluster;
  if (!call) return CallStart::kNoHost;
  if (asynchronous) return CallStart::kAsync;  // the call keeps itself alive; nobody waits for it
  d.http_call = std::move(call);
  return CallStart::kStarted;
}

// The answer of a synchronous httpCall(): resume the script, then let the stream go on if it finished.
void LuaFilter::onHttpCallDone(Direction& d, std::unique_ptr<http::HeaderMap> headers,
                               const std::string& body) {
  d.http_call.reset();
  if (d.co == nullptr || destroyed_) return;
  d.wait = Direction::Wait::kNone;
  pushHttpResponse(d.co, headers.get(), body, d.return_duplicate_headers);
  if (resume(d, 2) != RunResult::kDone) return;
  d.headers_continued = true;
  if (d.request) {
    decoder_->continueDecoding();
  } else {
    encoder_->continueEncoding();
  }
}

void LuaFilter::sendReply(Direction& d) {
  auto headers = std::move(d.reply_headers);
  const uint32_t status = static_cast<uint32_t>(std::atoi(headers->getOr(http::headers::kStatus).data()));
  decoder_->sendLocalReply(status, d.reply_body, "lua_response", [&headers](http::HeaderMap& out) {
    for (const auto& [name, value] : *headers) {
      if (name != http::headers::kStatus) out.remove(name);
    }
    for (const auto& [name, value] : *headers) {
      if (name != http::headers::kStatus) out.add(name, value);
    }
  });
}

}  // namespace skiff::filters::lua
