// PluginVm: VM start-up and root context, stream context ids, tick timer, custom metrics, plugin-level
// properties and the plugin's log lines.
#include "wasm/plugin.h"

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <mutex>

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

}  // namespace

std::unique_ptr<PluginVm> PluginVm::create(std::shared_ptr<const PluginSpec> spec, stats::Store* stats,
                                           asio::io_context* dispatcher, std::string* error) {
  std::unique_ptr<PluginVm> p(new PluginVm());
  p->spec_ = std::move(spec);
  p->stats_ = stats;
  p->dispatcher_ = dispatcher;
  p->vm_ = Vm::create(p->spec_->code, p.get(), error);
  if (!p->vm_) return nullptr;
  Vm& vm = *p->vm_;
  auto fail = [&](const std::string& what) {
    *error = what + (vm.failed() ? ": " + vm.error() : "");
    return nullptr;
  };
  // Reactor modules export _initialize (and maybe main); command modules export _start.
  if (vm.hasExport(Export::kInitialize)) {
    if (!vm.call(Export::kInitialize, {})) return fail("_initialize failed");
    if (vm.hasExport(Export::kMain) && !vm.call(Export::kMain, {0, 0})) return fail("main failed");
  } else if (vm.hasExport(Export::kStart)) {
    if (!vm.call(Export::kStart, {})) return fail("_start failed");
  }
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
  // A pending tick handler holds its timer; it sees alive_ expire and does not re-arm.
  *alive_ = false;
  if (vm_ && !vm_->failed()) {
    callRoot(Export::kOnDone, {root_id_});
    callRoot(Export::kOnDelete, {root_id_});
  }
}

std::optional<uint32_t> PluginVm::callRoot(Export e, std::initializer_list<uint32_t> args) {
  StreamContext* saved_stream = current_stream_;
  uint32_t saved_id = current_id_;
  current_stream_ = nullptr;
  current_id_ = root_id_;
  auto r = vm_->call(e, args);
  current_stream_ = saved_stream;
  current_id_ = saved_id;
  return r;
}

uint32_t PluginVm::createStreamContext() {
  if (vm_->failed()) return 0;
  const uint32_t id = next_context_id_++;
  if (next_context_id_ == 0) next_context_id_ = 2;
  auto r = callStream(nullptr, Export::kOnContextCreate, {id, root_id_});
  if (!r && vm_->failed()) return 0;
  return id;
}

std::optional<uint32_t> PluginVm::callStream(StreamContext* stream, Export e,
                                             std::initializer_list<uint32_t> args) {
  StreamContext* saved_stream = current_stream_;
  uint32_t saved_id = current_id_;
  current_stream_ = stream;
  current_id_ = args.size() > 0 ? *args.begin() : 0;
  auto r = vm_->call(e, args);
  current_stream_ = saved_stream;
  current_id_ = saved_id;
  return r;
}

std::optional<uint32_t> PluginVm::callForTest(StreamContext* stream, std::string_view name,
                                              std::initializer_list<uint32_t> args) {
  StreamContext* saved_stream = current_stream_;
  current_stream_ = stream;
  auto r = vm_->callByName(name, args);
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
    callRoot(Export::kOnTick, {root_id_});
    if (vm_->failed()) {
      SKIFF_LOG(kWasm, err, "wasm plugin {}: {}", spec_->name, vm_->error());
      return;
    }
    if (tick_ms_ != 0 && !tick_armed_) armTick();
  });
}

WasmResult PluginVm::defineMetric(uint32_t type, std::string_view name, uint32_t* id) {
  if (type > static_cast<uint32_t>(MetricType::kHistogram)) return WasmResult::kBadArgument;
  if (stats_ == nullptr) return WasmResult::kInternalFailure;
  Metric m{static_cast<MetricType>(type), {}, {}, {}};
  // Envoy keeps custom metrics under the `wasmcustom.` namespace and shows them without it.
  switch (m.type) {
    case MetricType::kCounter:
      m.counter = stats_->counter(name);
      break;
    case MetricType::kGauge:
      m.gauge = stats_->gauge(name);
      break;
    case MetricType::kHistogram:
      m.histogram = stats_->histogram(name, stats::Histogram::Unit::kUnspecified);
      break;
  }
  *id = static_cast<uint32_t>(metrics_.size() << 2) | type;
  metrics_.push_back(m);
  return WasmResult::kOk;
}

WasmResult PluginVm::incrementMetric(uint32_t id, int64_t offset) {
  const size_t index = id >> 2;
  if (index >= metrics_.size() || (id & 3) != static_cast<uint32_t>(metrics_[index].type)) {
    return WasmResult::kNotFound;
  }
  const Metric& m = metrics_[index];
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
  if (index >= metrics_.size() || (id & 3) != static_cast<uint32_t>(metrics_[index].type)) {
    return WasmResult::kNotFound;
  }
  const Metric& m = metrics_[index];
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
  if (index >= metrics_.size() || (id & 3) != static_cast<uint32_t>(metrics_[index].type)) {
    return WasmResult::kNotFound;
  }
  const Metric& m = metrics_[index];
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

}  // namespace skiff::wasm
