// Envoy's Wasm HTTP filter (envoy.extensions.filters.http.wasm.v3.Wasm) on V8: a PluginVm per worker per
// filter config, a stream context per request, the plugin's failure policy on load failures and traps.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "skiff/filters/http_filter_registry.h"
#include "skiff/http/filter.h"
#include "skiff/stats/stats.h"
#include "wasm/plugin.h"
#include "wasm/property_encoding.h"

namespace skiff::filters::wasm {

inline constexpr std::string_view kFilterName = "envoy.filters.http.wasm";
inline constexpr std::string_view kTypeUrl = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

// Time spent inside the plugin per request phase (Envoy has no such stat), in microseconds:
// <hcm stat prefix>wasm.<plugin name, else vm_id>.<phase>_us.
enum class Phase {
  kRequestHeaders,
  kRequestBody,
  kRequestTrailers,
  kResponseHeaders,
  kResponseBody,
  kResponseTrailers,
  kStreamDone,
  kCount
};

// The validated plugin, shared by all workers; each worker gets its own VM on its first request.
class WasmFilterConfig : public http::FilterFactory, public std::enable_shared_from_this<WasmFilterConfig> {
 public:
  // `load_error` non-empty: the module could not be loaded and the plugin is fail-open (it is bypassed).
  WasmFilterConfig(std::shared_ptr<const skiff::wasm::PluginSpec> spec, stats::Store* stats,
                   std::string load_error, const std::string& stat_prefix = "");
  ~WasmFilterConfig() override;

  void createFilters(http::FilterChainBuilder& builder) const override;
  const skiff::wasm::PluginSpec& spec() const { return *spec_; }
  bool failOpen() const { return spec_->fail_open; }
  bool bypassed() const { return !load_error_.empty(); }
  const stats::Histogram& phaseTime(Phase phase) const { return phase_time_[static_cast<size_t>(phase)]; }
  // Counts a failed VM once: <prefix>wasm.<plugin>.vm_failed, and .execution_timeout when the watchdog
  // stopped it.
  void countFailure(skiff::wasm::PluginVm& vm) const;

  // This worker's VM; a failed (trapped) VM is replaced by a fresh one. nullptr when one cannot be made.
  // Its callouts go out through `callbacks`' worker (loop, clusters, pools).
  std::shared_ptr<skiff::wasm::PluginVm> workerVm(http::StreamCallbacks& callbacks) const;

 private:
  struct Slot {
    std::shared_ptr<skiff::wasm::PluginVm> vm;
  };
  Slot& workerSlot() const;

  std::shared_ptr<const skiff::wasm::PluginSpec> spec_;
  stats::Store* stats_;
  std::string load_error_;
  const uint64_t id_;
  stats::Histogram phase_time_[static_cast<size_t>(Phase::kCount)];
  stats::Counter vm_failed_, execution_timeout_;
  mutable std::mutex mu_;
  mutable std::unordered_map<std::thread::id, std::unique_ptr<Slot>> slots_;
};

// proxy_http_call through the worker's clusters (an HttpCallout per call).
std::unique_ptr<skiff::wasm::CalloutSender> makeCalloutSender(http::StreamCallbacks& callbacks);

// Parses and validates the Wasm proto into a PluginSpec (code read, configuration unwrapped). Throws
// std::invalid_argument naming the field on a bad config.
skiff::wasm::PluginSpec parsePluginConfig(const google::protobuf::Any& config);
http::FilterFactorySharedPtr createWasmFilterFactory(const google::protobuf::Any& config,
                                                     const FactoryContext& context);
void registerWasmFilter();

class WasmFilter : public http::StreamFilter, public skiff::wasm::StreamContext {
 public:
  explicit WasmFilter(std::shared_ptr<const WasmFilterConfig> config);
  ~WasmFilter() override;

  void setDecoderFilterCallbacks(http::DecoderFilterCallbacks& callbacks) override { decoder_ = &callbacks; }
  void setEncoderFilterCallbacks(http::EncoderFilterCallbacks& callbacks) override { encoder_ = &callbacks; }
  http::HeadersStatus decodeHeaders(http::HeaderMap& headers, bool end_stream) override;
  http::DataStatus decodeData(http::Buffer& data, bool end_stream) override;
  http::TrailersStatus decodeTrailers(http::HeaderMap& trailers) override;
  http::HeadersStatus encodeHeaders(http::HeaderMap& headers, bool end_stream) override;
  http::DataStatus encodeData(http::Buffer& data, bool end_stream) override;
  http::TrailersStatus encodeTrailers(http::HeaderMap& trailers) override;
  void onDestroy() override;

  // StreamContext
  http::HeaderMap* headerMap(skiff::wasm::MapType type) override;
  http::Buffer* buffer(skiff::wasm::BufferType type) override;
  void sendLocalResponse(uint32_t status, std::string_view details, std::string_view body,
                         std::vector<std::pair<std::string, std::string>> headers) override;
  skiff::wasm::WasmResult continueStream(skiff::wasm::StreamType type) override;
  skiff::wasm::WasmResult closeStream(skiff::wasm::StreamType type) override;
  std::optional<std::string> property(const std::vector<std::string_view>& path) override;
  skiff::wasm::WasmResult setProperty(std::string_view path, std::string_view value) override;
  void afterRootCall() override;
  void onVmFailure() override;
  void clearRouteCache() override {  // foreign function clear_route_cache (WASM-FEAT)
    if (decoder_ != nullptr) decoder_->clearRouteCache();
  }
  void requestHeaderChanged(std::string_view name, uint64_t version_before) override {
    if (decoder_ != nullptr) decoder_->requestHeaderChanged(name, version_before);
  }

 private:
  enum class Outcome { kContinue, kStop, kFailed };
  struct LocalReply {
    uint32_t status;
    std::string details, body;
    std::vector<std::pair<std::string, std::string>> headers;
  };

  bool ensureContext();
  // Runs one stream callback; returns the guest's status, or nullopt when the filter is (now) bypassed or
  // the stream was answered because of a failure.
  std::optional<uint32_t> run(skiff::wasm::Export e, Phase phase, uint32_t a, uint32_t b, bool request);
  // After a callback: deferred local reply / continue / close. True when a local reply went out.
  bool afterCall(bool request);
  void onFailure();
  http::StreamCallbacks& callbacks() const;

  std::shared_ptr<const WasmFilterConfig> config_;
  std::shared_ptr<skiff::wasm::PluginVm> vm_;
  http::DecoderFilterCallbacks* decoder_ = nullptr;
  http::EncoderFilterCallbacks* encoder_ = nullptr;
  uint32_t context_id_ = 0;
  bool bypass_ = false;     // fail-open after a failure: the rest of the stream passes untouched
  bool responded_ = false;  // a local reply (plugin's or fail-closed) went out
  bool destroyed_ = false;
  http::HeaderMap* request_headers_ = nullptr;
  http::HeaderMap* request_trailers_ = nullptr;
  http::HeaderMap* response_headers_ = nullptr;
  http::HeaderMap* response_trailers_ = nullptr;
  http::Buffer* request_body_ = nullptr;  // only during the body callback
  http::Buffer* response_body_ = nullptr;
  bool decode_stopped_ = false, encode_stopped_ = false;
  bool continue_request_ = false, continue_response_ = false, close_ = false;
  bool deferred_continue_request_ = false, deferred_continue_response_ = false;  // asked in a root callback
  std::optional<LocalReply> reply_;
  skiff::wasm::SetProperties set_properties_;  // proxy_set_property, per stream
};

}  // namespace skiff::filters::wasm
