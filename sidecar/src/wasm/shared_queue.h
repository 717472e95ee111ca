// Process-wide shared queues (proxy_register/resolve/enqueue/dequeue_shared_queue), namespaced by vm_id:
// any worker's VM may enqueue; proxy_on_queue_ready runs on the thread of the VM that registered the
// queue. A mutex guards it; plugins reach it only through the four host functions.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "wasm/types.h"

namespace asio {
class io_context;
}

namespace skiff::wasm {

class PluginVm;

class SharedQueues {
 public:
  static SharedQueues& instance();
  // Registers (vm_id, name), or re-binds an existing queue to this owner keeping its items (the last
  // registrant hears about new items, as in Envoy). `dispatcher` null (a config-time VM): it never takes
  // the queue from a live owner with a loop. Returns the queue id.
  uint32_t registerQueue(std::string_view vm_id, std::string_view name, asio::io_context* dispatcher,
                         std::weak_ptr<bool> alive, PluginVm* owner);
  std::optional<uint32_t> resolve(std::string_view vm_id, std::string_view name);
  // NotFound for an unknown id; posts proxy_on_queue_ready to the owner's thread.
  WasmResult enqueue(uint32_t id, std::string_view data);
  // NotFound for an unknown id, Empty when there is no item.
  WasmResult dequeue(uint32_t id, std::string* data);
  void clearForTest();
};

}  // namespace skiff::wasm
