// A plugin's VM on one worker: the module instance, its root context (configured at creation), the stream
// contexts it serves, its tick timer and custom metrics. Host functions reach their state through it.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "skiff/http/filter.h"
#include "skiff/stats/stats.h"
#include "wasm/types.h"
#include "wasm/vm.h"

namespace asio {
class io_context;
}
namespace envoy::config::core::v3 {
class Node;
}

namespace skiff::wasm {

// What a PluginConfig says about the plugin, resolved once (code read, configurations unwrapped).
struct PluginSpec {
  std::string name;
  std::string root_id;
  std::string vm_id;
  std::string code;
  std::string vm_configuration;                                  // buffer 6 in proxy_on_vm_start
  std::string plugin_configuration;                              // buffer 7 in proxy_on_configure
  std::vector<std::pair<std::string, std::string>> environment;  // WASI environ_*
  bool fail_open = false;
};

// What a stream context (the HTTP filter of one request) lets host functions touch. Called only while a
// callback of that stream runs.
class StreamContext {
 public:
  virtual ~StreamContext() = default;
  // The map, or nullptr when it does not exist at this point of the stream.
  virtual http::HeaderMap* headerMap(MapType type) = 0;
  virtual http::Buffer* buffer(BufferType type) = 0;
  // Deferred until the callback returns (the callback's status then becomes Stop).
  virtual void sendLocalResponse(uint32_t status, std::string_view details, std::string_view body,
                                 std::vector<std::pair<std::string, std::string>> headers) = 0;
  virtual WasmResult continueStream(StreamType type) = 0;
  virtual WasmResult closeStream(StreamType type) = 0;
  // A property of the stream (request.*, response.*, source.*, destination.*, connection.*), encoded as
  // the ABI says; nullopt when unknown or unavailable.
  virtual std::optional<std::string> property(const std::vector<std::string_view>& path) = 0;
  // proxy_set_property: a value the stream keeps (Envoy's filter state `wasm.<path>`), readable with
  // proxy_get_property under the same path for the rest of the stream.
  virtual WasmResult setProperty(std::string_view path, std::string_view value) = 0;
};

class PluginVm {
 public:
  // Creates the VM and the root context: start (_initialize/main or _start), proxy_on_context_create,
  // proxy_on_vm_start, proxy_on_configure. nullptr and `error` when any of it fails or returns false.
  // `dispatcher` (may be null at config validation) runs the tick timer.
  static std::unique_ptr<PluginVm> create(std::shared_ptr<const PluginSpec> spec, stats::Store* stats,
                                          asio::io_context* dispatcher, std::string* error);
  ~PluginVm();

  const PluginSpec& spec() const { return *spec_; }
  Vm& vm() { return *vm_; }
  bool failed() const { return vm_->failed(); }
  uint32_t rootId() const { return root_id_; }
  // The worker loop its tick timer runs on (null without one) and whether a tick is pending there; such a
  // VM must be destroyed on that loop's thread.
  asio::io_context* dispatcher() const { return dispatcher_; }
  bool tickArmed() const { return tick_armed_; }

  // A new stream context (proxy_on_context_create(id, root)); 0 if the VM failed.
  uint32_t createStreamContext();
  // Calls a stream callback with `stream` as the target of host functions.
  std::optional<uint32_t> callStream(StreamContext* stream, Export e, std::initializer_list<uint32_t> args);

  // Calls any export by name with `stream` current (tests drive host functions this way).
  std::optional<uint32_t> callForTest(StreamContext* stream, std::string_view name,
                                      std::initializer_list<uint32_t> args);

  // State for host functions.
  StreamContext* currentStream() const { return current_stream_; }
  uint32_t currentContextId() const { return current_id_; }
  // Buffers 6/7 are readable during vm_start/configure only.
  const std::string* configurationBuffer(BufferType type) const;
  void logLine(uint32_t level, std::string_view message);
  WasmResult setTickPeriod(uint32_t ms);
  WasmResult defineMetric(uint32_t type, std::string_view name, uint32_t* id);
  WasmResult incrementMetric(uint32_t id, int64_t offset);
  WasmResult recordMetric(uint32_t id, uint64_t value);
  WasmResult getMetric(uint32_t id, uint64_t* value);
  // Plugin-level properties (plugin_name, plugin_root_id, plugin_vm_id, node.*); nullopt if not one.
  std::optional<std::string> pluginProperty(const std::vector<std::string_view>& path) const;

 private:
  PluginVm() = default;
  void armTick();
  std::optional<uint32_t> callRoot(Export e, std::initializer_list<uint32_t> args);

  struct Metric {
    MetricType type;
    stats::Counter counter;
    stats::Gauge gauge;
    stats::Histogram histogram;
  };

  std::shared_ptr<const PluginSpec> spec_;
  std::unique_ptr<Vm> vm_;
  stats::Store* stats_ = nullptr;
  asio::io_context* dispatcher_ = nullptr;
  uint32_t root_id_ = 1;
  uint32_t next_context_id_ = 2;
  StreamContext* current_stream_ = nullptr;
  uint32_t current_id_ = 0;
  const std::string* config_buffer_ = nullptr;
  BufferType config_buffer_type_ = BufferType::kVmConfiguration;
  std::vector<Metric> metrics_;
  uint32_t tick_ms_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // tick handlers check it (same thread)
  bool tick_armed_ = false;  // a timer is pending on the dispatcher (it owns the timer)
};

// The bootstrap node, for the `node` / `xds.node` properties (set by the server at start-up).
void setLocalNode(const envoy::config::core::v3::Node& node);

}  // namespace skiff::wasm
