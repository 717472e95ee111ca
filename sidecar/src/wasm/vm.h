// One instantiated Wasm module: the engine's instance (V8, loaded on demand from libskiff_wasm_v8.so), the
// module's linear memory with bounds-checked access, calls into its exports with traps caught. A Vm is used
// by one thread at a time (its worker).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "wasm/engine.h"
#include "wasm/types.h"
#include "wasm/watchdog.h"

namespace skiff::wasm {

class PluginVm;

// Module exports the host calls, looked up once at instantiation.
enum class Export : uint32_t {
  kInitialize,
  kMain,
  kStart,
  kMalloc,
  kMemoryAllocate,
  kOnContextCreate,
  kOnVmStart,
  kValidateConfiguration,
  kOnConfigure,
  kOnTick,
  kOnRequestHeaders,
  kOnRequestBody,
  kOnRequestTrailers,
  kOnResponseHeaders,
  kOnResponseBody,
  kOnResponseTrailers,
  kOnLog,
  kOnDone,
  kOnDelete,
  kOnHttpCallResponse,
  kOnQueueReady,
  // Network filter and gRPC callouts (WASM-FEAT; appended).
  kOnNewConnection,
  kOnDownstreamData,
  kOnUpstreamData,
  kOnDownstreamConnectionClose,
  kOnUpstreamConnectionClose,
  kOnGrpcReceiveInitialMetadata,
  kOnGrpcReceive,
  kOnGrpcReceiveTrailingMetadata,
  kOnGrpcClose,
  kCount,
};

// The ABI a module declares through its `proxy_abi_version_*` export (first match in export order).
AbiVersion detectAbi(const std::vector<std::string>& export_names);

class Vm final : private engine::Host {
 public:
  // Compiles `code` (once per process per code hash; later VMs reuse the compiled code), instantiates it
  // in a new isolate with the proxy-wasm host functions bound to `host`, and resolves exports. Returns
  // nullptr and sets `error` when the engine cannot be loaded, the module cannot be compiled, lacks an ABI
  // marker or an allocator, or imports something the host does not provide.
  static std::unique_ptr<Vm> create(std::string_view code, PluginVm* host, std::string* error);
  ~Vm();
  Vm(const Vm&) = delete;
  Vm& operator=(const Vm&) = delete;

  AbiVersion abi() const { return abi_; }
  bool hasExport(Export e) const { return (export_mask_ >> static_cast<uint32_t>(e)) & 1u; }
  // Calls an export with i32 arguments. nullopt when it trapped (failed() is then true and error() says
  // why) or is not exported; a void export yields 0.
  std::optional<uint32_t> call(Export e, std::initializer_list<uint32_t> args);
  // Same, by name (tests).
  std::optional<uint32_t> callByName(std::string_view name, std::initializer_list<uint32_t> args);
  bool failed() const { return failed_; }
  // The VM failed because a guest call ran past the execution-time limit.
  bool timedOut() const { return timed_out_; }
  const std::string& error() const { return error_; }
  // Marks the VM failed (a host function aborts the guest); the next guest instruction traps.
  void abort(std::string_view why);

  // Guest memory, bounds-checked against the current memory size (memory may grow during guest calls).
  // A view is valid until the next call into the guest.
  std::optional<std::string_view> view(uint32_t ptr, uint32_t size);
  bool write(uint32_t ptr, const void* data, uint32_t size);
  bool writeU32(uint32_t ptr, uint32_t value) { return write(ptr, &value, 4); }
  bool writeU64(uint32_t ptr, uint64_t value) { return write(ptr, &value, 8); }
  uint64_t memorySize();
  // Copies `data` into memory from the guest's allocator and stores its pointer and size at the
  // out-pointers (ptr=0, size=0 for empty data). InvalidMemoryAccess when an out-pointer or the
  // allocation is out of bounds or the allocator fails.
  WasmResult copyOut(std::string_view data, uint32_t ptr_ptr, uint32_t size_ptr);

  PluginVm* host() const { return host_; }
  // The plugin whose root context calls in next (plugins of one vm_id share a VM).
  void setHost(PluginVm* host) { host_ = host; }

  // Host function entry/exit (the dispatcher): memory is re-read once per host call and after any guest
  // call made inside it, instead of on every access.
  void enterHost() {
    ++host_depth_;
    refreshMemory();
  }
  void leaveHost() { --host_depth_; }

 private:
  Vm() = default;
  bool refreshMemory();
  const std::string* callImport(uint32_t index, const uint64_t* args, uint64_t* result) override;
  // Around every guest call: the outermost one is watched by the execution-time limit.
  bool beginCall() {
    const bool outer = call_depth_++ == 0;
    if (outer) watched_.enter();
    return outer;
  }
  // Returns false (and fails the VM) when the watchdog stopped the call.
  bool endCall(bool outer, const char* what);  // a C string: no strlen per call

  std::unique_ptr<engine::Instance> instance_;
  uint64_t export_mask_ = 0;  // bit e: Export e is resolved (no call into the engine to ask)
  PluginVm* host_ = nullptr;
  AbiVersion abi_ = AbiVersion::kUnknown;
  bool failed_ = false;
  std::string error_;
  int host_depth_ = 0;
  int call_depth_ = 0;
  bool timed_out_ = false;
  bool watched_registered_ = false;
  WatchedCall watched_;
  uint8_t* mem_ = nullptr;
  uint64_t mem_size_ = 0;
};

}  // namespace skiff::wasm
