// Wasm filter config: the PluginConfig proto → PluginSpec (runtime check, local or remote code, configuration
// unwrapping, environment, failure policy), config-time VM validation, the remote-code factory, and the
// registration line.
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/wrappers.pb.h>

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "envoy/extensions/filters/http/wasm/v3/wasm.pb.h"
#include "filters/http/wasm/wasm_filter.h"
#include "filters/http/wasm/wasm_plugin_config.h"
#include "skiff/common/init_target.h"
#include "skiff/common/logging.h"
#include "skiff/config/data_source.h"

namespace skiff::filters::wasm {
namespace {

using skiff::wasm::PluginSpec;

// Envoy hands StringValue/BytesValue configurations over unwrapped, Struct as JSON, anything else as the
// message bytes.
std::string configurationBytes(const google::protobuf::Any& any) {
  if (any.type_url().empty()) return {};
  google::protobuf::StringValue s;
  if (any.Is<google::protobuf::StringValue>() && any.UnpackTo(&s)) return s.value();
  google::protobuf::BytesValue b;
  if (any.Is<google::protobuf::BytesValue>() && any.UnpackTo(&b)) return b.value();
  google::protobuf::Struct st;
  if (any.Is<google::protobuf::Struct>() && any.UnpackTo(&st)) {
    std::string json;
    if (google::protobuf::util::MessageToJsonString(st, &json).ok()) return json;
  }
  return any.value();
}

int64_t millis(const google::protobuf::Duration& d) {
  return d.seconds() * 1000 + d.nanos() / 1000000;
}

skiff::wasm::RemoteSource parseRemoteSource(const envoy::config::core::v3::RemoteDataSource& proto,
                                            const std::string& field) {
  skiff::wasm::RemoteSource r;
  r.uri = proto.http_uri().uri();
  r.cluster = proto.http_uri().cluster();
  if (r.uri.empty()) throw std::invalid_argument(field + ".http_uri.uri is required");
  if (r.cluster.empty()) throw std::invalid_argument(field + ".http_uri.cluster is required");
  if (r.uri.rfind("http://", 0) != 0 && r.uri.rfind("https://", 0) != 0) {
    throw std::invalid_argument(field + ".http_uri.uri '" + r.uri + "' is not an http:// or https:// URI");
  }
  if (proto.http_uri().has_timeout()) {
    r.timeout = std::chrono::milliseconds(millis(proto.http_uri().timeout()));
    if (r.timeout.count() <= 0) throw std::invalid_argument(field + ".http_uri.timeout must be positive");
  }
  r.sha256 = proto.sha256();
  for (char& c : r.sha256) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (r.sha256.size() != 64 || r.sha256.find_first_not_of("0123456789abcdef") != std::string::npos) {
    throw std::invalid_argument(field + ".sha256 must be the 64 hex digits of the code's SHA-256, got '" +
                                proto.sha256() + "'");
  }
  if (proto.has_retry_policy()) {
    const auto& policy = proto.retry_policy();
    if (policy.has_num_retries()) r.num_retries = policy.num_retries().value();
    const auto& backoff = policy.retry_back_off();
    if (backoff.has_base_interval()) {
      r.base_interval = std::chrono::milliseconds(millis(backoff.base_interval()));
      if (r.base_interval.count() <= 0) {
        throw std::invalid_argument(field + ".retry_policy.retry_back_off.base_interval must be positive");
      }
      r.max_interval = r.base_interval * 10;
    }
    if (backoff.has_max_interval()) {
      r.max_interval = std::chrono::milliseconds(millis(backoff.max_interval()));
      if (r.max_interval < r.base_interval) {
        throw std::invalid_argument(field +
                                    ".retry_policy.retry_back_off.max_interval is below base_interval");
      }
    }
  }
  return r;
}

}  // namespace

PluginSpec parsePluginProto(const envoy::extensions::wasm::v3::PluginConfig& plugin, const std::string& what,
                            std::optional<skiff::wasm::RemoteSource>* remote) {
  PluginSpec spec;
  spec.name = plugin.name();
  spec.root_id = plugin.root_id();
  using Policy = envoy::extensions::wasm::v3::FailurePolicy;
  switch (plugin.failure_policy()) {
    case Policy::FAIL_OPEN:
      spec.fail_open = true;
      break;
    case Policy::FAIL_CLOSED:
    case Policy::FAIL_RELOAD:  // a failed VM is always replaced on the next request
      spec.fail_open = false;
      break;
    default:
      spec.fail_open = plugin.fail_open();
  }
  if (!plugin.has_vm_config()) throw std::invalid_argument(what + ": config.vm_config is required");
  const auto& vm = plugin.vm_config();
  spec.vm_id = vm.vm_id();
  if (!vm.runtime().empty() && vm.runtime() != "envoy.wasm.runtime.v8") {
    if (vm.runtime() == "envoy.wasm.runtime.null") {
      throw std::invalid_argument(
          what +
          ": config.vm_config.runtime 'envoy.wasm.runtime.null' (Envoy's built-in native plugins) is not "
          "available; only envoy.wasm.runtime.v8 is");
    }
    throw std::invalid_argument(what + ": config.vm_config.runtime '" + vm.runtime() +
                                "' is not supported; only envoy.wasm.runtime.v8 is");
  }
  if (vm.code().has_remote()) {
    if (remote == nullptr)
      throw std::invalid_argument(what + ": config.vm_config.code.remote is not supported here");
    *remote = parseRemoteSource(vm.code().remote(), what + ": config.vm_config.code.remote");
  } else if (!vm.code().has_local()) {
    throw std::invalid_argument(what + ": config.vm_config.code.local or code.remote is required");
  }
  spec.vm_configuration = configurationBytes(vm.configuration());
  spec.plugin_configuration = configurationBytes(plugin.configuration());
  for (const auto& key : vm.environment_variables().host_env_keys()) {
    if (const char* v = std::getenv(key.c_str())) spec.environment.emplace_back(key, v);
  }
  for (const auto& [k, v] : vm.environment_variables().key_values()) {
    for (const auto& [existing, value] : spec.environment) {
      if (existing == k) {
        throw std::invalid_argument(what + ": config.vm_config.environment_variables: key '" + k +
                                    "' is given twice");
      }
    }
    spec.environment.emplace_back(k, v);
  }
  if (vm.code().has_remote()) return spec;
  try {
    spec.code = skiff::config::readDataSource(vm.code().local(), what + ": config.vm_config.code.local",
                                              skiff::config::IfUnset::kError);
  } catch (const std::invalid_argument& e) {
    spec.code.clear();
    if (!spec.fail_open) throw;
    SKIFF_LOG(kWasm, warn, "wasm plugin {}: {}; fail_open, bypassing", spec.name, e.what());
  }
  return spec;
}

PluginSpec parsePluginConfig(const google::protobuf::Any& config) {
  envoy::extensions::filters::http::wasm::v3::Wasm proto;
  if (!config.UnpackTo(&proto)) throw std::invalid_argument("wasm: typed_config is not a Wasm message");
  std::optional<skiff::wasm::RemoteSource> remote;
  return parsePluginProto(proto.config(), "wasm", &remote);
}

namespace {

// Like Envoy's base VM: compile, start and configure once on the main thread, so a broken module or a
// plugin that rejects its configuration is a config error (or, fail-open, a bypassed filter). Returns the
// error ("" when the plugin loads).
std::string validatePlugin(const std::shared_ptr<PluginSpec>& spec, stats::Store* stats) {
  std::string error = spec->code.empty() ? "no code" : "";
  if (error.empty()) {
    auto vm = skiff::wasm::PluginVm::create(spec, stats, nullptr, &error);
    if (vm) error.clear();
  }
  return error;
}

// The HTTP filter of a plugin with code.remote: no filter (fail-open) or 503s (fail-closed) until the code
// is fetched, verified and loaded, then the Wasm filter; the same when the fetch fails for good.
class RemoteWasmFilterFactory : public http::FilterFactory {
 public:
  explicit RemoteWasmFilterFactory(bool fail_open) : fail_open_(fail_open) {}
  void createFilters(http::FilterChainBuilder& builder) const override {
    if (auto config = pending_.ready()) {
      config->createFilters(builder);
      return;
    }
    if (!fail_open_) builder.addStreamFilter(std::make_unique<FailClosedFilter>());
  }
  PendingConfig<WasmFilterConfig>& pending() { return pending_; }

