// The V8 engine module (libskiff_wasm_v8.so): process-wide V8 start-up, the compiled-module cache, one
// isolate per instance, import binding, export calls with traps caught, linear memory. Only this file sees
// V8; skiff_wasm loads it with dlopen and talks to it through wasm/engine.h.
#include <node.h>
#include <v8-wasm.h>
#include <v8.h>

#include <pthread.h>
#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdlib>
#include <deque>
#include <map>
#include <mutex>
#include <unordered_map>

#include "wasm/engine.h"

namespace skiff::wasm::engine {
namespace {

// Foreground tasks V8 posts for one isolate (GC finalisation, code flushing). Any thread may post; the
// VM's own thread runs them after each top-level call into the guest.
class ForegroundRunner : public v8::TaskRunner {
 public:
  void PostTask(std::unique_ptr<v8::Task> task) override {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_.push_back(std::move(task));
    pending_.store(true, std::memory_order_release);
  }
  void PostDelayedTask(std::unique_ptr<v8::Task> task, double) override { PostTask(std::move(task)); }
  void PostIdleTask(std::unique_ptr<v8::IdleTask>) override {}
  bool IdleTasksEnabled() override { return false; }
  void PostNonNestableTask(std::unique_ptr<v8::Task> task) override { PostTask(std::move(task)); }
  bool NonNestableTasksEnabled() const override { return true; }

  void runPending() {
    if (!pending_.load(std::memory_order_acquire)) return;  // no lock on the common path
    std::deque<std::unique_ptr<v8::Task>> ready;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ready.swap(tasks_);
      pending_.store(false, std::memory_order_relaxed);
    }
    for (auto& t : ready) t->Run();
  }

 private:
  std::mutex mu_;
  std::deque<std::unique_ptr<v8::Task>> tasks_;
  std::atomic<bool> pending_{false};
};

// V8's platform: background work (tier-up compilation, concurrent GC) on Node's worker pool, foreground
// tasks queued per isolate (no event loop of V8's own in a proxy worker).
class Platform : public v8::Platform {
 public:
  Platform() : inner_(node::MultiIsolatePlatform::Create(2, nullptr, nullptr)) {}

  std::shared_ptr<ForegroundRunner> runnerFor(v8::Isolate* isolate) {
    std::lock_guard<std::mutex> lock(mu_);
    auto& r = runners_[isolate];
    if (!r) r = std::make_shared<ForegroundRunner>();
    return r;
  }
  void forget(v8::Isolate* isolate) {
    std::lock_guard<std::mutex> lock(mu_);
    runners_.erase(isolate);
  }

  v8::PageAllocator* GetPageAllocator() override { return inner_->GetPageAllocator(); }
  int NumberOfWorkerThreads() override { return inner_->NumberOfWorkerThreads(); }
  std::shared_ptr<v8::TaskRunner> GetForegroundTaskRunner(v8::Isolate* isolate) override {
    return runnerFor(isolate);
  }
  void CallOnWorkerThread(std::unique_ptr<v8::Task> task) override {
    inner_->CallOnWorkerThread(std::move(task));
  }
  void CallDelayedOnWorkerThread(std::unique_ptr<v8::Task> task, double delay) override {
    inner_->CallDelayedOnWorkerThread(std::move(task), delay);
  }
  std::unique_ptr<v8::JobHandle> PostJob(v8::TaskPriority priority,
                                         std::unique_ptr<v8::JobTask> job) override {
    return inner_->PostJob(priority, std::move(job));
  }
  double MonotonicallyIncreasingTime() override { return inner_->MonotonicallyIncreasingTime(); }
  double CurrentClockTimeMillis() override { return inner_->CurrentClockTimeMillis(); }
  v8::TracingController* GetTracingController() override { return inner_->GetTracingController(); }

