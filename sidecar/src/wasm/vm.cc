// A Wasm VM on the engine module: ABI detection, host-function binding, export calls with traps turned
// into a failed VM, and bounds-checked access to linear memory. No V8 here (see v8_engine.cc).
#include "wasm/vm.h"

#include <openssl/sha.h>
#include <spdlog/logger.h>

#include <atomic>
#include <cstring>

#include "skiff/common/logging.h"
#include "wasm/engine_loader.h"
#include "wasm/host_functions.h"

namespace skiff::wasm {
namespace {

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
    "proxy_on_http_call_response",
    "proxy_on_queue_ready",
    "proxy_on_new_connection",
    "proxy_on_downstream_data",
    "proxy_on_upstream_data",
    "proxy_on_downstream_connection_close",
    "proxy_on_upstream_connection_close",
    "proxy_on_grpc_receive_initial_metadata",
    "proxy_on_grpc_receive",
    "proxy_on_grpc_receive_trailing_metadata",
    "proxy_on_grpc_close",
};
static_assert(std::size(kExportNames) == static_cast<size_t>(Export::kCount));
static_assert(static_cast<size_t>(Export::kCount) <= 64);  // Vm::export_mask_

// The wasm logger's level as the engine reads it for proxy_log (Import::quiet_below): spdlog keeps it in an
// std::atomic<int>, which is a plain lock-free int in memory, in a logger that lives as long as the process.
// (Reached through a pointer to member named via a derived class: the member is protected.)
const int32_t* wasmLogLevel() {
  struct Peek : spdlog::logger {
    static auto member() { return &Peek::level_; }
  };
  static_assert(sizeof(spdlog::level_t) == sizeof(int32_t) && spdlog::level_t::is_always_lock_free);
  static_assert(spdlog::level::trace == 0 && spdlog::level::critical == 5);  // proxy-wasm's log levels
  const spdlog::level_t& level = log::get(log::Component::kWasm).*Peek::member();
  return reinterpret_cast<const int32_t*>(&level);
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

Vm::~Vm() {
  // The watchdog must be done with the instance before it goes.
  if (watched_registered_) unwatch(&watched_);
}

bool Vm::endCall(bool outer, const char* what) {
  --call_depth_;
  if (!outer || !watched_.leave(*instance_)) return true;
  timed_out_ = true;
  failed_ = true;
  error_ = std::string(what) + " exceeded the execution time limit of " +
           std::to_string(executionTimeLimit().count()) + " ms";
  return false;
}

std::unique_ptr<Vm> Vm::create(std::string_view code, PluginVm* host, std::string* error) {
  engine::Engine* eng = loadEngine(error);
  if (eng == nullptr) return nullptr;
  std::unique_ptr<Vm> vm(new Vm());
  vm->host_ = host;
  // Compiled once per code hash; later VMs (other workers, replaced VMs) reuse the compiled code.
  vm->instance_ = eng->compile(code, sha256(code), error);
  if (!vm->instance_) return nullptr;

  vm->abi_ = detectAbi(vm->instance_->exportNames());
  if (vm->abi_ == AbiVersion::kUnknown) {
    *error = "Missing or unknown Proxy-Wasm ABI version (no proxy_abi_version_0_2_1/0_2_0/0_1_0 export)";
    return nullptr;
  }
  // Imports: the host functions this ABI version may use; the index leads back to the table.
  std::vector<engine::Import> imports;
  const auto host_fns = hostFunctions();
  for (size_t i = 0; i < host_fns.size(); ++i) {
    const HostFunction& fn = host_fns[i];
    if (fn.abis != 0 && (fn.abis & abiBit(vm->abi_)) == 0) continue;
    imports.push_back(
        engine::Import{fn.module, fn.name, static_cast<uint32_t>(i), fn.arity, fn.i64_args, fn.returns});
    // A message below the level costs no crossing into the host (a sidecar runs at warning, modules log
    // at info): the host function would only check the memory range and return Ok.
    if (std::strcmp(fn.name, "proxy_log") == 0 && fn.arity == 3 && fn.returns) {
      imports.back().quiet_below = wasmLogLevel();
    }
  }
  watch(&vm->watched_, vm->instance_.get());
  vm->watched_registered_ = true;
  if (!vm->instance_->instantiate(imports, vm.get(), kExportNames, error)) return nullptr;
  for (uint32_t e = 0; e < static_cast<uint32_t>(Export::kCount); ++e) {
    if (vm->instance_->hasExport(e)) vm->export_mask_ |= uint64_t{1} << e;
  }
  if (!vm->hasExport(Export::kMalloc) && !vm->hasExport(Export::kMemoryAllocate)) {
    *error = "Wasm module is missing malloc function (export proxy_on_memory_allocate or malloc)";
    return nullptr;
  }
  vm->refreshMemory();
  return vm;
}

// Every host function the guest calls arrives here from the engine.
const std::string* Vm::callImport(uint32_t index, const uint64_t* args, uint64_t* result) {
  const HostFunction& fn = hostFunctions()[index];
  enterHost();
  *result = fn.fn(*this, args);
  leaveHost();
  return failed_ ? &error_ : nullptr;
}

void Vm::abort(std::string_view why) {
  if (failed_) return;
  failed_ = true;
  error_ = std::string(why);
}

std::optional<uint32_t> Vm::call(Export e, std::initializer_list<uint32_t> args) {
  if (failed_ || !hasExport(e)) return std::nullopt;
  uint32_t result = 0;
  std::string trap;
  const bool outer = beginCall();
  bool ok = instance_->call(static_cast<uint32_t>(e), args.begin(), args.size(), &result, &trap);
  if (!endCall(outer, kExportNames[static_cast<size_t>(e)])) return std::nullopt;
  if (host_depth_ > 0) refreshMemory();  // the guest may have grown its memory under a host function
  if (!ok) {
    if (!failed_) {
      failed_ = true;
      error_ = std::string(kExportNames[static_cast<size_t>(e)]) + " trapped: " + trap;
    }
    return std::nullopt;
  }
  return result;
}

std::optional<uint32_t> Vm::callByName(std::string_view name, std::initializer_list<uint32_t> args) {
  if (failed_) return std::nullopt;
  uint32_t result = 0;
  bool found = false;
  std::string trap;
  const bool outer = beginCall();
  const bool ok = instance_->callByName(name, args.begin(), args.size(), &result, &found, &trap);
  if (!endCall(outer, std::string(name).c_str())) return std::nullopt;
  if (ok) return result;
  if (found && !failed_) {
    failed_ = true;
    error_ = std::string(name) + " trapped: " + trap;
  }
  return std::nullopt;
}

bool Vm::refreshMemory() {
  const engine::Memory m = instance_->memory();
  mem_ = m.data;
  mem_size_ = m.size;
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