 private:
  const bool fail_open_;
  PendingConfig<WasmFilterConfig> pending_;
};

http::FilterFactorySharedPtr createRemoteFactory(std::shared_ptr<PluginSpec> spec,
                                                 const skiff::wasm::RemoteSource& remote,
                                                 const FactoryContext& context) {
  auto factory = std::make_shared<RemoteWasmFilterFactory>(spec->fail_open);
  std::weak_ptr<RemoteWasmFilterFactory> weak = factory;
  stats::Store* stats = &context.stats;
  const std::string prefix = context.stat_prefix;
  // The listener being built warms until the code is loaded or the fetch has failed for good.
  std::function<void()> warmed = [] {};
  if (auto* targets = init::InitScope::current()) warmed = targets->add(remoteTargetName(spec->name));
  const bool started = loadRemoteCode(
      spec, remote, [weak, stats, prefix, warmed](std::shared_ptr<PluginSpec> loaded, std::string error) {
        struct Warmed {
          std::function<void()> done;
          ~Warmed() { done(); }  // after the config is set (or failed), on every path
        } at_exit{warmed};
        auto factory = weak.lock();
        if (!factory) return;  // the listener went away meanwhile
        if (error.empty()) error = validatePlugin(loaded, stats);
        if (!error.empty()) {
          SKIFF_LOG(kWasm, err, "wasm plugin {}: unable to create Wasm HTTP filter: {}; {}", loaded->name,
                    error,
                    loaded->fail_open ? "fail_open, the filter is bypassed"
                                      : "fail closed, its requests are answered 503");
          factory->pending().fail();
          return;
        }
        SKIFF_LOG(kWasm, info, "wasm plugin {}: remote code loaded", loaded->name);
        factory->pending().set(std::make_shared<WasmFilterConfig>(loaded, stats, "", prefix));
      });
  if (!started) {
    SKIFF_LOG(kWasm, warn, "wasm plugin {}: code.remote is not fetched here (no remote loader)", spec->name);
    warmed();
  }
  return factory;
}

}  // namespace

http::FilterFactorySharedPtr createWasmFilterFactory(const google::protobuf::Any& config,
                                                     const FactoryContext& context) {
  envoy::extensions::filters::http::wasm::v3::Wasm proto;
  if (!config.UnpackTo(&proto)) throw std::invalid_argument("wasm: typed_config is not a Wasm message");
  std::optional<skiff::wasm::RemoteSource> remote;
  auto spec = std::make_shared<PluginSpec>(parsePluginProto(proto.config(), "wasm", &remote));
  if (remote) return createRemoteFactory(spec, *remote, context);
  const std::string error = validatePlugin(spec, &context.stats);
  if (!error.empty()) {
    if (!spec->fail_open) {
      throw std::invalid_argument("wasm: unable to create Wasm HTTP filter '" + spec->name + "': " + error);
    }
    SKIFF_LOG(kWasm, warn, "wasm plugin {}: {}; fail_open, the filter is bypassed", spec->name, error);
  }
  return std::make_shared<WasmFilterConfig>(spec, &context.stats, error, context.stat_prefix);
}

void registerWasmFilter() {
  registerHttpFilter(HttpFilterRegistration{std::string(kFilterName), std::string(kTypeUrl),
                                            createWasmFilterFactory, false});
}

}  // namespace skiff::filters::wasm
