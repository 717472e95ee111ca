// The boundary between skiff_wasm and the V8 engine module (libskiff_wasm_v8.so), which is dlopen'ed the
// first time a Wasm filter is configured so a proxy without one never maps libnode. Header-only and free of
// V8 headers: both sides compile it, and only virtual calls cross it, so the module needs none of the host's
// symbols (and carries none of its globals).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace skiff::wasm::engine {

// Bumped whenever anything below changes; the module refuses a host built against another version.
inline constexpr uint32_t kInterfaceVersion = 3;
// extern "C" Engine* skiff_wasm_engine(uint32_t interface_version): nullptr on a version mismatch.
inline constexpr const char* kEntryPoint = "skiff_wasm_engine";
using EntryPoint = void* (*)(uint32_t interface_version);

// One host function to bind into the guest's imports.
struct Import {
  const char* module;
  const char* name;
  uint32_t index;  // handed back to Host::callImport
  uint8_t arity;
  uint32_t i64_args;  // bit i set: argument i is an i64
  bool returns;
  // proxy_log's shape (level, ptr, size) -> WasmResult: when set, the engine answers Ok (0) itself, with no
  // call into the host, for a level below *quiet_below (read at every call; the host may change it at any
  // time) whose message lies within the guest's memory. Any other call goes to the host as usual.
  const int32_t* quiet_below = nullptr;
};

// The host side of one instance: the engine calls it for every import the guest calls.
class Host {
 public:
  // Runs import `index` with its arguments unpacked (i32 as uint32_t, i64 as uint64_t). Returns nullptr, or
  // the reason the guest must stop (the engine then raises a trap in the guest).
  virtual const std::string* callImport(uint32_t index, const uint64_t* args, uint64_t* result) = 0;

 protected:
  ~Host() = default;
};

struct Memory {
  uint8_t* data = nullptr;
  uint64_t size = 0;
};

// A compiled module in the isolate of the thread that created it (one isolate per thread, kept entered);
// instantiated once. Called only on that thread: a call from another thread fails (as a trap would) with
// an error saying so. It may be destroyed on any thread.
class Instance {
 public:
  virtual ~Instance() = default;
  // The module's exports, in export order.
  virtual const std::vector<std::string>& exportNames() const = 0;
  // Binds `imports`, instantiates, and resolves `exports` by position (a missing one is simply absent).
  // False with `error` set when linking fails or the module does not export its memory.
  virtual bool instantiate(std::span<const Import> imports, Host* host, std::span<const char* const> exports,
                           std::string* error) = 0;
  virtual bool hasExport(uint32_t index) const = 0;
  // Calls a resolved export with i32 arguments (at most 8). False with `error` set (the exception text)
  // when it trapped; a void export yields 0.
  virtual bool call(uint32_t index, const uint32_t* args, size_t argc, uint32_t* result,
                    std::string* error) = 0;
  // Same, by name; `*found` is false when there is no such exported function.
  virtual bool callByName(std::string_view name, const uint32_t* args, size_t argc, uint32_t* result,
                          bool* found, std::string* error) = 0;
  // The current linear memory; valid until the next call into the guest (memory may grow).
  virtual Memory memory() = 0;
  // Stops the guest code running now (or the next that runs) with an uncatchable trap. The only method
  // that may be called from another thread (the watchdog).
  virtual void terminate() = 0;
  // On the owning thread, after a terminate(): lets later calls run again.
  virtual void cancelTerminate() = 0;
};

class Engine {
 public:
  // Compiles `code` (once per process per `key`; later instances reuse the compiled code) in this thread's
  // isolate. nullptr with `error` set when it does not compile.
  virtual std::unique_ptr<Instance> compile(std::string_view code, const std::string& key,
                                            std::string* error) = 0;

 protected:
  ~Engine() = default;
};

}  // namespace skiff::wasm::engine
