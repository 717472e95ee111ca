// The V8 engine module (libskiff_wasm_v8.so): process-wide V8 start-up, the compiled-module cache, one
// isolate per instance, import binding, export calls with traps caught, linear memory. Only this file sees
// V8; skiff_wasm loads it with dlopen and talks to it through wasm/engine.h.
#include <node.h>
#include <v8-wasm.h>
#include <v8.h>

#include <atomic>
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

// Every host function enters here: arguments are unpacked (i32 as uint32, i64 from BigInt) and the
// result is returned as an i32 Number.
void dispatch(const v8::FunctionCallbackInfo<v8::Value>& info) {
  auto* data = static_cast<CallbackData*>(info.Data().As<v8::External>()->Value());
  const Import& fn = *data->import;
  uint64_t args[12] = {};
  const int n = std::min<int>(info.Length(), std::min<int>(fn.arity, 12));
  for (int i = 0; i < n; ++i) {
    v8::Local<v8::Value> v = info[i];
    if (fn.i64_args & (1u << i)) {
      if (v->IsBigInt()) args[i] = v.As<v8::BigInt>()->Uint64Value();
    } else if (v->IsInt32()) {
      args[i] = static_cast<uint32_t>(v.As<v8::Int32>()->Value());
    } else if (v->IsUint32()) {
      args[i] = v.As<v8::Uint32>()->Value();
    }
  }
  uint64_t result = 0;
  if (const std::string* abort = data->host->callImport(fn.index, args, &result)) {
    v8::Isolate* isolate = info.GetIsolate();
    isolate->ThrowException(v8::Exception::Error(str(isolate, *abort)));
    return;
  }
  if (fn.returns) info.GetReturnValue().Set(static_cast<uint32_t>(result));
}

class V8Instance final : public Instance {
 public:
  ~V8Instance() override {
    if (isolate_ == nullptr) return;
    {
      v8::Isolate::Scope iscope(isolate_);
      backing_.reset();
      for (auto& e : exports_) e.Reset();
      memory_.Reset();
      instance_.Reset();
      module_.Reset();
      context_.Reset();
    }
    v8Engine().platform->forget(isolate_);
    isolate_->Dispose();
  }

  // Compiles (or re-creates from the cache) in a fresh isolate.
  bool init(std::string_view code, const std::string& key, std::string* error) {
    V8& eng = v8Engine();
    v8::Isolate::CreateParams params;
    params.array_buffer_allocator = eng.allocator.get();
    isolate_ = v8::Isolate::New(params);
    runner_ = eng.platform->runnerFor(isolate_);
    v8::Isolate::Scope iscope(isolate_);
    // No JavaScript runs here, so no microtask checkpoint after every call into the module.
    isolate_->SetMicrotasksPolicy(v8::MicrotasksPolicy::kExplicit);
    v8::HandleScope hscope(isolate_);
    v8::Local<v8::Context> ctx = v8::Context::New(isolate_);
    context_.Reset(isolate_, ctx);
    v8::Context::Scope cscope(ctx);
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
    module_.Reset(isolate_, module);
    return true;
  }

  const std::vector<std::string>& exportNames() const override { return export_names_; }

  bool instantiate(std::span<const Import> imports, Host* host, std::span<const char* const> exports,
                   std::string* error) override {
    v8::Isolate::Scope iscope(isolate_);
    v8::HandleScope hscope(isolate_);
    v8::Local<v8::Context> ctx = context_.Get(isolate_);
    v8::Context::Scope cscope(ctx);
    v8::TryCatch tc(isolate_);

    // The imports under their modules (WASI also under its older name).
    imports_.assign(imports.begin(), imports.end());
    callback_data_.clear();
    callback_data_.reserve(imports_.size());  // pointers into it are handed to V8
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
    for (const Import& fn : imports_) {
      callback_data_.push_back(CallbackData{host, &fn});
      v8::Local<v8::Function> f =
          v8::Function::New(ctx, dispatch, v8::External::New(isolate_, &callback_data_.back()), fn.arity)
              .ToLocalChecked();
      const std::string module_name = fn.module;
      moduleObject(module_name)->Set(ctx, str(isolate_, fn.name), f).Check();
      if (module_name == "wasi_snapshot_preview1")
        moduleObject("wasi_unstable")->Set(ctx, str(isolate_, fn.name), f).Check();
    }

    v8::Local<v8::Function> instance_ctor =
        wasmNamespace(ctx)->Get(ctx, str(isolate_, "Instance")).ToLocalChecked().As<v8::Function>();
    v8::Local<v8::Value> argv[] = {module_.Get(isolate_), import_obj};
    v8::Local<v8::Object> instance;
    if (!instance_ctor->NewInstance(ctx, 2, argv).ToLocal(&instance)) {
      *error = "cannot link the Wasm module: " + exceptionText(isolate_, tc);
      return false;
    }
    instance_.Reset(isolate_, instance);
    v8::Local<v8::Object> export_obj =
        instance->Get(ctx, str(isolate_, "exports")).ToLocalChecked().As<v8::Object>();
    v8::Local<v8::Value> memory;
    if (!export_obj->Get(ctx, str(isolate_, "memory")).ToLocal(&memory) || !memory->IsWasmMemoryObject()) {
      *error = "the Wasm module does not export its memory as 'memory'";
      return false;
    }
    memory_.Reset(isolate_, memory.As<v8::Object>());
    exports_.clear();
    exports_.resize(exports.size());
    for (size_t e = 0; e < exports.size(); ++e) {
      v8::Local<v8::Value> f;
      if (export_obj->Get(ctx, str(isolate_, exports[e])).ToLocal(&f) && f->IsFunction()) {
        exports_[e].Reset(isolate_, f.As<v8::Function>());
      }
    }
    return true;
  }