 private:
  std::unique_ptr<node::MultiIsolatePlatform> inner_;
  std::mutex mu_;
  std::unordered_map<v8::Isolate*, std::shared_ptr<ForegroundRunner>> runners_;
};

struct V8 {
  V8() {
    // SKIFF_V8_FLAGS: extra V8 flags for experiments (e.g. "--no-liftoff").
    if (const char* flags = std::getenv("SKIFF_V8_FLAGS")) v8::V8::SetFlagsFromString(flags);
    platform = std::make_unique<Platform>();
    v8::V8::InitializePlatform(platform.get());
    v8::V8::Initialize();
    allocator.reset(v8::ArrayBuffer::Allocator::NewDefaultAllocator());
  }
  std::unique_ptr<Platform> platform;
  std::unique_ptr<v8::ArrayBuffer::Allocator> allocator;
};

V8& v8Engine() {
  static V8* e = new V8();  // never torn down: V8 cannot be re-initialised in a process
  return *e;
}

// Compiled code shared by every instance of the process that runs the same bytes.
struct CachedModule {
  std::shared_ptr<v8::CompiledWasmModule> compiled;
  std::vector<std::string> exports;
};
std::mutex g_cache_mu;
std::map<std::string, CachedModule> g_cache;  // key: chosen by the host (a hash of the code)

std::string exceptionText(v8::Isolate* isolate, v8::TryCatch& tc) {
  if (!tc.HasCaught()) return "unknown error";
  v8::String::Utf8Value text(isolate, tc.Exception());
  return *text ? std::string(*text, text.length()) : std::string("unprintable exception");
}

v8::Local<v8::String> str(v8::Isolate* isolate, std::string_view s) {
  return v8::String::NewFromUtf8(isolate, s.data(), v8::NewStringType::kNormal, static_cast<int>(s.size()))
      .ToLocalChecked();
}

struct CallbackData {
  Host* host;
  const Import* import;
};

// A handle to what a Global holds without creating a new handle (Node's PersistentToLocal::Strong): the
// Global's slot stays valid as long as the Global is set.
template <typename T>
v8::Local<T> strong(const v8::Global<T>& global) {
  return *reinterpret_cast<const v8::Local<T>*>(&global);
}

// An i32 argument from the Wasm-to-JS wrapper is a Smi unless it does not fit one (a HeapNumber then).
inline bool smiValue(v8::Local<v8::Value> v, uint64_t* out) {
  const auto tagged = *reinterpret_cast<const v8::internal::Address*>(*v);
  if (v8::internal::Internals::HasHeapObjectTag(tagged)) return false;
  *out = static_cast<uint32_t>(v8::internal::Internals::SmiValue(tagged));
  return true;
}

// The rare argument that is no Smi: an i64 (a BigInt) or an i32 boxed as a HeapNumber.
uint64_t slowArg(v8::Local<v8::Value> v, bool i64) {
  if (i64) return v->IsBigInt() ? v.As<v8::BigInt>()->Uint64Value() : 0;
  if (v->IsInt32()) return static_cast<uint32_t>(v.As<v8::Int32>()->Value());
  if (v->IsUint32()) return v.As<v8::Uint32>()->Value();
  return 0;
}

constexpr int kMaxHostArgs = 12;  // the widest host function (proxy_grpc_call) takes 12

// i32 arguments for a guest call, held as V8 small integers in the caller's frame: Function::Call only reads
// the values behind the handles, and a Smi is no heap object, so neither Integer::New nor a handle slot is
// needed per argument. (Smis are 32-bit on this V8 build, which has no pointer compression: any uint32
// passes as the int32 with the same bits, which is what the JS-to-Wasm wrapper's ToInt32 gives back.)
class SmiArgs {
 public:
  static constexpr size_t kMax = 8;
  static_assert(v8::internal::kSmiValueSize == 32, "an i32 must fit a Smi");
  SmiArgs(const uint32_t* args, size_t argc) : argc_(std::min(argc, kMax)) {
    for (size_t i = 0; i < argc_; ++i) {
      slots_[i] = v8::internal::Internals::IntToSmi(static_cast<int32_t>(args[i]));
      argv_[i] = std::bit_cast<v8::Local<v8::Value>>(&slots_[i]);  // a Local is a pointer to its slot
    }
  }
  int argc() const { return static_cast<int>(argc_); }
  v8::Local<v8::Value>* argv() { return argv_; }

