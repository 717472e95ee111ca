// PluginVm: VM start-up and root context, stream context ids, tick timer, custom metrics, plugin-level
// properties and the plugin's log lines.
#include "wasm/plugin.h"

#include <openssl/sha.h>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include <algorithm>
#include <mutex>
#include <unordered_map>

#include "envoy/config/core/v3/base.pb.h"
#include "skiff/common/logging.h"

namespace skiff::wasm {
namespace {

struct LocalNode {
  std::mutex mu;
  envoy::config::core::v3::Node node;
};
LocalNode& localNode() {
  static LocalNode* n = new LocalNode();
  return *n;
}

}  // namespace

void setLocalNode(const envoy::config::core::v3::Node& node) {
  LocalNode& n = localNode();
  std::lock_guard<std::mutex> lock(n.mu);
  n.node = node;
}

namespace {

// A Struct value as the ABI encodes it: strings raw, numbers as 8-byte doubles, bools as one byte, anything
// else as the serialized protobuf Value.
std::string encodeValue(const google::protobuf::Value& v) {
  switch (v.kind_case()) {
    case google::protobuf::Value::kStringValue:
      return v.string_value();
    case google::protobuf::Value::kNumberValue: {
      const double d = v.number_value();
      return std::string(reinterpret_cast<const char*>(&d), sizeof(d));
    }
    case google::protobuf::Value::kBoolValue:
      return std::string(1, v.bool_value() ? '\1' : '\0');
    default:
      return v.SerializeAsString();
  }
}

// Flips a flag when its io_context is destroyed (services shut down first), so that a VM outliving its
// worker's loop (shutdown: listener configs are released after the loop) is not posted to a dead loop.
class LoopLifetime : public asio::execution_context::service {
 public:
  static inline asio::execution_context::id id;
  explicit LoopLifetime(asio::execution_context& ctx) : service(ctx) {}
  void shutdown() override { *alive = false; }
  const std::shared_ptr<bool> alive = std::make_shared<bool>(true);
};

}  // namespace

namespace {

std::string hex(const unsigned char* data, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kDigits[data[i] >> 4]);
    out.push_back(kDigits[data[i] & 15]);
  }
  return out;
}

// This worker's shared VMs by key (weak: a VM lives as long as a plugin uses it).
thread_local std::unordered_map<std::string, std::weak_ptr<SharedVm>> t_shared_vms;

constexpr std::string_view kRuntimeStatPrefix = "wasm.envoy.wasm.runtime.v8.";

}  // namespace

SharedVm::~SharedVm() {
  if (active.valid()) active.dec();
}

std::string PluginVm::vmKey(const PluginSpec& spec) {
  SHA256_CTX ctx;
  SHA256_Init(&ctx);
  // Length-prefixed fields, so that no two different specs hash the same bytes.
  auto add = [&ctx](std::string_view field) {
    const uint64_t n = field.size();
    SHA256_Update(&ctx, &n, sizeof(n));
    SHA256_Update(&ctx, field.data(), field.size());
  };
  add(spec.vm_id);
  add("envoy.wasm.runtime.v8");
  add(spec.code);
  add(spec.vm_configuration);
  for (const auto& [k, v] : spec.environment) {
    add(k);
    add(v);
  }
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256_Final(digest, &ctx);
  return hex(digest, sizeof(digest));
}

