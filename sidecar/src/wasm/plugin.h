// A plugin's root context on one worker, in a module instance it may share with other plugins of the same
// VM key (as Envoy shares a VM between root ids): its root context (configured at creation), the stream
// contexts it serves, its tick timer and callouts. Host functions reach their state through it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "skiff/http/filter.h"
#include "skiff/stats/stats.h"
#include "wasm/foreign_functions.h"
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
  // The clear_route_cache foreign function (and ABI 0.1.0's proxy_clear_route_cache): the route is
  // picked again for the (changed) request headers. Nothing to do outside an HTTP stream.
  virtual void clearRouteCache() {}
  // A plugin changed request header `name` (add/replace/remove); the map's version() before the change
  // lets the stream skip the re-match when the route cannot depend on it. Default: clearRouteCache().
  virtual void requestHeaderChanged(std::string_view name, uint64_t version_before) { clearRouteCache(); }
  // A root-context callback (http call response, tick, queue) made this stream effective and acted on
  // it: run what is deferred (local reply, close). Called after that callback returned.
  virtual void afterRootCall() {}
  // The VM failed outside this stream's own callbacks (e.g. in an http call response it waits for):
  // apply the failure policy to the stream.
  virtual void onVmFailure() {}
};

// The answer to a proxy_http_call (headers null: the call failed).
struct HttpCallResponse {
  std::unique_ptr<http::HeaderMap> headers;
  std::string body;
  std::unique_ptr<http::HeaderMap> trailers;
};

// gRPC metadata as (lower-case key, value) pairs in wire order.
using GrpcMetadata = std::vector<std::pair<std::string, std::string>>;

// What comes back on a gRPC callout, in this order: initial metadata?, messages*, trailing metadata?, close
// (exactly once unless cancelled). Called later on the worker loop, never inside the call that started it.
struct GrpcEvents {
  std::function<void(GrpcMetadata)> initial_metadata;
  std::function<void(std::string)> message;
  std::function<void(GrpcMetadata)> trailing_metadata;
  std::function<void(uint32_t status, std::string message)> close;
};

// A gRPC callout in flight; destroying it cancels it (no events after that).
class GrpcCallout {
 public:
  virtual ~GrpcCallout() = default;
  // Streams only: false once the stream no longer takes messages.
  virtual bool send(std::string message, bool end_stream) = 0;
  virtual void closeSend() = 0;
};

struct GrpcRequest {
  std::string service;  // a serialized envoy.config.core.v3.GrpcService, else a cluster name
  std::string service_name, method;
  GrpcMetadata initial_metadata;
  std::optional<std::string> message;  // set: a unary call with this request; else a stream
  std::chrono::milliseconds timeout{0};
};

// Outgoing calls of a root context, sent by the filter layer, which knows the worker's clusters and pools.
class CalloutSender {
 public:
  // proxy_grpc_call / proxy_grpc_stream: Ok with `*call` set; ParseFailure for an unknown cluster or a
  // service that cannot be used; Unimplemented when this sender has no gRPC client.
  virtual WasmResult grpcCall(GrpcRequest request, GrpcEvents events, std::unique_ptr<GrpcCallout>* call) {
    return WasmResult::kUnimplemented;
  }
  virtual ~CalloutSender() = default;
  using HttpDone = std::function<void(HttpCallResponse)>;
  // Ok with `*cancel` set (abandons the call; `done` is then never called). BadArgument for an unknown
  // cluster, InternalFailure when it cannot be sent. `done` is never called from inside httpCall().
  virtual WasmResult httpCall(const std::string& cluster, http::HeaderMap headers, std::string body,
                              std::chrono::milliseconds timeout, HttpDone done,
                              std::function<void()>* cancel) = 0;
};

// A custom metric (proxy_define_metric); ids are per module instance, as in Envoy.
struct CustomMetric {
  MetricType type;
  stats::Counter counter;
  stats::Gauge gauge;
  stats::Histogram histogram;
};

class PluginVm;

// One module instance on one worker, shared by the root contexts of every plugin with the same VM key
// (vm_id, runtime, code hash, vm configuration, environment): module globals are common to them, context
// ids and metric ids are allocated VM-wide. Counted in wasm.envoy.wasm.runtime.v8.{created,active}.
struct SharedVm {
  ~SharedVm();
  std::unique_ptr<Vm> vm;
  std::string key;
  void* owner = nullptr;  // the worker loop it is registered for (null: private to one plugin)
  uint32_t next_context_id = 1;
  bool ids_wrapped = false;        // next_context_id went past 2^32-1: new ids must skip the ones in use
  std::vector<PluginVm*> plugins;  // the root contexts living in it
  std::vector<CustomMetric> metrics;
  stats::Gauge active;
};