 private:
  size_t argc_;
  v8::internal::Address slots_[kMax];
  v8::Local<v8::Value> argv_[kMax];
};
static_assert(sizeof(v8::Local<v8::Value>) == sizeof(v8::internal::Address*));

// Every host function enters here: arguments are unpacked (i32 as uint32, i64 from BigInt) and the
// result is returned as an i32 Number. The Wasm-to-JS wrapper passes i32 arguments as small integers: one
// tag test each.
void dispatch(const v8::FunctionCallbackInfo<v8::Value>& info) {
  auto* data = static_cast<CallbackData*>(info.Data().As<v8::External>()->Value());
  const Import& fn = *data->import;
  uint64_t args[kMaxHostArgs] = {};  // zeroed: a host function never sees another call's arguments
  const int n = std::min<int>(info.Length(), std::min<int>(fn.arity, kMaxHostArgs));
  for (int i = 0; i < n; ++i) {
    if (!smiValue(info[i], &args[i])) args[i] = slowArg(info[i], (fn.i64_args >> i) & 1u);
  }
  uint64_t result = 0;
  if (const std::string* abort = data->host->callImport(fn.index, args, &result)) {
    v8::Isolate* isolate = info.GetIsolate();
    isolate->ThrowException(v8::Exception::Error(str(isolate, *abort)));
    return;
  }
  if (fn.returns) info.GetReturnValue().Set(static_cast<uint32_t>(result));
}

// A quiet import (Import::quiet_below, proxy_log's shape) is bound as this small JavaScript function around
// the host function: below the level, with the message inside the memory size known so far, it answers Ok
// without leaving V8's generated code; the crossing into C++ (the Wasm-to-JS wrapper, HandleApiCall,
// FunctionCallbackInfo) is most of a host call's cost. i32 arguments arrive signed, so values of 2^31 and
// up (never valid here) fall through to the host, which checks them exactly.
constexpr const char* kQuietImportSource = R"JS((function (host, level, size) {
  'use strict';
  return function (l, p, n) {
    if (l >= 0 && l < level[0] && p >= 0 && n >= 0 && p + n <= size[0]) return 0;
    return host(l, p, n);
  };
}))JS";

// What an instance holds in its isolate. Freed on the isolate's home thread (see ThreadIsolate).
struct InstanceHandles {
  v8::Global<v8::WasmModuleObject> module;
  v8::Global<v8::Object> instance;
  v8::Global<v8::Object> memory;
  v8::Global<v8::ArrayBuffer> buffer;  // memory's current buffer; detached when the memory grows
  // The memory's size as quiet imports read it (see quietImport): an Int32Array over one int32 that
  // refreshBuffer() keeps current. Memory only grows, so a stale value only sends a call to the host.
  v8::Global<v8::Int32Array> known_size;
  int32_t* known_size_cell = nullptr;
  std::vector<v8::Global<v8::Function>> exports;
  std::vector<Import> imports;
  std::vector<CallbackData> callback_data;  // sized once, so the pointers handed to V8 stay stable

  void reset() {
    module.Reset();
    instance.Reset();
    memory.Reset();
    buffer.Reset();
    known_size.Reset();
    known_size_cell = nullptr;
    for (auto& e : exports) e.Reset();
  }
};

// The isolate of one thread. Every instance created on a thread lives in that thread's isolate, which the
// thread enters once, with one context and an outer handle scope, and leaves when it exits (or when its
// last instance goes): a guest call pays no isolate or context entry, and a worker has one V8 heap however
// many plugins it runs. Only the home thread uses the isolate; an instance destroyed on another thread
// hands its handles over (the graveyard), and the home thread frees them at its next call into V8 or when
// it leaves. Once the home thread is gone the isolate is orphaned: its remaining instances are freed under
// the mutex from whatever thread destroys them, and the last one disposes of it.
class ThreadIsolate {
 public:
  // This thread's isolate, created (and entered) on first use.
  static std::shared_ptr<ThreadIsolate> forThisThread() {
    Holder& h = holder();
    if (!h.iso) h.iso = std::shared_ptr<ThreadIsolate>(new ThreadIsolate());
    return h.iso;
  }

  ~ThreadIsolate() {
    v8Engine().platform->forget(isolate_);
    isolate_->Dispose();  // never entered by now: left by its home thread (leave())
  }

  v8::Isolate* isolate() const { return isolate_; }
  v8::Local<v8::Context> context() const { return strong(context_); }
  // left_ is written by the home thread only, so only the home thread may read it without the lock.
  bool onHomeThread() const { return pthread_equal(pthread_self(), home_) && !left_; }
  ForegroundRunner& runner() { return *runner_; }
  int& depth() { return depth_; }

