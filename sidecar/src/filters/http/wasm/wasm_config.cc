// Wasm filter config: the Wasm proto → PluginSpec (runtime check, code, configuration unwrapping,
// environment, failure policy), config-time VM validation, and the registration line.
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/wrappers.pb.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "envoy/extensions/filters/http/wasm/v3/wasm.pb.h"
#include "filters/http/wasm/wasm_filter.h"
#include "skiff/common/logging.h"

namespace skiff::filters::wasm {
namespace {

using skiff::wasm::PluginSpec;

std::string readCode(const envoy::config::core::v3::DataSource& source) {
  using DS = envoy::config::core::v3::DataSource;
  switch (source.specifier_case()) {
    case DS::kInlineBytes:
      return source.inline_bytes();
    case DS::kInlineString:
      return source.inline_string();
    case DS::kFilename: {
      std::ifstream in(source.filename(), std::ios::binary);
      if (!in) throw std::invalid_argument("cannot read file '" + source.filename() + "'");
      std::ostringstream out;
      out << in.rdbuf();
      return out.str();
    }
    case DS::kEnvironmentVariable: {
      const char* v = std::getenv(source.environment_variable().c_str());
      if (v == nullptr)
        throw std::invalid_argument("environment variable '" + source.environment_variable() +
                                    "' is not set");
      return v;
    }
    case DS::SPECIFIER_NOT_SET:
      break;
  }
  throw std::invalid_argument("no code given");
}

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

}  // namespace

PluginSpec parsePluginConfig(const google::protobuf::Any& config) {
  envoy::extensions::filters::http::wasm::v3::Wasm proto;
  if (!config.UnpackTo(&proto)) throw std::invalid_argument("wasm: typed_config is not a Wasm message");
  const auto& plugin = proto.config();
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
  if (!plugin.has_vm_config()) throw std::invalid_argument("wasm: config.vm_config is required");
  const auto& vm = plugin.vm_config();
  spec.vm_id = vm.vm_id();
  if (!vm.runtime().empty() && vm.runtime() != "envoy.wasm.runtime.v8") {
    if (vm.runtime() == "envoy.wasm.runtime.null") {
      throw std::invalid_argument(
          "wasm: config.vm_config.runtime 'envoy.wasm.runtime.null' (Envoy's built-in native plugins) is not "
          "available; only envoy.wasm.runtime.v8 is");
    }
    throw std::invalid_argument("wasm: config.vm_config.runtime '" + vm.runtime() +
                                "' is not supported; only envoy.wasm.runtime.v8 is");
  }
  if (vm.code().has_remote()) {
    throw std::invalid_argument("wasm: config.vm_config.code.remote is not supported yet; use code.local");
  }
  if (!vm.code().has_local()) throw std::invalid_argument("wasm: config.vm_config.code.local is required");
  spec.vm_configuration = configurationBytes(vm.configuration());
  spec.plugin_configuration = configurationBytes(plugin.configuration());
  for (const auto& key : vm.environment_variables().host_env_keys()) {
    if (const char* v = std::getenv(key.c_str())) spec.environment.emplace_back(key, v);
  }
  for (const auto& [k, v] : vm.environment_variables().key_values()) {
    for (const auto& [existing, value] : spec.environment) {
      if (existing == k) {
        throw std::invalid_argument("wasm: config.vm_config.environment_variables: key '" + k +
                                    "' is given twice");
      }
    }
    spec.environment.emplace_back(k, v);
  }
  try {
    spec.code = readCode(vm.code().local());
  } catch (const std::invalid_argument& e) {
    spec.code.clear();
    if (!spec.fail_open)
      throw std::invalid_argument("wasm: config.vm_config.code.local: " + std::string(e.what()));
    SKIFF_LOG(kWasm, warn, "wasm plugin {}: config.vm_config.code.local: {}; fail_open, bypassing", spec.name,
              e.what());
  }
  return spec;
}

http::FilterFactorySharedPtr createWasmFilterFactory(const google::protobuf::Any& config,
                                                     const FactoryContext& context) {
  auto spec = std::make_shared<PluginSpec>(parsePluginConfig(config));
  std::string error = spec->code.empty() ? "no code" : "";
  if (error.empty()) {
    // Like Envoy's base VM: compile, start and configure once now, so a broken module or a plugin that
    // rejects its configuration is a config error (or, fail-open, a bypassed filter).
    auto vm = skiff::wasm::PluginVm::create(spec, &context.stats, nullptr, &error);
    if (vm) error.clear();
  }
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
