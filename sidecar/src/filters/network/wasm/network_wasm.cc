// The Wasm network filter: config (local or remote code, failure policy), per-worker VMs, and the
// connection context mapping tcp_proxy's byte streams to proxy_on_* callbacks.
#include "filters/network/wasm/network_wasm.h"

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <atomic>
#include <cstring>

#include "envoy/extensions/filters/network/wasm/v3/wasm.pb.h"
#include "filters/http/wasm/wasm_callouts.h"
#include "filters/http/wasm/wasm_plugin_config.h"
#include "skiff/common/init_target.h"
#include "skiff/common/logging.h"
#include "wasm/property_encoding.h"

namespace skiff::filters::network::wasm {

using skiff::wasm::BufferType;
using skiff::wasm::Export;
using skiff::wasm::int64Bytes;
using skiff::wasm::PluginSpec;
using skiff::wasm::PluginVm;
using skiff::wasm::portOf;
using skiff::wasm::StreamType;
using skiff::wasm::WasmResult;

namespace {

std::atomic<uint64_t> g_next_config_id{1};

// proxy-wasm PeerType: who closed the connection.
constexpr uint32_t kPeerLocal = 1, kPeerRemote = 2;

// Closes every connection at once: a fail-closed plugin whose code is not there.
class FailClosedFilter : public Filter {
 public:
  void setCallbacks(FilterCallbacks& callbacks) override { callbacks_ = &callbacks; }
  FilterStatus onNewConnection() override {
    callbacks_->closeConnection("wasm_fail_stream");
    return FilterStatus::kStop;
  }

 private:
  FilterCallbacks* callbacks_ = nullptr;
};

class NetworkWasmFactory : public FilterFactory {
 public:
  explicit NetworkWasmFactory(bool fail_open) : fail_open_(fail_open) {}
  std::unique_ptr<Filter> createFilter() const override {
    if (auto config = pending_.ready()) return std::make_unique<NetworkWasmFilter>(std::move(config));
    if (fail_open_) return nullptr;
    return std::make_unique<FailClosedFilter>();
  }
  filters::wasm::PendingConfig<NetworkWasmConfig>& pending() { return pending_; }
  bool runsBeforeHcm() const override { return true; }