  // function(host, level, size) -> function(l, p, n): the quiet-import wrapper (see quietImport), compiled
  // once per isolate. Empty if it cannot be compiled (the imports are then bound directly).
  v8::Local<v8::Function> quietFactory() {
    if (quiet_factory_.IsEmpty() && !quiet_factory_failed_) {
      v8::HandleScope scope(isolate_);
      v8::Local<v8::Context> ctx = context();
      v8::TryCatch tc(isolate_);
      v8::Local<v8::Script> script;
      v8::Local<v8::Value> f;
      if (v8::Script::Compile(ctx, str(isolate_, kQuietImportSource)).ToLocal(&script) &&
          script->Run(ctx).ToLocal(&f) && f->IsFunction()) {
        quiet_factory_.Reset(isolate_, f.As<v8::Function>());
      } else {
        quiet_factory_failed_ = true;
      }
    }
    return quiet_factory_.IsEmpty() ? v8::Local<v8::Function>() : strong(quiet_factory_);
  }

  // Home thread, before a call: frees what other threads handed over (one load when there is nothing).
  void collect() {
    if (!graveyard_pending_.load(std::memory_order_acquire)) return;
    std::vector<std::unique_ptr<InstanceHandles>> dead;
    {
      std::lock_guard<std::mutex> lock(mu_);
      dead.swap(graveyard_);
      graveyard_pending_.store(false, std::memory_order_relaxed);
      instances_ -= dead.size();
    }
    for (auto& h : dead) h->reset();
  }

  void addInstance() {
    std::lock_guard<std::mutex> lock(mu_);
    ++instances_;
  }

  // An instance is gone: its handles are freed here (home thread, or orphaned isolate) or handed to the
  // home thread. On the home thread the isolate is left (and then disposed) with its last instance.
  void release(std::unique_ptr<InstanceHandles> handles) {
    if (onHomeThread()) {
      handles->reset();
      collect();
      bool last;
      {
        std::lock_guard<std::mutex> lock(mu_);
        last = --instances_ == 0;
      }
      if (last && depth_ == 0 && holder().iso.get() == this) {
        leave();
        holder().iso.reset();  // the caller's reference is the last: disposed after this
      }
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (!left_) {
      graveyard_.push_back(std::move(handles));
      graveyard_pending_.store(true, std::memory_order_release);
      return;
    }
    --instances_;
    v8::Isolate::Scope scope(isolate_);  // orphaned: nobody else uses it (the mutex)
    handles->reset();
  }

 private:
  struct Holder {
    std::shared_ptr<ThreadIsolate> iso;
    ~Holder() {
      if (iso) iso->leave();
    }
  };
  static Holder& holder() {
    thread_local Holder h;
    return h;
  }

  ThreadIsolate() : home_(pthread_self()) {
    V8& eng = v8Engine();
    v8::Isolate::CreateParams params;
    params.array_buffer_allocator = eng.allocator.get();
    isolate_ = v8::Isolate::New(params);
    runner_ = eng.platform->runnerFor(isolate_);
    isolate_->Enter();
    // No JavaScript queues microtasks here (the only script is the quiet-import wrapper), so no microtask
    // checkpoint after every call into a module.
    isolate_->SetMicrotasksPolicy(v8::MicrotasksPolicy::kExplicit);
    // The outer scope keeps a handle block, so a call's own scope never allocates one.
    scope_ = ::new (&scope_storage_) v8::HandleScope(isolate_);
    v8::Local<v8::Context> ctx = v8::Context::New(isolate_);
    context_.Reset(isolate_, ctx);
    ctx->Enter();
  }

  // Home thread: frees the graveyard and leaves the isolate for good.
  void leave() {
    if (left_) return;
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& h : graveyard_) h->reset();
    instances_ -= graveyard_.size();
    graveyard_.clear();
    graveyard_pending_.store(false, std::memory_order_relaxed);
    quiet_factory_.Reset();
    context()->Exit();
    context_.Reset();
    scope_->~HandleScope();
    isolate_->Exit();
    left_ = true;
  }

  v8::Isolate* isolate_ = nullptr;
  const pthread_t home_;
  std::shared_ptr<ForegroundRunner> runner_;
  v8::Global<v8::Context> context_;
  v8::Global<v8::Function> quiet_factory_;
  bool quiet_factory_failed_ = false;
  alignas(v8::HandleScope) unsigned char scope_storage_[sizeof(v8::HandleScope)];
  v8::HandleScope* scope_ = nullptr;
  int depth_ = 0;  // nested guest calls on the home thread (a host function calling the allocator)
  std::atomic<bool> graveyard_pending_{false};
  std::mutex mu_;  // graveyard_, instances_, left_ transitions
  std::vector<std::unique_ptr<InstanceHandles>> graveyard_;
  size_t instances_ = 0;
  bool left_ = false;
};

