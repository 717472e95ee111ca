// Registration of Istio's HTTP telemetry filters, native and as Wasm null-VM built-ins.
#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/wrappers.pb.h>

#include "envoy/extensions/filters/http/wasm/v3/wasm.pb.h"
#include "filters/istio/istio.h"
#include "skiff/common/logging.h"
#include "skiff/filters/http_filter_registry.h"
#include "udpa/type/v1/typed_struct.pb.h"
#include "xds/type/v3/typed_struct.pb.h"

namespace skiff::filters::istio {
namespace {

constexpr std::string_view kStatsType = "type.googleapis.com/stats.PluginConfig";
constexpr std::string_view kWasmType = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

http::FilterFactorySharedPtr buildStats(const ::stats::PluginConfig& proto, Reporter reporter,
                                        const FactoryContext& context) {
  std::vector<std::string> warnings;
  StatsConfig config = parseStatsConfig(proto, reporter, &warnings);
  for (const auto& w : warnings) SKIFF_LOG(kConfig, warn, "istio.stats ({}): {}", context.stat_prefix, w);
  return makeStatsFilterFactory(std::move(config), context.stats);
}

// A TypedStruct's Struct as the message it names.
template <class TypedStruct>
bool fromTypedStruct(const google::protobuf::Any& any, ::stats::PluginConfig* out) {
  TypedStruct ts;
  if (!any.Is<TypedStruct>() || !any.UnpackTo(&ts) || ts.type_url() != kStatsType) return false;
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(ts.value(), &json).ok()) return false;
  *out = pluginConfigFromJson(json);
  return true;
}

http::FilterFactorySharedPtr createStats(const google::protobuf::Any& any, const FactoryContext& context) {
  ::stats::PluginConfig proto;
  if (any.Is<::stats::PluginConfig>()) {
    if (!any.UnpackTo(&proto)) throw std::invalid_argument("cannot decode stats.PluginConfig");
  } else if (!any.type_url().empty() && !fromTypedStruct<udpa::type::v1::TypedStruct>(any, &proto) &&
             !fromTypedStruct<xds::type::v3::TypedStruct>(any, &proto)) {
    throw std::invalid_argument("istio.stats: expected stats.PluginConfig, got " + any.type_url());
  }
  return buildStats(proto, reporterFromStatPrefix(context.stat_prefix), context);
}

// The Wasm plugin's configuration: a JSON string (StringValue/BytesValue), else nothing usable.
std::string wasmConfigurationJson(const google::protobuf::Any& any) {
  google::protobuf::StringValue s;
  if (any.Is<google::protobuf::StringValue>() && any.UnpackTo(&s)) return s.value();
  google::protobuf::BytesValue b;
  if (any.Is<google::protobuf::BytesValue>() && any.UnpackTo(&b)) return b.value();
  return {};
}

// Istio 1.x's null-VM built-ins, or null when the Wasm config is something else.
http::FilterFactorySharedPtr createNullVm(const google::protobuf::Any& any, const FactoryContext& context) {
  envoy::extensions::filters::http::wasm::v3::Wasm wasm;
  if (!any.Is<envoy::extensions::filters::http::wasm::v3::Wasm>() || !any.UnpackTo(&wasm)) return nullptr;
  const auto& plugin = wasm.config();
  if (plugin.vm_config().runtime() != "envoy.wasm.runtime.null") return nullptr;
  const std::string& code = plugin.vm_config().code().local().inline_string();
  // The plugin's root id says the direction (stats_inbound / stats_outbound); else the HCM's prefix does.
  Reporter reporter = reporterFromStatPrefix(context.stat_prefix);
  if (plugin.root_id().find("inbound") != std::string::npos) reporter = Reporter::kDestination;
  if (plugin.root_id().find("outbound") != std::string::npos) reporter = Reporter::kSource;
  if (code == "envoy.wasm.stats") {
    const std::string json = wasmConfigurationJson(plugin.configuration());
    return buildStats(pluginConfigFromJson(json), reporter, context);
  }
  if (code == "envoy.wasm.metadata_exchange") return makeMetadataExchangeFactory(reporter);
  return nullptr;
}

}  // namespace

void registerIstioFilters() {
  registerIstioNetworkFilters();
  registerHttpFilter(HttpFilterRegistration{"istio.stats", std::string(kStatsType), createStats, false});
  const HttpFilterRegistration* wasm = findHttpFilter(kWasmType, {});
  if (wasm == nullptr) return;
  HttpFilterRegistration wrapped = *wasm;
  wrapped.create = [inner = wasm->create](const google::protobuf::Any& any, const FactoryContext& context) {
    if (auto factory = createNullVm(any, context)) return factory;
    return inner(any, context);
  };
  registerHttpFilter(std::move(wrapped));
}

}  // namespace skiff::filters::istio