bool PluginVm::attachVm(asio::io_context* dispatcher, std::string* error) {
  std::string key;
  if (dispatcher != nullptr) {
    key = vmKey(*spec_);
    auto it = t_shared_vms.find(key);
    if (it != t_shared_vms.end()) {
      auto existing = it->second.lock();
      if (existing && existing->owner == dispatcher && !existing->vm->failed()) shared_ = std::move(existing);
    }
  }
  if (!shared_) {
    auto shared = std::make_shared<SharedVm>();
    shared->vm = Vm::create(spec_->code, this, error);
    if (!shared->vm) return false;
    shared->key = key;
    if (stats_ != nullptr) {
      stats_->counter(std::string(kRuntimeStatPrefix) + "created").inc();
      shared->active = stats_->gauge(std::string(kRuntimeStatPrefix) + "active");
      shared->active.inc();
    }
    Vm& vm = *shared->vm;
    // Start-up code (C++ global constructors) may already call host functions such as
    // proxy_define_metric, which reach the shared VM through shared_/vm_: attach before running it.
    shared_ = shared;
    vm_ = &vm;
    shared->plugins.push_back(this);
    auto fail = [&](const std::string& what) {
      *error = what + (vm.failed() ? ": " + vm.error() : "");
      shared->plugins.clear();
      vm_ = nullptr;
      shared_.reset();
      return false;
    };
    // Reactor modules export _initialize (and maybe main); command modules export _start.
    if (vm.hasExport(Export::kInitialize)) {
      if (!vm.call(Export::kInitialize, {})) return fail("_initialize failed");
      if (vm.hasExport(Export::kMain) && !vm.call(Export::kMain, {0, 0})) return fail("main failed");
    } else if (vm.hasExport(Export::kStart)) {
      if (!vm.call(Export::kStart, {})) return fail("_start failed");
    }
    if (dispatcher != nullptr) {
      shared->owner = dispatcher;
      // Drop entries of VMs that are gone, then register this one (a failed one is replaced).
      for (auto it = t_shared_vms.begin(); it != t_shared_vms.end();) {
        it = it->second.expired() ? t_shared_vms.erase(it) : std::next(it);
      }
      t_shared_vms[key] = shared;
    }
  } else {
    vm_ = shared_->vm.get();
    shared_->plugins.push_back(this);
  }
  root_id_ = 0;  // not in use yet: nextContextId() must not see this plugin's placeholder
  root_id_ = nextContextId();
  return true;
}

std::unique_ptr<PluginVm> PluginVm::create(std::shared_ptr<const PluginSpec> spec, stats::Store* stats,
                                           asio::io_context* dispatcher, std::string* error,
                                           std::unique_ptr<CalloutSender> sender) {
  std::unique_ptr<PluginVm> p(new PluginVm());
  p->sender_ = std::move(sender);
  p->spec_ = std::move(spec);
  p->stats_ = stats;
  p->dispatcher_ = dispatcher;
  if (dispatcher != nullptr) p->dispatcher_alive_ = asio::use_service<LoopLifetime>(*dispatcher).alive;
  if (!p->attachVm(dispatcher, error)) return nullptr;
  Vm& vm = *p->vm_;
  auto fail = [&](const std::string& what) {
    *error = what + (vm.failed() ? ": " + vm.error() : "");
    return nullptr;
  };
  if (!p->callRoot(Export::kOnContextCreate, {p->root_id_, 0})) {
    if (vm.failed()) return fail("proxy_on_context_create failed");
  }
  p->config_buffer_ = &p->spec_->vm_configuration;
  p->config_buffer_type_ = BufferType::kVmConfiguration;
  if (vm.hasExport(Export::kOnVmStart)) {
    auto ok = p->callRoot(Export::kOnVmStart,
                          {p->root_id_, static_cast<uint32_t>(p->spec_->vm_configuration.size())});
    if (!ok || *ok == 0) return fail("proxy_on_vm_start returned false");
  }
  p->config_buffer_ = &p->spec_->plugin_configuration;
  p->config_buffer_type_ = BufferType::kPluginConfiguration;
  if (vm.hasExport(Export::kOnConfigure)) {
    auto ok = p->callRoot(Export::kOnConfigure,
                          {p->root_id_, static_cast<uint32_t>(p->spec_->plugin_configuration.size())});
    if (!ok || *ok == 0) return fail("proxy_on_configure returned false");
  }
  p->config_buffer_ = nullptr;
  return p;
}

PluginVm::~PluginVm() {
  // A pending tick handler holds its timer; it sees alive_ expire and does not re-arm. Queue-ready
  // handlers posted to this thread check it too.
  *alive_ = false;
  auto pending = std::move(pending_calls_);
  for (auto& [token, cancel] : pending) cancel();
  auto grpc_calls = std::move(grpc_calls_);
  grpc_calls.clear();          // cancelled: no events after this
  if (vm_ == nullptr) return;  // no VM could be made
  if (!vm_->failed()) {
    callRoot(Export::kOnDone, {root_id_});
    callRoot(Export::kOnDelete, {root_id_});
  }
  auto& plugins = shared_->plugins;
  plugins.erase(std::remove(plugins.begin(), plugins.end(), this), plugins.end());
  if (vm_->host() == this) vm_->setHost(plugins.empty() ? nullptr : plugins.front());
}