constexpr const char* kWrongThread =
    "the Wasm VM was called from a thread other than the one that created it";

class V8Instance final : public Instance {
 public:
  ~V8Instance() override {
    if (iso_) iso_->release(std::move(h_));
  }

  // Compiles (or re-creates from the cache) in this thread's isolate.
  bool init(std::string_view code, const std::string& key, std::string* error) {
    iso_ = ThreadIsolate::forThisThread();
    iso_->addInstance();
    isolate_ = iso_->isolate();
    h_ = std::make_unique<InstanceHandles>();
    v8::HandleScope hscope(isolate_);
    v8::Local<v8::Context> ctx = iso_->context();
    v8::TryCatch tc(isolate_);

    v8::Local<v8::WasmModuleObject> module;
    {
      std::lock_guard<std::mutex> lock(g_cache_mu);
      auto it = g_cache.find(key);
      if (it != g_cache.end()) {
        if (!v8::WasmModuleObject::FromCompiledModule(isolate_, *it->second.compiled).ToLocal(&module)) {
          *error = "cannot re-create the compiled Wasm module: " + exceptionText(isolate_, tc);
          return false;
        }
        export_names_ = it->second.exports;
      }
    }
    if (module.IsEmpty()) {
      auto bytes = v8::MemorySpan<const uint8_t>(reinterpret_cast<const uint8_t*>(code.data()), code.size());
      if (!v8::WasmModuleObject::Compile(isolate_, bytes).ToLocal(&module)) {
        *error = "cannot compile the Wasm module: " + exceptionText(isolate_, tc);
        return false;
      }
      // WebAssembly.Module.exports(module), in export order.
      v8::Local<v8::Object> module_ctor =
          wasmNamespace(ctx)->Get(ctx, str(isolate_, "Module")).ToLocalChecked().As<v8::Object>();
      v8::Local<v8::Function> exports_fn =
          module_ctor->Get(ctx, str(isolate_, "exports")).ToLocalChecked().As<v8::Function>();
      v8::Local<v8::Value> argv[] = {module};
      v8::Local<v8::Value> list;
      if (!exports_fn->Call(ctx, module_ctor, 1, argv).ToLocal(&list) || !list->IsArray()) {
        *error = "cannot list the Wasm module's exports";
        return false;
      }
      v8::Local<v8::Array> arr = list.As<v8::Array>();
      for (uint32_t i = 0; i < arr->Length(); ++i) {
        v8::Local<v8::Object> desc = arr->Get(ctx, i).ToLocalChecked().As<v8::Object>();
        v8::String::Utf8Value name(isolate_, desc->Get(ctx, str(isolate_, "name")).ToLocalChecked());
        export_names_.emplace_back(*name, name.length());
      }
      std::lock_guard<std::mutex> lock(g_cache_mu);
      g_cache.emplace(key, CachedModule{std::make_shared<v8::CompiledWasmModule>(module->GetCompiledModule()),
                                        export_names_});
    }
    h_->module.Reset(isolate_, module);
    return true;
  }

  const std::vector<std::string>& exportNames() const override { return export_names_; }