 private:
  const bool fail_open_;
  filters::wasm::PendingConfig<NetworkWasmConfig> pending_;
};

// Like the HTTP filter: the plugin is started and configured once on the main thread.
std::string validatePlugin(const std::shared_ptr<PluginSpec>& spec, stats::Store* stats) {
  std::string error = spec->code.empty() ? "no code" : "";
  if (error.empty() && PluginVm::create(spec, stats, nullptr, &error)) error.clear();
  return error;
}

FilterFactorySharedPtr createFactory(const google::protobuf::Any& any, stats::Store& stats,
                                     const std::string& path) {
  envoy::extensions::filters::network::wasm::v3::Wasm proto;
  if (!any.UnpackTo(&proto)) {
    throw std::invalid_argument(path +
                                ".typed_config: cannot decode envoy.extensions.filters.network.wasm.v3.Wasm");
  }
  // Istio's null-VM built-ins (stats, metadata exchange) are telemetry: skipped, as before.
  if (proto.config().vm_config().runtime() == "envoy.wasm.runtime.null") return nullptr;
  std::optional<skiff::wasm::RemoteSource> remote;
  auto spec = std::make_shared<PluginSpec>(filters::wasm::parsePluginProto(proto.config(), path, &remote));
  auto factory = std::make_shared<NetworkWasmFactory>(spec->fail_open);
  stats::Store* store = &stats;
  // With code.remote the listener being built warms until the code is loaded or the fetch failed for good.
  std::function<void()> warmed = [] {};
  if (auto* targets = init::InitScope::current(); targets && remote) {
    warmed = targets->add(filters::wasm::remoteTargetName(spec->name));
  }
  auto loaded = [weak = std::weak_ptr<NetworkWasmFactory>(factory), store, warmed](
                    std::shared_ptr<PluginSpec> s, std::string error) {
    struct Warmed {
      std::function<void()> done;
      ~Warmed() { done(); }  // after the config is set (or failed), on every path
    } at_exit{warmed};
    auto f = weak.lock();
    if (!f) return;
    if (error.empty()) error = validatePlugin(s, store);
    if (!error.empty()) {
      SKIFF_LOG(
          kWasm, err, "wasm plugin {}: unable to create Wasm network filter: {}; {}", s->name, error,
          s->fail_open ? "fail_open, the filter is bypassed" : "fail closed, its connections are closed");
      f->pending().fail();
      return;
    }
    f->pending().set(std::make_shared<NetworkWasmConfig>(std::move(s), store));
  };
  if (remote) {
    if (!filters::wasm::loadRemoteCode(spec, *remote, loaded)) {
      SKIFF_LOG(kWasm, warn, "wasm plugin {}: code.remote is not fetched here (no remote loader)",
                spec->name);
      warmed();
    }
    return factory;
  }
  const std::string error = validatePlugin(spec, store);
  if (!error.empty() && !spec->fail_open) {
    throw std::invalid_argument(path + ": unable to create Wasm network filter '" + spec->name +
                                "': " + error);
  }
  loaded(spec, error);
  return factory;
}

}  // namespace

// ---- config ----

NetworkWasmConfig::NetworkWasmConfig(std::shared_ptr<const PluginSpec> spec, stats::Store* stats)
    : spec_(std::move(spec)), stats_(stats), id_(g_next_config_id++) {}

NetworkWasmConfig::~NetworkWasmConfig() {
  // Worker VMs are destroyed on their worker (another plugin may share the VM there).
  for (auto& [thread, vm] : slots_) {
    if (vm && vm->dispatcherAlive()) {
      // The loop is read before the VM is moved into the handler: argument order is unspecified.
      asio::io_context& loop = *vm->dispatcher();
      asio::post(loop, [vm = std::move(vm)]() mutable { vm.reset(); });
    }
  }
}

std::shared_ptr<PluginVm> NetworkWasmConfig::workerVm(FilterCallbacks& callbacks) const {
  // A per-thread cache keeps the lock off the connection path; config ids are never reused.
  thread_local std::unordered_map<uint64_t, std::shared_ptr<PluginVm>*> cache;
  std::shared_ptr<PluginVm>* slot;
  auto it = cache.find(id_);
  if (it != cache.end()) {
    slot = it->second;
  } else {
    std::lock_guard<std::mutex> lock(mu_);
    slot = &slots_[std::this_thread::get_id()];
    cache[id_] = slot;
  }
  if (*slot && !(*slot)->failed()) return *slot;
  if (*slot) SKIFF_LOG(kWasm, warn, "wasm plugin {}: replacing the failed VM", spec_->name);
  std::string error;
  std::unique_ptr<PluginVm> vm = PluginVm::create(spec_, stats_, &callbacks.dispatcher(), &error);
  if (!vm) {
    SKIFF_LOG(kWasm, err, "wasm plugin {}: cannot start the VM: {}", spec_->name, error);
    slot->reset();
    return nullptr;
  }
  // As the HTTP filter: a module that can take callout answers gets the worker's clusters and pools.
  if (vm->wantsCalloutSender() && callbacks.clusterManager() != nullptr && callbacks.connPools() != nullptr) {
    vm->setCalloutSender(filters::wasm::makeCalloutSender(
        filters::CalloutTarget{&callbacks.dispatcher(), callbacks.clusterManager(), callbacks.connPools()}));
  }
  *slot = std::move(vm);
  return *slot;
}

// ---- filter ----

NetworkWasmFilter::~NetworkWasmFilter() {
  finish();
}

FilterStatus NetworkWasmFilter::onFailure() {
  const std::string why = vm_ ? vm_->vm().error() : std::string("the VM could not be started");
  SKIFF_LOG(kWasm, err, "wasm plugin {}: {}", config_->spec().name, why);
  bypass_ = true;  // nothing more of this connection goes to the plugin
  if (config_->spec().fail_open) {
    // A chain this filter stopped goes on (the VM failed in a root callback it was waiting for).
    if (callbacks_ != nullptr && !closed_) callbacks_->continueReading(*this);
    return FilterStatus::kContinue;
  }
  if (callbacks_ != nullptr && !closed_) callbacks_->closeConnection("wasm_fail_stream");
  return FilterStatus::kStop;
}

FilterStatus NetworkWasmFilter::onNewConnection() {
  vm_ = config_->workerVm(*callbacks_);
  if (vm_) context_id_ = vm_->createStreamContext(this);
  if (context_id_ == 0) return onFailure();
  auto r = vm_->callStream(this, Export::kOnNewConnection, {context_id_});
  if (!r && vm_->failed()) return onFailure();
  // Pause holds the upstream connect until proxy_continue_stream (Envoy's StopIteration).
  return r.value_or(0) == 0 ? FilterStatus::kContinue : FilterStatus::kStop;
}

FilterStatus NetworkWasmFilter::onData(Export e, std::string& data, bool end_stream, bool downstream) {
  if (bypass_ || closed_ || context_id_ == 0) return FilterStatus::kContinue;
  (downstream ? downstream_data_ : upstream_data_) = &data;
  auto r = vm_->callStream(this, e, {context_id_, static_cast<uint32_t>(data.size()), end_stream ? 1u : 0u});
  downstream_data_ = upstream_data_ = nullptr;
  if (!r && vm_->failed()) return onFailure();
  // 0 is Continue; anything else stops (the bytes come again with the next ones).
  return r.value_or(0) == 0 ? FilterStatus::kContinue : FilterStatus::kStop;
}

FilterStatus NetworkWasmFilter::onDownstreamData(std::string& data, bool end_stream) {
  return onData(Export::kOnDownstreamData, data, end_stream, true);
}

FilterStatus NetworkWasmFilter::onUpstreamData(std::string& data, bool end_stream) {
  return onData(Export::kOnUpstreamData, data, end_stream, false);
}

void NetworkWasmFilter::onClose(std::string_view details) {
  if (vm_ && context_id_ != 0 && !bypass_ && !vm_->failed()) {
    const bool local = details.starts_with("wasm") || details == "closed by proxy" ||
                       details.find("timeout") != std::string_view::npos ||
                       details.find("duration") != std::string_view::npos;
    const uint32_t peer = local ? kPeerLocal : kPeerRemote;
    vm_->callStream(this, Export::kOnDownstreamConnectionClose, {context_id_, peer});
    vm_->callStream(this, Export::kOnUpstreamConnectionClose, {context_id_, peer});
  }
  finish();
}

void NetworkWasmFilter::finish() {
  if (closed_) return;
  closed_ = true;
  if (vm_ && context_id_ != 0 && !vm_->failed()) {
    auto done = vm_->callStream(this, Export::kOnDone, {context_id_});
    vm_->callStream(this, Export::kOnLog, {context_id_});
    if (!done || *done != 0 || !vm_->vm().hasExport(Export::kOnDone)) {
      vm_->callStream(this, Export::kOnDelete, {context_id_});
    }
  }
  if (vm_ && context_id_ != 0) vm_->detachStream(context_id_);
  vm_.reset();
}

// ---- StreamContext ----

http::Buffer* NetworkWasmFilter::buffer(BufferType type) {
  if (type == BufferType::kDownstreamData) return downstream_data_;
  if (type == BufferType::kUpstreamData) return upstream_data_;
  return nullptr;
}

WasmResult NetworkWasmFilter::continueStream(StreamType type) {
  switch (type) {
    case StreamType::kDownstream:
      // The held bytes (and a held upstream connect) go on at once, after the current callback.
      if (callbacks_ != nullptr && !closed_) callbacks_->continueReading(*this);
      return WasmResult::kOk;
    case StreamType::kUpstream:
      return WasmResult::kUnimplemented;  // as Envoy
    default:
      return WasmResult::kBadArgument;
  }
}

WasmResult NetworkWasmFilter::closeStream(StreamType type) {
  if (type != StreamType::kDownstream && type != StreamType::kUpstream) return WasmResult::kBadArgument;
  if (callbacks_ != nullptr && !closed_) {
    callbacks_->closeConnection(type == StreamType::kDownstream ? "wasm_downstream_close"
                                                                : "wasm_upstream_close");
  }
  return WasmResult::kOk;
}

WasmResult NetworkWasmFilter::setProperty(std::string_view path, std::string_view value) {
  return set_properties_.set(path, value) ? WasmResult::kOk : WasmResult::kBadArgument;
}

std::optional<std::string> NetworkWasmFilter::property(const std::vector<std::string_view>& path) {
  if (path.empty() || callbacks_ == nullptr) return std::nullopt;
  if (const std::string* set = set_properties_.find(path)) return *set;
  const http::StreamInfo& info = callbacks_->streamInfo();
  const std::string_view top = path[0];
  if (top == "connection_id" && path.size() == 1) return int64Bytes(static_cast<int64_t>(info.connection_id));
  if (path.size() != 2) return std::nullopt;
  const std::string_view field = path[1];
  if (top == "source" || top == "destination" || top == "upstream") {
    const std::string& address = top == "source"        ? info.downstream_remote_address
                                 : top == "destination" ? info.downstream_local_address
                                                        : info.upstream_host;
    if (address.empty()) return std::nullopt;
    if (field == "address") return address;
    if (field == "port") {
      auto port = portOf(address);
      if (port) return int64Bytes(*port);
    }
    return std::nullopt;
  }
  if (top == "connection") {
    if (field == "id") return int64Bytes(static_cast<int64_t>(info.connection_id));
    if (field == "requested_server_name") return info.requested_server_name;
    return std::nullopt;
  }
  if (top == "xds" && field == "cluster_name") return info.upstream_cluster;
  return std::nullopt;
}

void registerNetworkWasmFilter() {
  registerNetworkFilter(FilterRegistration{std::string(kFilterName), std::string(kTypeUrl), createFactory});
}

}  // namespace skiff::filters::network::wasm