std::optional<uint32_t> PluginVm::callRoot(Export e, std::initializer_list<uint32_t> args) {
  StreamContext* saved_stream = current_stream_;
  uint32_t saved_id = current_id_;
  current_stream_ = nullptr;
  current_id_ = root_id_;
  PluginVm* prev = enter();
  auto r = vm_->call(e, args);
  vm_->setHost(prev);
  current_stream_ = saved_stream;
  current_id_ = saved_id;
  return r;
}

uint32_t PluginVm::createStreamContext(StreamContext* stream) {
  if (vm_->failed()) return 0;
  // Context ids are unique in the VM (the SDKs keep one table of contexts per module instance).
  const uint32_t id = nextContextId();
  auto r = callStream(nullptr, Export::kOnContextCreate, {id, root_id_});
  if (!r && vm_->failed()) return 0;
  if (stream != nullptr) streams_.emplace_back(id, stream);
  return id;
}

uint32_t PluginVm::nextContextId() {
  for (;;) {
    const uint32_t id = shared_->next_context_id++;
    if (id == 0) {
      shared_->ids_wrapped = true;
      continue;
    }
    // Until the counter wraps, ids only grow and cannot be in use; afterwards skip roots and live streams.
    if (!shared_->ids_wrapped) return id;
    bool in_use = false;
    for (const PluginVm* p : shared_->plugins) {
      if (p->root_id_ == id || p->findStream(id) != nullptr) {
        in_use = true;
        break;
      }
    }
    if (!in_use) return id;
  }
}

void PluginVm::detachStream(uint32_t id) {
  for (size_t i = 0; i < streams_.size(); ++i) {
    if (streams_[i].first == id) {
      streams_[i] = streams_.back();
      streams_.pop_back();
      return;
    }
  }
}

StreamContext* PluginVm::findStream(uint32_t id) const {
  for (const auto& [sid, stream] : streams_) {
    if (sid == id) return stream;
  }
  return nullptr;
}

WasmResult PluginVm::setEffectiveContext(uint32_t id) {
  if (id == root_id_) {
    current_stream_ = nullptr;
    current_id_ = id;
    return WasmResult::kOk;
  }
  if (id == current_id_) return WasmResult::kOk;
  StreamContext* stream = findStream(id);
  if (stream == nullptr) return WasmResult::kBadArgument;
  current_stream_ = stream;
  current_id_ = id;
  if (in_root_async_) touched_.push_back(id);
  return WasmResult::kOk;
}

void PluginVm::callRootAsync(Export e, std::initializer_list<uint32_t> args) {
  in_root_async_ = true;
  touched_.clear();
  callRoot(e, args);
  in_root_async_ = false;
  if (vm_->failed()) {
    SKIFF_LOG(kWasm, err, "wasm plugin {}: {}", spec_->name, vm_->error());
    // Streams waiting on this VM, in every plugin sharing it, get the failure policy (copied: a stream may
    // detach, or a plugin go, while handling it).
    const auto plugins = shared_->plugins;
    for (PluginVm* plugin : plugins) {
      if (std::find(shared_->plugins.begin(), shared_->plugins.end(), plugin) == shared_->plugins.end()) {
        continue;
      }
      auto streams = plugin->streams_;
      for (const auto& [id, stream] : streams) {
        if (plugin->findStream(id) == stream) stream->onVmFailure();
      }
    }
    return;
  }
  auto touched = std::move(touched_);
  touched_.clear();
  for (uint32_t id : touched) {
    if (StreamContext* stream = findStream(id)) stream->afterRootCall();
  }
}

WasmResult PluginVm::httpCall(const std::string& cluster, http::HeaderMap headers, std::string body,
                              uint32_t timeout_ms, uint32_t* token) {
  if (sender_ == nullptr) return WasmResult::kInternalFailure;  // config-time VM: no worker to send from
  const uint32_t t = next_token_;
  std::weak_ptr<bool> alive = alive_;
  std::function<void()> cancel;
  const WasmResult result = sender_->httpCall(
      cluster, std::move(headers), std::move(body), std::chrono::milliseconds(timeout_ms),
      [this, alive, t](HttpCallResponse response) {
        auto token = alive.lock();
        if (token && *token) onHttpCallDone(t, std::move(response));
      },
      &cancel);
  if (result != WasmResult::kOk) return result;
  next_token_ += 4;
  if (next_token_ == 0) next_token_ = 4;
  pending_calls_.emplace_back(t, std::move(cancel));
  *token = t;
  return WasmResult::kOk;
}