  bool instantiate(std::span<const Import> imports, Host* host, std::span<const char* const> exports,
                   std::string* error) override {
    if (!iso_->onHomeThread()) {
      *error = kWrongThread;
      return false;
    }
    v8::HandleScope hscope(isolate_);
    v8::Local<v8::Context> ctx = iso_->context();
    v8::TryCatch tc(isolate_);

    // The imports under their modules (WASI also under its older name).
    h_->imports.assign(imports.begin(), imports.end());
    h_->callback_data.clear();
    h_->callback_data.reserve(h_->imports.size());  // pointers into it are handed to V8
    v8::Local<v8::Object> import_obj = v8::Object::New(isolate_);
    std::map<std::string, v8::Local<v8::Object>> modules;
    auto moduleObject = [&](const std::string& name) {
      auto& m = modules[name];
      if (m.IsEmpty()) {
        m = v8::Object::New(isolate_);
        import_obj->Set(ctx, str(isolate_, name), m).Check();
      }
      return m;
    };
    for (const Import& fn : h_->imports) {
      h_->callback_data.push_back(CallbackData{host, &fn});
      v8::Local<v8::Function> f =
          v8::Function::New(ctx, dispatch, v8::External::New(isolate_, &h_->callback_data.back()), fn.arity)
              .ToLocalChecked();
      if (fn.quiet_below != nullptr) f = quietImport(ctx, f, fn.quiet_below);
      const std::string module_name = fn.module;
      moduleObject(module_name)->Set(ctx, str(isolate_, fn.name), f).Check();
      if (module_name == "wasi_snapshot_preview1")
        moduleObject("wasi_unstable")->Set(ctx, str(isolate_, fn.name), f).Check();
    }

    v8::Local<v8::Function> instance_ctor =
        wasmNamespace(ctx)->Get(ctx, str(isolate_, "Instance")).ToLocalChecked().As<v8::Function>();
    v8::Local<v8::Value> argv[] = {strong(h_->module), import_obj};
    v8::Local<v8::Object> instance;
    if (!instance_ctor->NewInstance(ctx, 2, argv).ToLocal(&instance)) {
      *error = "cannot link the Wasm module: " + exceptionText(isolate_, tc);
      return false;
    }
    h_->instance.Reset(isolate_, instance);
    v8::Local<v8::Object> export_obj =
        instance->Get(ctx, str(isolate_, "exports")).ToLocalChecked().As<v8::Object>();
    v8::Local<v8::Value> memory;
    if (!export_obj->Get(ctx, str(isolate_, "memory")).ToLocal(&memory) || !memory->IsWasmMemoryObject()) {
      *error = "the Wasm module does not export its memory as 'memory'";
      return false;
    }
    h_->memory.Reset(isolate_, memory.As<v8::Object>());
    refreshBuffer();
    h_->exports.clear();
    h_->exports.resize(exports.size());
    for (size_t e = 0; e < exports.size(); ++e) {
      v8::Local<v8::Value> f;
      if (export_obj->Get(ctx, str(isolate_, exports[e])).ToLocal(&f) && f->IsFunction()) {
        h_->exports[e].Reset(isolate_, f.As<v8::Function>());
      }
    }
    return true;
  }

  bool hasExport(uint32_t index) const override {
    return index < h_->exports.size() && !h_->exports[index].IsEmpty();
  }

  bool call(uint32_t index, const uint32_t* args, size_t argc, uint32_t* result,
            std::string* error) override {
    if (!iso_->onHomeThread()) {
      *error = kWrongThread;
      return false;
    }
    iso_->collect();
    // The isolate and its context are entered already (ThreadIsolate): a handle scope and a try-catch is
    // all a call needs.
    v8::HandleScope hscope(isolate_);
    v8::TryCatch tc(isolate_);
    SmiArgs argv(args, argc);
    ++iso_->depth();
    v8::MaybeLocal<v8::Value> ret =
        strong(h_->exports[index])->Call(iso_->context(), v8::Undefined(isolate_), argv.argc(), argv.argv());
    --iso_->depth();
    return finish(ret, tc, result, error);
  }

  bool callByName(std::string_view name, const uint32_t* args, size_t argc, uint32_t* result, bool* found,
                  std::string* error) override {
    *found = false;
    if (!iso_->onHomeThread()) {
      *error = kWrongThread;
      return false;
    }
    iso_->collect();
    v8::HandleScope hscope(isolate_);
    v8::Local<v8::Context> ctx = iso_->context();
    v8::TryCatch tc(isolate_);
    v8::Local<v8::Object> export_obj =
        strong(h_->instance)->Get(ctx, str(isolate_, "exports")).ToLocalChecked().As<v8::Object>();
    v8::Local<v8::Value> f;
    *found = export_obj->Get(ctx, str(isolate_, name)).ToLocal(&f) && f->IsFunction();
    if (!*found) return false;
    SmiArgs argv(args, argc);
    ++iso_->depth();
    v8::MaybeLocal<v8::Value> ret = f.As<v8::Function>()->Call(ctx, ctx->Global(), argv.argc(), argv.argv());
    --iso_->depth();
    return finish(ret, tc, result, error);
  }

  Memory memory() override {
    // The buffer only changes when the guest grows its memory (which detaches the old one): one check.
    if (h_->buffer.IsEmpty() || strong(h_->buffer)->WasDetached()) refreshBuffer();
    return mem_;
  }