  bool hasExport(uint32_t index) const override {
    return index < exports_.size() && !exports_[index].IsEmpty();
  }

  bool call(uint32_t index, const uint32_t* args, size_t argc, uint32_t* result,
            std::string* error) override {
    v8::Isolate::Scope iscope(isolate_);
    v8::HandleScope hscope(isolate_);
    v8::Local<v8::Context> ctx = context_.Get(isolate_);
    v8::Context::Scope cscope(ctx);
    v8::TryCatch tc(isolate_);
    v8::Local<v8::Value> argv[8];
    argc = std::min<size_t>(argc, 8);
    for (size_t i = 0; i < argc; ++i) argv[i] = v8::Integer::NewFromUnsigned(isolate_, args[i]);
    ++depth_;
    v8::MaybeLocal<v8::Value> ret =
        exports_[index].Get(isolate_)->Call(ctx, v8::Undefined(isolate_), static_cast<int>(argc), argv);
    --depth_;
    return finish(ret, ctx, tc, result, error);
  }

  bool callByName(std::string_view name, const uint32_t* args, size_t argc, uint32_t* result, bool* found,
                  std::string* error) override {
    v8::Isolate::Scope iscope(isolate_);
    v8::HandleScope hscope(isolate_);
    v8::Local<v8::Context> ctx = context_.Get(isolate_);
    v8::Context::Scope cscope(ctx);
    v8::TryCatch tc(isolate_);
    v8::Local<v8::Object> export_obj =
        instance_.Get(isolate_)->Get(ctx, str(isolate_, "exports")).ToLocalChecked().As<v8::Object>();
    v8::Local<v8::Value> f;
    *found = export_obj->Get(ctx, str(isolate_, name)).ToLocal(&f) && f->IsFunction();
    if (!*found) return false;
    v8::Local<v8::Value> argv[8];
    argc = std::min<size_t>(argc, 8);
    for (size_t i = 0; i < argc; ++i) argv[i] = v8::Integer::NewFromUnsigned(isolate_, args[i]);
    ++depth_;
    v8::MaybeLocal<v8::Value> ret =
        f.As<v8::Function>()->Call(ctx, ctx->Global(), static_cast<int>(argc), argv);
    --depth_;
    return finish(ret, ctx, tc, result, error);
  }

  Memory memory() override {
    v8::HandleScope hscope(isolate_);
    v8::Local<v8::Object> memory = memory_.Get(isolate_);
    v8::Local<v8::ArrayBuffer> buffer = v8::WasmMemoryObject::Cast(*memory)->Buffer();
    // The memory object owns its backing store and it only changes while guest code runs (memory.grow),
    // after which the host re-reads it: no BackingStore reference (an atomic pair) per host call.
    return Memory{static_cast<uint8_t*>(buffer->Data()), buffer->ByteLength()};
  }

 private:
  v8::Local<v8::Object> wasmNamespace(v8::Local<v8::Context> ctx) {
    return ctx->Global()->Get(ctx, str(isolate_, "WebAssembly")).ToLocalChecked().As<v8::Object>();
  }

  bool finish(v8::MaybeLocal<v8::Value> ret, v8::Local<v8::Context> ctx, v8::TryCatch& tc, uint32_t* result,
              std::string* error) {
    v8::Local<v8::Value> value;
    if (!ret.ToLocal(&value)) {
      *error = tc.HasTerminated() ? std::string("execution terminated") : exceptionText(isolate_, tc);
      return false;
    }
    if (depth_ == 0) runner_->runPending();
    *result = value->IsUndefined() ? 0u : static_cast<uint32_t>(value->Uint32Value(ctx).FromMaybe(0));
    return true;
  }

  v8::Isolate* isolate_ = nullptr;
  std::shared_ptr<ForegroundRunner> runner_;
  v8::Global<v8::Context> context_;
  v8::Global<v8::WasmModuleObject> module_;
  v8::Global<v8::Object> instance_;
  v8::Global<v8::Object> memory_;
  std::vector<v8::Global<v8::Function>> exports_;
  std::shared_ptr<v8::BackingStore> backing_;
  void terminate() override { isolate_->TerminateExecution(); }
  void cancelTerminate() override {
    v8::Isolate::Scope iscope(isolate_);
    isolate_->CancelTerminateExecution();
  }

  int depth_ = 0;  // nested guest calls (the allocator inside a host function)
  std::vector<std::string> export_names_;
  std::vector<Import> imports_;
  std::vector<CallbackData> callback_data_;  // sized once, so pointers into it stay stable
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
