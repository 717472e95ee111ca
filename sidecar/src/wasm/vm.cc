// The V8 side of a Wasm VM: process-wide V8 start-up, the compiled-module cache, one isolate per VM,
// import binding, export calls with traps caught, and bounds-checked access to linear memory.
#include "wasm/vm.h"

#include <node.h>
#include <openssl/sha.h>
#include <v8-wasm.h>
#include <v8.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <unordered_map>

#include "skiff/common/logging.h"
#include "wasm/host_functions.h"

namespace skiff::wasm {
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

struct Engine {
  Engine() {
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

Engine& engine() {
  static Engine* e = new Engine();  // never torn down: V8 cannot be re-initialised in a process
  return *e;
}

struct CallbackData {
  Vm* vm;
  const HostFunction* fn;
};

// Compiled code shared by every VM of the process that runs the same bytes.
struct CachedModule {
  std::shared_ptr<v8::CompiledWasmModule> compiled;
  std::vector<std::string> exports;
};
std::mutex g_cache_mu;
std::map<std::string, CachedModule> g_cache;  // key: SHA-256 of the code

std::string sha256(std::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return std::string(reinterpret_cast<char*>(digest), sizeof(digest));
}

constexpr const char* kExportNames[] = {
    "_initialize",
    "main",
    "_start",
    "malloc",
    "proxy_on_memory_allocate",
    "proxy_on_context_create",
    "proxy_on_vm_start",
    "proxy_validate_configuration",
    "proxy_on_configure",
    "proxy_on_tick",
    "proxy_on_request_headers",
    "proxy_on_request_body",
    "proxy_on_request_trailers",
    "proxy_on_response_headers",
    "proxy_on_response_body",
    "proxy_on_response_trailers",
    "proxy_on_log",
    "proxy_on_done",
    "proxy_on_delete",
};
static_assert(std::size(kExportNames) == static_cast<size_t>(Export::kCount));

std::string exceptionText(v8::Isolate* isolate, v8::Local<v8::Context> ctx, v8::TryCatch& tc) {
  if (!tc.HasCaught()) return "unknown error";
  v8::String::Utf8Value text(isolate, tc.Exception());
  return *text ? std::string(*text, text.length()) : std::string("unprintable exception");
}

v8::Local<v8::String> str(v8::Isolate* isolate, std::string_view s) {
  return v8::String::NewFromUtf8(isolate, s.data(), v8::NewStringType::kNormal, static_cast<int>(s.size()))
      .ToLocalChecked();
}

}  // namespace

AbiVersion detectAbi(const std::vector<std::string>& export_names) {
  for (const auto& name : export_names) {
    if (name == "proxy_abi_version_0_1_0") return AbiVersion::k0_1_0;
    if (name == "proxy_abi_version_0_2_0") return AbiVersion::k0_2_0;
    if (name == "proxy_abi_version_0_2_1") return AbiVersion::k0_2_1;
  }
  return AbiVersion::kUnknown;
}

struct Vm::Impl {
  v8::Isolate* isolate = nullptr;
  std::shared_ptr<ForegroundRunner> runner;
  v8::Global<v8::Context> context;
  v8::Global<v8::Object> instance;
  v8::Global<v8::Object> memory;
  v8::Global<v8::Function> exports[static_cast<size_t>(Export::kCount)];
  std::shared_ptr<v8::BackingStore> backing;  // keeps the current memory alive while we point into it
  int depth = 0;                              // nested guest calls (allocator inside a host function)
  std::vector<CallbackData> callback_data;    // filled before any pointer into it is taken
};

namespace {

// Every host function enters here: arguments are unpacked (i32 as uint32, i64 from BigInt) and the
// result is returned as an i32 Number.
void dispatch(const v8::FunctionCallbackInfo<v8::Value>& info) {
  auto* data = static_cast<CallbackData*>(info.Data().As<v8::External>()->Value());
  const HostFunction& fn = *data->fn;
  uint64_t args[12] = {};
  const int n = std::min<int>(info.Length(), fn.arity);
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
  data->vm->enterHost();
  const uint64_t result = fn.fn(*data->vm, args);
  data->vm->leaveHost();
  if (data->vm->failed()) {
    v8::Isolate* isolate = info.GetIsolate();
    isolate->ThrowException(v8::Exception::Error(str(isolate, data->vm->error())));
    return;
  }
  if (fn.returns) info.GetReturnValue().Set(static_cast<uint32_t>(result));
}

}  // namespace

Vm::Vm() : impl_(std::make_unique<Impl>()) {}

Vm::~Vm() {
  if (impl_->isolate == nullptr) return;
  {
    v8::Isolate::Scope iscope(impl_->isolate);
    impl_->backing.reset();
    for (auto& e : impl_->exports) e.Reset();
    impl_->memory.Reset();
    impl_->instance.Reset();
    impl_->context.Reset();
  }
  engine().platform->forget(impl_->isolate);
  impl_->isolate->Dispose();
}

std::unique_ptr<Vm> Vm::create(std::string_view code, PluginVm* host, std::string* error) {
  Engine& eng = engine();
  std::unique_ptr<Vm> vm(new Vm());
  vm->host_ = host;
  v8::Isolate::CreateParams params;
  params.array_buffer_allocator = eng.allocator.get();
  v8::Isolate* isolate = v8::Isolate::New(params);
  vm->impl_->isolate = isolate;
  vm->impl_->runner = eng.platform->runnerFor(isolate);

  v8::Isolate::Scope iscope(isolate);
  // No JavaScript runs here, so no microtask checkpoint after every call into the module.
  isolate->SetMicrotasksPolicy(v8::MicrotasksPolicy::kExplicit);
  v8::HandleScope hscope(isolate);
  v8::Local<v8::Context> ctx = v8::Context::New(isolate);
  vm->impl_->context.Reset(isolate, ctx);
  v8::Context::Scope cscope(ctx);
  v8::TryCatch tc(isolate);

  // Compile once per code hash; later VMs (other workers, replaced VMs) reuse the compiled code.
  const std::string key = sha256(code);
  v8::Local<v8::WasmModuleObject> module;
  std::vector<std::string> export_names;
  {
    std::lock_guard<std::mutex> lock(g_cache_mu);
    auto it = g_cache.find(key);
    if (it != g_cache.end()) {
      if (!v8::WasmModuleObject::FromCompiledModule(isolate, *it->second.compiled).ToLocal(&module)) {
        *error = "cannot re-create the compiled Wasm module: " + exceptionText(isolate, ctx, tc);
        return nullptr;
      }
      export_names = it->second.exports;
    }
  }
  if (module.IsEmpty()) {
    auto bytes = v8::MemorySpan<const uint8_t>(reinterpret_cast<const uint8_t*>(code.data()), code.size());
    if (!v8::WasmModuleObject::Compile(isolate, bytes).ToLocal(&module)) {
      *error = "cannot compile the Wasm module: " + exceptionText(isolate, ctx, tc);
      return nullptr;
    }
    // WebAssembly.Module.exports(module), in export order.
    v8::Local<v8::Object> wasm_ns =
        ctx->Global()->Get(ctx, str(isolate, "WebAssembly")).ToLocalChecked().As<v8::Object>();
    v8::Local<v8::Object> module_ctor =
        wasm_ns->Get(ctx, str(isolate, "Module")).ToLocalChecked().As<v8::Object>();
    v8::Local<v8::Function> exports_fn =
        module_ctor->Get(ctx, str(isolate, "exports")).ToLocalChecked().As<v8::Function>();
    v8::Local<v8::Value> argv[] = {module};
    v8::Local<v8::Value> list;
    if (!exports_fn->Call(ctx, module_ctor, 1, argv).ToLocal(&list) || !list->IsArray()) {
      *error = "cannot list the Wasm module's exports";
      return nullptr;
    }
    v8::Local<v8::Array> arr = list.As<v8::Array>();
    for (uint32_t i = 0; i < arr->Length(); ++i) {
      v8::Local<v8::Object> desc = arr->Get(ctx, i).ToLocalChecked().As<v8::Object>();
      v8::String::Utf8Value name(isolate, desc->Get(ctx, str(isolate, "name")).ToLocalChecked());
      export_names.emplace_back(*name, name.length());
    }
    std::lock_guard<std::mutex> lock(g_cache_mu);
    g_cache.emplace(key, CachedModule{std::make_shared<v8::CompiledWasmModule>(module->GetCompiledModule()),
                                      export_names});
  }

  vm->abi_ = detectAbi(export_names);
  if (vm->abi_ == AbiVersion::kUnknown) {
    *error = "Missing or unknown Proxy-Wasm ABI version (no proxy_abi_version_0_2_1/0_2_0/0_1_0 export)";
    return nullptr;
  }

  // Imports: the host functions this ABI version may use, under their modules (WASI under both names).
  v8::Local<v8::Object> imports = v8::Object::New(isolate);
  std::map<std::string, v8::Local<v8::Object>> modules;
  auto moduleObject = [&](const std::string& name) {
    auto& m = modules[name];
    if (m.IsEmpty()) {
      m = v8::Object::New(isolate);
      imports->Set(ctx, str(isolate, name), m).Check();
    }
    return m;
  };
  auto host_fns = hostFunctions();
  for (const HostFunction& fn : host_fns) {
    if (fn.abis != 0 && (fn.abis & abiBit(vm->abi_)) == 0) continue;
    // CallbackData lives as long as the VM (a vector sized once, so pointers stay stable).
    vm->impl_->callback_data.push_back(CallbackData{vm.get(), &fn});
  }
  size_t i = 0;
  for (const HostFunction& fn : host_fns) {
    if (fn.abis != 0 && (fn.abis & abiBit(vm->abi_)) == 0) continue;
    CallbackData* data = &vm->impl_->callback_data[i++];
    v8::Local<v8::Function> f =
        v8::Function::New(ctx, dispatch, v8::External::New(isolate, data), fn.arity).ToLocalChecked();
    const std::string module_name = fn.module;
    moduleObject(module_name)->Set(ctx, str(isolate, fn.name), f).Check();
    if (module_name == "wasi_snapshot_preview1")
      moduleObject("wasi_unstable")->Set(ctx, str(isolate, fn.name), f).Check();
  }

  v8::Local<v8::Object> wasm_ns =
      ctx->Global()->Get(ctx, str(isolate, "WebAssembly")).ToLocalChecked().As<v8::Object>();
  v8::Local<v8::Function> instance_ctor =
      wasm_ns->Get(ctx, str(isolate, "Instance")).ToLocalChecked().As<v8::Function>();
  v8::Local<v8::Value> argv[] = {module, imports};
  v8::Local<v8::Object> instance;
  if (!instance_ctor->NewInstance(ctx, 2, argv).ToLocal(&instance)) {
    *error = "cannot link the Wasm module: " + exceptionText(isolate, ctx, tc);
    return nullptr;
  }
  vm->impl_->instance.Reset(isolate, instance);
  v8::Local<v8::Object> exports =
      instance->Get(ctx, str(isolate, "exports")).ToLocalChecked().As<v8::Object>();
  v8::Local<v8::Value> memory;
  if (!exports->Get(ctx, str(isolate, "memory")).ToLocal(&memory) || !memory->IsWasmMemoryObject()) {
    *error = "the Wasm module does not export its memory as 'memory'";
    return nullptr;
  }
  vm->impl_->memory.Reset(isolate, memory.As<v8::Object>());
  for (size_t e = 0; e < static_cast<size_t>(Export::kCount); ++e) {
    v8::Local<v8::Value> f;
    if (exports->Get(ctx, str(isolate, kExportNames[e])).ToLocal(&f) && f->IsFunction()) {
      vm->impl_->exports[e].Reset(isolate, f.As<v8::Function>());
    }
  }
  if (!vm->hasExport(Export::kMalloc) && !vm->hasExport(Export::kMemoryAllocate)) {
    *error = "Wasm module is missing malloc function (export proxy_on_memory_allocate or malloc)";
    return nullptr;
  }
  vm->refreshMemory();
  return vm;
}

bool Vm::hasExport(Export e) const {
  return !impl_->exports[static_cast<size_t>(e)].IsEmpty();
}

void Vm::abort(std::string_view why) {
  if (failed_) return;
  failed_ = true;
  error_ = std::string(why);
}

std::optional<uint32_t> Vm::call(Export e, std::initializer_list<uint32_t> args) {
  if (failed_ || !hasExport(e)) return std::nullopt;
  v8::Isolate* isolate = impl_->isolate;
  v8::Isolate::Scope iscope(isolate);
  v8::HandleScope hscope(isolate);
  v8::Local<v8::Context> ctx = impl_->context.Get(isolate);
  v8::Context::Scope cscope(ctx);
  v8::TryCatch tc(isolate);
  v8::Local<v8::Value> argv[8];
  int argc = 0;
  for (uint32_t a : args) argv[argc++] = v8::Integer::NewFromUnsigned(isolate, a);
  ++impl_->depth;
  v8::MaybeLocal<v8::Value> result =
      impl_->exports[static_cast<size_t>(e)].Get(isolate)->Call(ctx, v8::Undefined(isolate), argc, argv);
  --impl_->depth;
  if (host_depth_ > 0) refreshMemory();  // the guest may have grown its memory under a host function
  v8::Local<v8::Value> value;
  if (!result.ToLocal(&value)) {
    if (!failed_) {
      failed_ = true;
      error_ =
          std::string(kExportNames[static_cast<size_t>(e)]) + " trapped: " + exceptionText(isolate, ctx, tc);
    }
    return std::nullopt;
  }
  if (impl_->depth == 0) impl_->runner->runPending();
  if (value->IsUndefined()) return 0u;
  return static_cast<uint32_t>(value->Uint32Value(ctx).FromMaybe(0));
}

std::optional<uint32_t> Vm::callByName(std::string_view name, std::initializer_list<uint32_t> args) {
  if (failed_) return std::nullopt;
  v8::Isolate* isolate = impl_->isolate;
  v8::Isolate::Scope iscope(isolate);
  v8::HandleScope hscope(isolate);
  v8::Local<v8::Context> ctx = impl_->context.Get(isolate);
  v8::Context::Scope cscope(ctx);
  v8::TryCatch tc(isolate);
  v8::Local<v8::Object> exports =
      impl_->instance.Get(isolate)->Get(ctx, str(isolate, "exports")).ToLocalChecked().As<v8::Object>();
  v8::Local<v8::Value> f;
  if (!exports->Get(ctx, str(isolate, name)).ToLocal(&f) || !f->IsFunction()) return std::nullopt;
  v8::Local<v8::Value> argv[8];
  int argc = 0;
  for (uint32_t a : args) argv[argc++] = v8::Integer::NewFromUnsigned(isolate, a);
  v8::Local<v8::Value> value;
  if (!f.As<v8::Function>()->Call(ctx, ctx->Global(), argc, argv).ToLocal(&value)) {
    if (!failed_) {
      failed_ = true;
      error_ = std::string(name) + " trapped: " + exceptionText(isolate, ctx, tc);
    }
    return std::nullopt;
  }
  if (value->IsUndefined()) return 0u;
  return static_cast<uint32_t>(value->Uint32Value(ctx).FromMaybe(0));
}

bool Vm::refreshMemory() {
  v8::Isolate* isolate = impl_->isolate;
  v8::HandleScope hscope(isolate);
  v8::Local<v8::Object> memory = impl_->memory.Get(isolate);
  v8::Local<v8::ArrayBuffer> buffer = v8::WasmMemoryObject::Cast(*memory)->Buffer();
  impl_->backing = buffer->GetBackingStore();
  mem_ = static_cast<uint8_t*>(impl_->backing->Data());
  mem_size_ = impl_->backing->ByteLength();
  return mem_ != nullptr || mem_size_ == 0;
}

uint64_t Vm::memorySize() {
  refreshMemory();
  return mem_size_;
}

std::optional<std::string_view> Vm::view(uint32_t ptr, uint32_t size) {
  if (host_depth_ == 0) refreshMemory();
  if (uint64_t{ptr} + size > mem_size_) return std::nullopt;
  if (size == 0) return std::string_view();
  return std::string_view(reinterpret_cast<const char*>(mem_ + ptr), size);
}

bool Vm::write(uint32_t ptr, const void* data, uint32_t size) {
  if (host_depth_ == 0) refreshMemory();
  if (uint64_t{ptr} + size > mem_size_) return false;
  if (size != 0) std::memcpy(mem_ + ptr, data, size);
  return true;
}

WasmResult Vm::copyOut(std::string_view data, uint32_t ptr_ptr, uint32_t size_ptr) {
  if (!view(ptr_ptr, 4) || !view(size_ptr, 4)) return WasmResult::kInvalidMemoryAccess;
  uint32_t ptr = 0;
  if (!data.empty()) {
    if (data.size() > UINT32_MAX) return WasmResult::kInvalidMemoryAccess;
    auto got = call(hasExport(Export::kMemoryAllocate) ? Export::kMemoryAllocate : Export::kMalloc,
                    {static_cast<uint32_t>(data.size())});
    if (!got || *got == 0) return WasmResult::kInvalidMemoryAccess;
    ptr = *got;
    if (!write(ptr, data.data(), static_cast<uint32_t>(data.size()))) return WasmResult::kInvalidMemoryAccess;
  }
  if (!writeU32(ptr_ptr, ptr) || !writeU32(size_ptr, static_cast<uint32_t>(data.size()))) {
    return WasmResult::kInvalidMemoryAccess;
  }
  return WasmResult::kOk;
}

}  // namespace skiff::wasm
