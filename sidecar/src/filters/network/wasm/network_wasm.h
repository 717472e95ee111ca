// Envoy's Wasm network filter (envoy.extensions.filters.network.wasm.v3.Wasm) in front of tcp_proxy: a
// stream context per connection on the worker's (possibly shared) VM, proxy_on_new_connection,
// proxy_on_downstream_data / proxy_on_upstream_data with the bytes as buffers 2/3 (readable and
// replaceable), the close callbacks, and the plugin's failure policy on traps.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "filters/network/network_filter.h"
#include "wasm/plugin.h"
#include "wasm/property_encoding.h"

namespace skiff::filters::network::wasm {

inline constexpr std::string_view kFilterName = "envoy.filters.network.wasm";
inline constexpr std::string_view kTypeUrl =
    "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm";

// The loaded plugin, shared by all workers; each worker gets its VM on its first connection.
class NetworkWasmConfig : public std::enable_shared_from_this<NetworkWasmConfig> {
 public:
  NetworkWasmConfig(std::shared_ptr<const skiff::wasm::PluginSpec> spec, stats::Store* stats);
  ~NetworkWasmConfig();
  const skiff::wasm::PluginSpec& spec() const { return *spec_; }
  // This worker's VM (a failed one is replaced; a new one gets a callout sender on the connection's
  // worker when the module takes callout answers); nullptr when none can be started.
  std::shared_ptr<skiff::wasm::PluginVm> workerVm(FilterCallbacks& callbacks) const;

 private:
  std::shared_ptr<const skiff::wasm::PluginSpec> spec_;
  stats::Store* stats_;
  const uint64_t id_;
  mutable std::mutex mu_;
  mutable std::unordered_map<std::thread::id, std::shared_ptr<skiff::wasm::PluginVm>> slots_;
};

class NetworkWasmFilter : public Filter, public skiff::wasm::StreamContext {
 public:
  explicit NetworkWasmFilter(std::shared_ptr<const NetworkWasmConfig> config) : config_(std::move(config)) {}
  ~NetworkWasmFilter() override;

  // Filter
  void setCallbacks(FilterCallbacks& callbacks) override { callbacks_ = &callbacks; }
  FilterStatus onNewConnection() override;
  FilterStatus onDownstreamData(std::string& data, bool end_stream) override;
  FilterStatus onUpstreamData(std::string& data, bool end_stream) override;
  void onClose(std::string_view details) override;

  // StreamContext
  http::HeaderMap* headerMap(skiff::wasm::MapType) override { return nullptr; }
  http::Buffer* buffer(skiff::wasm::BufferType type) override;
  void sendLocalResponse(uint32_t, std::string_view, std::string_view,
                         std::vector<std::pair<std::string, std::string>>) override {}
  skiff::wasm::WasmResult continueStream(skiff::wasm::StreamType type) override;
  skiff::wasm::WasmResult closeStream(skiff::wasm::StreamType type) override;
  std::optional<std::string> property(const std::vector<std::string_view>& path) override;
  skiff::wasm::WasmResult setProperty(std::string_view path, std::string_view value) override;
  void onVmFailure() override { onFailure(); }

 private:
  FilterStatus onData(skiff::wasm::Export e, std::string& data, bool end_stream, bool downstream);
  // A trap: fail-open bypasses the rest of the connection, fail-closed closes it. Returns kStop when closed.
  FilterStatus onFailure();
  void finish();

  std::shared_ptr<const NetworkWasmConfig> config_;
  std::shared_ptr<skiff::wasm::PluginVm> vm_;
  FilterCallbacks* callbacks_ = nullptr;
  uint32_t context_id_ = 0;
  bool bypass_ = false;
  bool closed_ = false;
  std::string* downstream_data_ = nullptr;  // only during the data callbacks
  std::string* upstream_data_ = nullptr;
  skiff::wasm::SetProperties set_properties_;
};

// Registers the filter (called with the HTTP filters at start-up).
void registerNetworkWasmFilter();

}  // namespace skiff::filters::network::wasm