  void terminate() override { isolate_->TerminateExecution(); }
  void cancelTerminate() override { isolate_->CancelTerminateExecution(); }

 private:
  v8::Local<v8::Object> wasmNamespace(v8::Local<v8::Context> ctx) {
    return ctx->Global()->Get(ctx, str(isolate_, "WebAssembly")).ToLocalChecked().As<v8::Object>();
  }

  void refreshBuffer() {
    v8::HandleScope hscope(isolate_);
    v8::Local<v8::ArrayBuffer> buffer = v8::WasmMemoryObject::Cast(*strong(h_->memory))->Buffer();
    h_->buffer.Reset(isolate_, buffer);
    mem_ = Memory{static_cast<uint8_t*>(buffer->Data()), buffer->ByteLength()};
    if (h_->known_size_cell != nullptr) {
      *h_->known_size_cell = static_cast<int32_t>(std::min<uint64_t>(mem_.size, INT32_MAX));
    }
  }

  // `host` wrapped for Import::quiet_below (kQuietImportSource); `host` itself if that cannot be done.
  v8::Local<v8::Function> quietImport(v8::Local<v8::Context> ctx, v8::Local<v8::Function> host,
                                      const int32_t* level) {
    v8::Local<v8::Function> factory = iso_->quietFactory();
    if (factory.IsEmpty()) return host;
    if (h_->known_size.IsEmpty()) {
      std::shared_ptr<v8::BackingStore> cell = v8::ArrayBuffer::NewBackingStore(isolate_, sizeof(int32_t));
      h_->known_size_cell = static_cast<int32_t*>(cell->Data());  // stays put: the buffer cannot resize
      *h_->known_size_cell = 0;                                   // until refreshBuffer()
      h_->known_size.Reset(isolate_, v8::Int32Array::New(v8::ArrayBuffer::New(isolate_, cell), 0, 1));
    }
    // The level lives in the host (process-wide, never freed): a view of it, read-only from the script.
    std::shared_ptr<v8::BackingStore> level_store = v8::ArrayBuffer::NewBackingStore(
        const_cast<int32_t*>(level), sizeof(int32_t), v8::BackingStore::EmptyDeleter, nullptr);
    v8::Local<v8::Value> argv[] = {
        host, v8::Int32Array::New(v8::ArrayBuffer::New(isolate_, level_store), 0, 1), strong(h_->known_size)};
    v8::Local<v8::Value> f;
    if (!factory->Call(ctx, v8::Undefined(isolate_), 3, argv).ToLocal(&f) || !f->IsFunction()) return host;
    return f.As<v8::Function>();
  }

  bool finish(v8::MaybeLocal<v8::Value> ret, v8::TryCatch& tc, uint32_t* result, std::string* error) {
    v8::Local<v8::Value> value;
    if (!ret.ToLocal(&value)) {
      *error = tc.HasTerminated() ? std::string("execution terminated") : exceptionText(isolate_, tc);
      return false;
    }
    if (iso_->depth() == 0) iso_->runner().runPending();
    uint64_t v = 0;
    if (smiValue(value, &v)) {
      *result = static_cast<uint32_t>(v);
    } else {
      *result =
          value->IsUndefined() ? 0u : static_cast<uint32_t>(value->Uint32Value(iso_->context()).FromMaybe(0));
    }
    return true;
  }

  std::shared_ptr<ThreadIsolate> iso_;
  v8::Isolate* isolate_ = nullptr;
  std::unique_ptr<InstanceHandles> h_;
  Memory mem_;
  std::vector<std::string> export_names_;
};

class V8Engine final : public Engine {
 public:
  std::unique_ptr<Instance> compile(std::string_view code, const std::string& key,
                                    std::string* error) override {
    auto instance = std::make_unique<V8Instance>();
    if (!instance->init(code, key, error)) return nullptr;
    return instance;
  }
};

}  // namespace
}  // namespace skiff::wasm::engine

extern "C" __attribute__((visibility("default"))) void* skiff_wasm_engine(uint32_t interface_version) {
  if (interface_version != skiff::wasm::engine::kInterfaceVersion) return nullptr;
  static skiff::wasm::engine::V8Engine engine;
  return static_cast<skiff::wasm::engine::Engine*>(&engine);
}