class PluginVm {
 public:
  // Creates the root context: proxy_on_context_create, proxy_on_vm_start, proxy_on_configure, in a VM that
  // is started first (_initialize/main or _start) unless one is shared. nullptr and `error` when any of it
  // fails or returns false. With a `dispatcher` (a worker loop; null at config validation, where every
  // plugin gets a VM of its own) the VM is shared with the other live plugins of the same vmKey() on that
  // loop, and the plugin must be destroyed on that loop's thread. It runs the tick timer; `sender` (may be
  // null) sends its proxy_http_call requests.
  static std::unique_ptr<PluginVm> create(std::shared_ptr<const PluginSpec> spec, stats::Store* stats,
                                          asio::io_context* dispatcher, std::string* error,
                                          std::unique_ptr<CalloutSender> sender = nullptr);
  ~PluginVm();

  const PluginSpec& spec() const { return *spec_; }
  Vm& vm() { return *vm_; }
  // Envoy's VM key: SHA-256 (hex) over vm_id, runtime, code, vm configuration (and, unlike Envoy, the
  // environment variables, which a shared VM could only take from one plugin).
  static std::string vmKey(const PluginSpec& spec);
  // The root contexts (plugins) living in this plugin's VM, this one included.
  size_t sharedRootContexts() const { return shared_->plugins.size(); }
  bool failed() const { return vm_->failed(); }
  // Inside a root callback (HTTP call answer, tick, queue): streams it acts on resume after it returns.
  bool inRootCallback() const { return in_root_async_; }
  // True the first time it is asked after the VM failed (so a failure is counted once).
  bool claimFailure() {
    if (!vm_->failed() || failure_claimed_) return false;
    failure_claimed_ = true;
    return true;
  }
  uint32_t rootId() const { return root_id_; }
  // The worker loop its tick timer runs on (null without one) and whether a tick is pending there; such a
  // VM must be destroyed on that loop's thread.
  asio::io_context* dispatcher() const { return dispatcher_; }
  // False once that loop has been destroyed (process shutdown): nothing may be posted to it any more.
  bool dispatcherAlive() const { return dispatcher_alive_ && *dispatcher_alive_; }
  bool tickArmed() const { return tick_armed_; }
  // Work of this VM is pending on its loop (tick, callouts, a queue it owns): destroy it on that thread.
  // A VM shared on a worker is always bound: another plugin may use it there at any time.
  bool bound() const {
    return shared_->owner != nullptr || tick_armed_ || owns_queue_ || !pending_calls_.empty() ||
           !grpc_calls_.empty();
  }
  void markQueueOwner() { owns_queue_ = true; }

  // A new stream context (proxy_on_context_create(id, root)); 0 if the VM failed. `stream` can be made
  // effective by root-context callbacks (proxy_set_effective_context) until detachStream(id).
  uint32_t createStreamContext(StreamContext* stream = nullptr);
  void detachStream(uint32_t id);
  // Calls a stream callback with `stream` as the target of host functions.
  std::optional<uint32_t> callStream(StreamContext* stream, Export e, std::initializer_list<uint32_t> args);

  // Tests: the next context id the shared VM hands out (to drive the id wrap-around).
  void setNextContextIdForTest(uint32_t id) {
    shared_->next_context_id = id;
    shared_->ids_wrapped = true;
  }

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
  // proxy_set_effective_context: the root or an attached stream becomes the target of host functions.
  WasmResult setEffectiveContext(uint32_t id);

  // proxy_http_call (headers already checked). Token in `*token`; the answer comes as
  // proxy_on_http_call_response on the root context.
  void setCalloutSender(std::unique_ptr<CalloutSender> sender) { sender_ = std::move(sender); }
  // The module can take callout answers but has no sender yet (the filter installs one from its worker).
  bool wantsCalloutSender() const {
    return sender_ == nullptr &&
           (vm_->hasExport(Export::kOnHttpCallResponse) || vm_->hasExport(Export::kOnGrpcClose) ||
            vm_->hasExport(Export::kOnGrpcReceive));
  }
  WasmResult httpCall(const std::string& cluster, http::HeaderMap headers, std::string body,
                      uint32_t timeout_ms, uint32_t* token);
  // gRPC callouts (tokens: low 2 bits 1 = call, 2 = stream). Answers arrive as proxy_on_grpc_* on the root
  // context; the metadata (maps 4/5) and the message (buffer 5) are readable during those callbacks.
  WasmResult grpcCall(GrpcRequest request, uint32_t* token);
  WasmResult grpcSend(uint32_t token, std::string message, bool end_stream);
  WasmResult grpcCancel(uint32_t token);
  WasmResult grpcClose(uint32_t token);
  const http::HeaderMap* grpcMetadata(MapType type) const {
    return type == MapType::kGrpcInitialMetadata    ? grpc_initial_metadata_
           : type == MapType::kGrpcTrailingMetadata ? grpc_trailing_metadata_
                                                    : nullptr;
  }
  const std::string* grpcReceiveBuffer() const { return grpc_message_; }
  // The response being delivered to proxy_on_http_call_response (maps 6/7, buffer 4), else nullptr.
  const HttpCallResponse* httpCallResponse() const { return http_response_; }
  // proxy_get_status: the status of the last callout answered.
  uint32_t statusCode() const { return status_code_; }
  const std::string& statusMessage() const { return status_message_; }
  size_t pendingCalls() const { return pending_calls_.size(); }