void PluginVm::onHttpCallDone(uint32_t token, HttpCallResponse response) {
  bool found = false;
  for (size_t i = 0; i < pending_calls_.size(); ++i) {
    if (pending_calls_[i].first == token) {
      pending_calls_.erase(pending_calls_.begin() + static_cast<ptrdiff_t>(i));
      found = true;
      break;
    }
  }
  if (!found || vm_->failed()) return;
  const bool ok = response.headers != nullptr;
  status_code_ =
      ok ? static_cast<uint32_t>(WasmResult::kOk) : static_cast<uint32_t>(WasmResult::kBrokenConnection);
  status_message_ = ok ? "" : "reset";
  http_response_ = &response;
  callRootAsync(Export::kOnHttpCallResponse,
                {root_id_, token, ok ? static_cast<uint32_t>(response.headers->size()) : 0u,
                 static_cast<uint32_t>(response.body.size()),
                 response.trailers ? static_cast<uint32_t>(response.trailers->size()) : 0u});
  http_response_ = nullptr;
}

WasmResult PluginVm::grpcCall(GrpcRequest request, uint32_t* token) {
  if (sender_ == nullptr) return WasmResult::kInternalFailure;  // config-time VM: no worker to send from
  const bool stream = !request.message.has_value();
  const uint32_t t = next_token_ | (stream ? 2u : 1u);
  std::weak_ptr<bool> alive = alive_;
  // Each event runs a root callback with the data readable for its duration (maps 4/5, buffer 5).
  auto live = [this, alive]() {
    auto a = alive.lock();
    return a && *a && !vm_->failed();
  };
  GrpcEvents events;
  events.initial_metadata = [this, live, t](GrpcMetadata metadata) {
    if (!live()) return;
    http::HeaderMap map;
    for (auto& [k, v] : metadata) map.add(k, v);
    grpc_initial_metadata_ = &map;
    callRootAsync(Export::kOnGrpcReceiveInitialMetadata, {root_id_, t, static_cast<uint32_t>(map.size())});
    grpc_initial_metadata_ = nullptr;
  };
  events.message = [this, live, t](std::string message) {
    if (!live()) return;
    grpc_message_ = &message;
    callRootAsync(Export::kOnGrpcReceive, {root_id_, t, static_cast<uint32_t>(message.size())});
    grpc_message_ = nullptr;
  };
  events.trailing_metadata = [this, live, t](GrpcMetadata metadata) {
    if (!live()) return;
    http::HeaderMap map;
    for (auto& [k, v] : metadata) map.add(k, v);
    grpc_trailing_metadata_ = &map;
    callRootAsync(Export::kOnGrpcReceiveTrailingMetadata, {root_id_, t, static_cast<uint32_t>(map.size())});
    grpc_trailing_metadata_ = nullptr;
  };
  events.close = [this, alive, t](uint32_t status, std::string message) {
    auto a = alive.lock();
    if (a && *a) onGrpcClose(t, status, std::move(message));
  };
  std::unique_ptr<GrpcCallout> call;
  const WasmResult result = sender_->grpcCall(std::move(request), std::move(events), &call);
  if (result != WasmResult::kOk) return result;
  next_token_ += 4;
  if (next_token_ == 0) next_token_ = 4;
  grpc_calls_.emplace_back(t, std::move(call));
  *token = t;
  return WasmResult::kOk;
}

namespace {
template <typename Calls>
auto findCall(Calls& calls, uint32_t token) {
  return std::find_if(calls.begin(), calls.end(), [token](const auto& c) { return c.first == token; });
}
}  // namespace

WasmResult PluginVm::grpcSend(uint32_t token, std::string message, bool end_stream) {
  if ((token & 3) != 2) return WasmResult::kBadArgument;  // only streams take messages
  auto it = findCall(grpc_calls_, token);
  if (it == grpc_calls_.end()) return WasmResult::kNotFound;
  if (!it->second->send(std::move(message), end_stream)) return WasmResult::kBadArgument;
  return WasmResult::kOk;
}

WasmResult PluginVm::grpcCancel(uint32_t token) {
  if ((token & 3) != 1 && (token & 3) != 2) return WasmResult::kBadArgument;
  auto it = findCall(grpc_calls_, token);
  if (it == grpc_calls_.end()) return WasmResult::kNotFound;
  auto call = std::move(it->second);  // destroyed after the entry is gone: no events after this
  grpc_calls_.erase(it);
  return WasmResult::kOk;
}

