// Shared data store with compare-and-swap: one map per vm_id, a never-zero global cas counter.
#include "wasm/shared_data.h"

#include <map>
#include <mutex>
#include <unordered_map>

namespace skiff::wasm {
namespace {

struct Store {
  std::mutex mu;
  uint32_t next_cas = 1;
  std::map<std::string, std::unordered_map<std::string, std::pair<std::string, uint32_t>>, std::less<>> vms;
};

Store& store() {
  static Store* s = new Store();
  return *s;
}

}  // namespace

SharedData& SharedData::instance() {
  static SharedData d;
  return d;
}

std::optional<std::pair<std::string, uint32_t>> SharedData::get(std::string_view vm_id,
                                                                std::string_view key) {
  Store& s = store();
  std::lock_guard<std::mutex> lock(s.mu);
  auto vm = s.vms.find(vm_id);
  if (vm == s.vms.end()) return std::nullopt;
  auto it = vm->second.find(std::string(key));
  if (it == vm->second.end()) return std::nullopt;
  return it->second;
}

WasmResult SharedData::set(std::string_view vm_id, std::string_view key, std::string_view value,
                           uint32_t cas) {
  Store& s = store();
  std::lock_guard<std::mutex> lock(s.mu);
  auto& map = s.vms[std::string(vm_id)];
  auto [it, inserted] = map.try_emplace(std::string(key));
  if (!inserted && cas != 0 && it->second.second != cas) return WasmResult::kCasMismatch;
  it->second.first.assign(value);
  it->second.second = s.next_cas++;
  if (s.next_cas == 0) s.next_cas = 1;
  return WasmResult::kOk;
}

void SharedData::clearForTest() {
  Store& s = store();
  std::lock_guard<std::mutex> lock(s.mu);
  s.vms.clear();
}

}  // namespace skiff::wasm