  // Shared queues: proxy_on_queue_ready for a queue this VM registered (on this VM's thread).
  void onQueueReady(uint32_t queue_id);
  // A weak handle that expires with this PluginVm (for work posted to its thread).
  std::weak_ptr<bool> aliveToken() const { return alive_; }
  WasmResult defineMetric(uint32_t type, std::string_view name, uint32_t* id);
  WasmResult incrementMetric(uint32_t id, int64_t offset);
  WasmResult recordMetric(uint32_t id, uint64_t value);
  WasmResult getMetric(uint32_t id, uint64_t* value);
  // Plugin-level properties (plugin_name, plugin_root_id, plugin_vm_id, node.*); nullopt if not one.
  std::optional<std::string> pluginProperty(const std::vector<std::string_view>& path) const;
  // declare_property (foreign function), per root context as in Envoy: BadArgument when `name` was
  // declared before. A read-only declared property can be set once per stream.
  WasmResult declareProperty(std::string name, DeclaredProperty property);
  const DeclaredProperty* declaredProperty(std::string_view name) const {
    for (const auto& [n, p] : declared_) {
      if (n == name) return &p;
    }
    return nullptr;
  }

 private:
  PluginVm() = default;
  void armTick();
  std::optional<uint32_t> callRoot(Export e, std::initializer_list<uint32_t> args);
  // A root callback from the event loop (http response, tick, queue): afterwards the streams it acted on
  // run their deferred work; when it failed the VM, every attached stream gets the failure policy.
  void callRootAsync(Export e, std::initializer_list<uint32_t> args);
  void onHttpCallDone(uint32_t token, HttpCallResponse response);
  void onGrpcClose(uint32_t token, uint32_t status, std::string message);
  StreamContext* findStream(uint32_t id) const;
  // A context id not in use in the shared VM (never 0, no root or attached stream of any plugin in it).
  uint32_t nextContextId();
  // Finds this worker's live VM of the same key, or creates and starts one.
  bool attachVm(asio::io_context* dispatcher, std::string* error);
  // Makes this plugin the target of host functions for a guest call; returns the previous one.
  PluginVm* enter() {
    PluginVm* prev = vm_->host();
    vm_->setHost(this);
    return prev;
  }

  std::shared_ptr<const PluginSpec> spec_;
  std::shared_ptr<SharedVm> shared_;
  Vm* vm_ = nullptr;  // shared_->vm
  stats::Store* stats_ = nullptr;
  asio::io_context* dispatcher_ = nullptr;
  std::shared_ptr<const bool> dispatcher_alive_;
  uint32_t root_id_ = 1;
  StreamContext* current_stream_ = nullptr;
  uint32_t current_id_ = 0;
  const std::string* config_buffer_ = nullptr;
  BufferType config_buffer_type_ = BufferType::kVmConfiguration;
  uint32_t tick_ms_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // tick handlers check it (same thread)
  bool tick_armed_ = false;  // a timer is pending on the dispatcher (it owns the timer)
  std::vector<std::pair<uint32_t, StreamContext*>> streams_;  // attached stream contexts (few per worker)
  std::vector<uint32_t> touched_;  // streams made effective during the current root callback
  bool in_root_async_ = false;
  bool owns_queue_ = false;
  bool failure_claimed_ = false;
  std::unique_ptr<CalloutSender> sender_;
  uint32_t next_token_ = 4;  // tokens step by 4; low 2 bits 0 = HTTP call
  std::vector<std::pair<uint32_t, std::function<void()>>> pending_calls_;  // token → cancel
  const HttpCallResponse* http_response_ = nullptr;
  std::vector<std::pair<uint32_t, std::unique_ptr<GrpcCallout>>> grpc_calls_;  // token → call or stream
  const http::HeaderMap* grpc_initial_metadata_ = nullptr;                     // during the callbacks only
  const http::HeaderMap* grpc_trailing_metadata_ = nullptr;
  const std::string* grpc_message_ = nullptr;
  uint32_t status_code_ = 0;
  std::string status_message_;
  std::vector<std::pair<std::string, DeclaredProperty>> declared_;  // declare_property (few)
};

// The bootstrap node, for the `node` / `xds.node` properties (set by the server at start-up).
void setLocalNode(const envoy::config::core::v3::Node& node);

}  // namespace skiff::wasm