WasmResult PluginVm::grpcClose(uint32_t token) {
  if ((token & 3) == 1) return grpcCancel(token);  // a unary call: close is cancel, as in Envoy
  if ((token & 3) != 2) return WasmResult::kBadArgument;
  auto it = findCall(grpc_calls_, token);
  if (it == grpc_calls_.end()) return WasmResult::kNotFound;
  it->second->closeSend();  // half-close: answers still arrive
  return WasmResult::kOk;
}

void PluginVm::onGrpcClose(uint32_t token, uint32_t status, std::string message) {
  auto it = findCall(grpc_calls_, token);
  if (it == grpc_calls_.end()) return;
  // The call object may be the one delivering this event: release it after the callback.
  auto call = std::move(it->second);
  grpc_calls_.erase(it);
  if (vm_->failed()) return;
  status_code_ = status;
  status_message_ = std::move(message);
  callRootAsync(Export::kOnGrpcClose, {root_id_, token, status});
}

void PluginVm::onQueueReady(uint32_t queue_id) {
  if (vm_->failed()) return;
  callRootAsync(Export::kOnQueueReady, {root_id_, queue_id});
}

std::optional<uint32_t> PluginVm::callStream(StreamContext* stream, Export e,
                                             std::initializer_list<uint32_t> args) {
  StreamContext* saved_stream = current_stream_;
  uint32_t saved_id = current_id_;
  current_stream_ = stream;
  current_id_ = args.size() > 0 ? *args.begin() : 0;
  PluginVm* prev = enter();
  auto r = vm_->call(e, args);
  vm_->setHost(prev);
  current_stream_ = saved_stream;
  current_id_ = saved_id;
  return r;
}

std::optional<uint32_t> PluginVm::callForTest(StreamContext* stream, std::string_view name,
                                              std::initializer_list<uint32_t> args) {
  StreamContext* saved_stream = current_stream_;
  current_stream_ = stream;
  PluginVm* prev = enter();
  auto r = vm_->callByName(name, args);
  vm_->setHost(prev);
  current_stream_ = saved_stream;
  return r;
}

const std::string* PluginVm::configurationBuffer(BufferType type) const {
  if (config_buffer_ == nullptr || type != config_buffer_type_) return nullptr;
  return config_buffer_;
}

void PluginVm::logLine(uint32_t level, std::string_view message) {
  auto& logger = log::get(log::Component::kWasm);
  const auto lvl = static_cast<spdlog::level::level_enum>(level);  // proxy-wasm and spdlog share 0..5
  if (!logger.should_log(lvl)) return;
  logger.log(lvl, "wasm log {} {} {}: {}", spec_->name, spec_->root_id, spec_->vm_id, message);
}

WasmResult PluginVm::setTickPeriod(uint32_t ms) {
  tick_ms_ = ms;
  if (ms != 0 && dispatcher_ != nullptr && !tick_armed_) armTick();
  return WasmResult::kOk;
}

void PluginVm::armTick() {
  auto timer = std::make_shared<asio::steady_timer>(*dispatcher_);
  tick_armed_ = true;
  timer->expires_after(std::chrono::milliseconds(tick_ms_));
  std::weak_ptr<bool> alive = alive_;
  timer->async_wait([this, timer, alive](const std::error_code& ec) {
    auto token = alive.lock();
    if (ec || !token || !*token) return;
    tick_armed_ = false;
    if (tick_ms_ == 0 || vm_->failed()) return;
    callRootAsync(Export::kOnTick, {root_id_});
    if (vm_->failed()) return;
    if (tick_ms_ != 0 && !tick_armed_) armTick();
  });
}

WasmResult PluginVm::defineMetric(uint32_t type, std::string_view name, uint32_t* id) {
  if (type > static_cast<uint32_t>(MetricType::kHistogram)) return WasmResult::kBadArgument;
  if (stats_ == nullptr) return WasmResult::kInternalFailure;
  CustomMetric m{static_cast<MetricType>(type), {}, {}, {}};
  // Envoy keeps custom metrics under the `wasmcustom.` namespace: /stats shows them without it, and
  // Prometheus neither prefixes them with envoy_ nor names the namespace.
  const std::string full = "wasmcustom." + std::string(name);
  switch (m.type) {
    case MetricType::kCounter:
      m.counter = stats_->counter(full);
      break;
    case MetricType::kGauge:
      m.gauge = stats_->gauge(full);
      break;
    case MetricType::kHistogram:
      m.histogram = stats_->histogram(full, stats::Histogram::Unit::kUnspecified);
      break;
  }
  auto& metrics = shared_->metrics;
  *id = static_cast<uint32_t>(metrics.size() << 2) | type;
  metrics.push_back(m);
  return WasmResult::kOk;
}

