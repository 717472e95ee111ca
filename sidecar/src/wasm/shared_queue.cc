// Shared queues: a map (vm_id, name) → id, per id the items and the owner that hears about new ones.
#include "wasm/shared_queue.h"

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <deque>
#include <map>
#include <mutex>
#include <unordered_map>

#include "wasm/plugin.h"

namespace skiff::wasm {
namespace {

struct Queue {
  std::deque<std::string> items;
  asio::io_context* dispatcher = nullptr;
  std::weak_ptr<bool> alive;
  PluginVm* owner = nullptr;
};

struct Store {
  std::mutex mu;
  uint32_t next_id = 1;
  std::map<std::pair<std::string, std::string>, uint32_t, std::less<>> ids;
  std::unordered_map<uint32_t, Queue> queues;
};

Store& store() {
  static Store* s = new Store();
  return *s;
}

}  // namespace

SharedQueues& SharedQueues::instance() {
  static SharedQueues q;
  return q;
}

uint32_t SharedQueues::registerQueue(std::string_view vm_id, std::string_view name,
                                     asio::io_context* dispatcher, std::weak_ptr<bool> alive,
                                     PluginVm* owner) {
  Store& s = store();
  std::lock_guard<std::mutex> lock(s.mu);
  auto [it, inserted] = s.ids.try_emplace({std::string(vm_id), std::string(name)}, s.next_id);
  if (inserted) ++s.next_id;
  Queue& q = s.queues[it->second];
  // A VM without a loop (config validation) never takes a queue from a live owner that has one.
  if (dispatcher == nullptr && q.dispatcher != nullptr && !q.alive.expired()) return it->second;
  q.dispatcher = dispatcher;
  q.alive = std::move(alive);
  q.owner = owner;
  return it->second;
}

std::optional<uint32_t> SharedQueues::resolve(std::string_view vm_id, std::string_view name) {
  Store& s = store();
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.ids.find(std::pair<std::string, std::string>(vm_id, name));
  if (it == s.ids.end()) return std::nullopt;
  return it->second;
}

WasmResult SharedQueues::enqueue(uint32_t id, std::string_view data) {
  asio::io_context* dispatcher = nullptr;
  std::weak_ptr<bool> alive;
  PluginVm* owner = nullptr;
  {
    Store& s = store();
    std::lock_guard<std::mutex> lock(s.mu);
    auto it = s.queues.find(id);
    if (it == s.queues.end()) return WasmResult::kNotFound;
    it->second.items.emplace_back(data);
    dispatcher = it->second.dispatcher;
    alive = it->second.alive;
    owner = it->second.owner;
  }
  if (dispatcher != nullptr) {
    // The owner may be gone by the time this runs on its thread: its alive token says so.
    asio::post(*dispatcher, [alive = std::move(alive), owner, id] {
      auto token = alive.lock();
      if (token && *token) owner->onQueueReady(id);
    });
  }
  return WasmResult::kOk;
}

WasmResult SharedQueues::dequeue(uint32_t id, std::string* data) {
  Store& s = store();
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.queues.find(id);
  if (it == s.queues.end()) return WasmResult::kNotFound;
  if (it->second.items.empty()) return WasmResult::kEmpty;
  *data = std::move(it->second.items.front());
  it->second.items.pop_front();
  return WasmResult::kOk;
}

void SharedQueues::clearForTest() {
  Store& s = store();
  std::lock_guard<std::mutex> lock(s.mu);
  s.ids.clear();
  s.queues.clear();
}

}  // namespace skiff::wasm