WasmResult PluginVm::incrementMetric(uint32_t id, int64_t offset) {
  const size_t index = id >> 2;
  const auto& metrics = shared_->metrics;
  if (index >= metrics.size() || (id & 3) != static_cast<uint32_t>(metrics[index].type)) {
    return WasmResult::kNotFound;
  }
  const CustomMetric& m = metrics[index];
  switch (m.type) {
    case MetricType::kCounter:
      if (offset <= 0) return WasmResult::kBadArgument;
      m.counter.inc(static_cast<uint64_t>(offset));
      return WasmResult::kOk;
    case MetricType::kGauge:
      if (offset >= 0) {
        m.gauge.inc(offset);
      } else {
        m.gauge.dec(-offset);
      }
      return WasmResult::kOk;
    case MetricType::kHistogram:
      break;
  }
  return WasmResult::kBadArgument;
}

WasmResult PluginVm::recordMetric(uint32_t id, uint64_t value) {
  const size_t index = id >> 2;
  const auto& metrics = shared_->metrics;
  if (index >= metrics.size() || (id & 3) != static_cast<uint32_t>(metrics[index].type)) {
    return WasmResult::kNotFound;
  }
  const CustomMetric& m = metrics[index];
  switch (m.type) {
    case MetricType::kCounter:
      m.counter.inc(value);  // recording on a counter adds, as Envoy does
      break;
    case MetricType::kGauge:
      m.gauge.set(static_cast<int64_t>(value));
      break;
    case MetricType::kHistogram:
      m.histogram.record(value);
      break;
  }
  return WasmResult::kOk;
}

WasmResult PluginVm::getMetric(uint32_t id, uint64_t* value) {
  const size_t index = id >> 2;
  const auto& metrics = shared_->metrics;
  if (index >= metrics.size() || (id & 3) != static_cast<uint32_t>(metrics[index].type)) {
    return WasmResult::kNotFound;
  }
  const CustomMetric& m = metrics[index];
  switch (m.type) {
    case MetricType::kCounter:
      *value = m.counter.value();
      return WasmResult::kOk;
    case MetricType::kGauge:
      *value = static_cast<uint64_t>(m.gauge.value());
      return WasmResult::kOk;
    case MetricType::kHistogram:
      break;
  }
  return WasmResult::kBadArgument;
}

std::optional<std::string> PluginVm::pluginProperty(const std::vector<std::string_view>& path) const {
  if (path.empty()) return std::nullopt;
  const std::string_view top = path[0];
  if (path.size() == 1) {
    if (top == "plugin_name") return spec_->name;
    if (top == "plugin_root_id") return spec_->root_id;
    if (top == "plugin_vm_id") return spec_->vm_id;
  }
  const bool node = top == "node" || (top == "xds" && path.size() >= 2 && path[1] == "node");
  if (node) {
    const size_t field = top == "node" ? 1 : 2;
    LocalNode& n = localNode();
    std::lock_guard<std::mutex> lock(n.mu);
    if (path.size() == field) return n.node.SerializeAsString();
    const std::string_view name = path[field];
    if (path.size() == field + 1) {
      if (name == "id") return n.node.id();
      if (name == "cluster") return n.node.cluster();
      if (name == "metadata") return n.node.metadata().SerializeAsString();
      if (name == "user_agent_name") return n.node.user_agent_name();
    }
    if (name == "metadata" && path.size() == field + 2) {
      auto it = n.node.metadata().fields().find(std::string(path[field + 1]));
      if (it == n.node.metadata().fields().end()) return std::nullopt;
      return encodeValue(it->second);
    }
  }
  return std::nullopt;
}

WasmResult PluginVm::declareProperty(std::string name, DeclaredProperty property) {
  if (declaredProperty(name) != nullptr) return WasmResult::kBadArgument;  // Envoy keeps the first schema
  declared_.emplace_back(std::move(name), std::move(property));
  return WasmResult::kOk;
}

}  // namespace skiff::wasm
