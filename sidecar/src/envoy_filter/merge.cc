// Patch values (YAML -> messages, unknown Any types kept as TypedStruct) and istiod's merge semantics.
#include <google/protobuf/descriptor.h>
#include <google/protobuf/duration.pb.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/wrappers.pb.h>

#include <fmt/format.h>

#include <map>
#include <memory>
#include <optional>

#include "envoy_filter/internal.h"
#include "skiff/common/logging.h"
#include "skiff/config/config_error.h"
#include "skiff/config/extension_registry.h"
#include "skiff/config/yaml_to_proto.h"
#include "udpa/type/v1/typed_struct.pb.h"

namespace skiff::envoy_filter::internal {
namespace {

using google::protobuf::Any;
using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

constexpr std::string_view kPlaceholder = "skiff.envoy_filter.unknown_type#";

bool known(std::string_view type_url) {
  return google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(
             std::string(config::typeNameOfUrl(type_url))) != nullptr;
}

bool isTypedStructName(std::string_view n) {
  return n == "udpa.type.v1.TypedStruct" || n == "xds.type.v3.TypedStruct";
}

struct Unknown {
  std::string type_url;
  YAML::Node fields;  // the payload as a map
};

// Copies `node`, swapping every Any of an unknown type (or every TypedStruct, with `keep_typed_structs`)
// for a StringValue placeholder.
YAML::Node stripUnknown(const YAML::Node& node, std::vector<Unknown>& unknown, bool keep_typed_structs) {
  if (node.IsSequence()) {
    YAML::Node out(YAML::NodeType::Sequence);
    for (const auto& item : node) out.push_back(stripUnknown(item, unknown, keep_typed_structs));
    return out;
  }
  if (!node.IsMap()) return YAML::Clone(node);
  const YAML::Node type = node["@type"];
  if (type && type.IsScalar()) {
    const std::string url = type.Scalar();
    std::string inner = url;
    YAML::Node payload(YAML::NodeType::Map);
    const bool typed_struct = isTypedStructName(config::typeNameOfUrl(url));
    if (typed_struct) {
      const YAML::Node tu = node["type_url"] ? node["type_url"] : node["typeUrl"];
      if (tu && tu.IsScalar()) inner = tu.Scalar();
      if (node["value"] && node["value"].IsMap()) payload = YAML::Clone(node["value"]);
    } else {
      for (const auto& kv : node) {
        if (kv.first.Scalar() != "@type") payload[kv.first.Scalar()] = YAML::Clone(kv.second);
      }
    }
    if (!known(inner) || (typed_struct && keep_typed_structs)) {
      unknown.push_back({inner, payload});
      YAML::Node out(YAML::NodeType::Map);
      out["@type"] = "type.googleapis.com/google.protobuf.StringValue";
      out["value"] = std::string(kPlaceholder) + std::to_string(unknown.size() - 1);
      return out;
    }
  }
  YAML::Node out(YAML::NodeType::Map);
  for (const auto& kv : node) out[kv.first.Scalar()] = stripUnknown(kv.second, unknown, keep_typed_structs);
  return out;
}

const Descriptor* messageType(std::string_view type_url) {
  return google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(
      std::string(config::typeNameOfUrl(type_url)));
}

// Istio's own examples write a single object where the API has a list (e.g. VirtualHost.rate_limits): wraps
// such maps into one-element lists, guided by the descriptors. Returns how many it wrapped.
int wrapSingletons(YAML::Node node, const Descriptor* d) {
  if (d == nullptr || !node.IsMap()) return 0;
  const std::string& name = d->full_name();
  if (name == "google.protobuf.Any") {
    const YAML::Node type = node["@type"];
    if (!type || !type.IsScalar()) return 0;
    if (isTypedStructName(config::typeNameOfUrl(type.Scalar()))) {
      const YAML::Node tu = node["type_url"] ? node["type_url"] : node["typeUrl"];
      return tu && tu.IsScalar() ? wrapSingletons(node["value"], messageType(tu.Scalar())) : 0;
    }
    return wrapSingletons(node, messageType(type.Scalar()));
  }
  if (name.rfind("google.protobuf.", 0) == 0) return 0;  // Struct, wrappers, Duration...
  int wrapped = 0;
  for (auto kv : node) {
    const std::string key = kv.first.Scalar();
    const FieldDescriptor* f = d->FindFieldByName(key);
    if (f == nullptr) f = d->FindFieldByCamelcaseName(key);
    if (f == nullptr) continue;
    const Descriptor* child = f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE ? f->message_type() : nullptr;
    if (f->is_map()) {
      const FieldDescriptor* v = child->map_value();
      if (v->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE && kv.second.IsMap()) {
        for (auto e : kv.second) wrapped += wrapSingletons(e.second, v->message_type());
      }
    } else if (f->is_repeated()) {
      if (kv.second.IsMap()) {
        YAML::Node list(YAML::NodeType::Sequence);
        list.push_back(YAML::Clone(kv.second));
        node[key] = list;
        ++wrapped;
      }
      if (child) {
        for (auto item : node[key]) wrapped += wrapSingletons(item, child);
      }
    } else if (child) {
      wrapped += wrapSingletons(kv.second, child);
    }
  }
  return wrapped;
}

// Walks `msg` (into known Anys too) and turns placeholders into TypedStruct Anys. True if changed.
bool restoreUnknown(Message& msg, const std::vector<Unknown>& unknown, const std::string& path);

bool restoreAny(Any& any, const std::vector<Unknown>& unknown, const std::string& path) {
  const std::string_view name = config::typeNameOfUrl(any.type_url());
  if (name == "google.protobuf.StringValue") {
    google::protobuf::StringValue sv;
    if (any.UnpackTo(&sv) && sv.value().rfind(kPlaceholder, 0) == 0) {
      const size_t i = std::stoul(sv.value().substr(kPlaceholder.size()));
      udpa::type::v1::TypedStruct ts;
      ts.set_type_url(unknown[i].type_url);
      std::vector<std::string> warnings;
      config::loadMessageYaml(YAML::Dump(unknown[i].fields), *ts.mutable_value(), warnings, path);
      any.PackFrom(ts);
      return true;
    }
    return false;
  }
  const Descriptor* d =
      google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(std::string(name));
  if (d == nullptr) return false;
  std::unique_ptr<Message> inner(
      google::protobuf::MessageFactory::generated_factory()->GetPrototype(d)->New());
  if (!any.UnpackTo(inner.get())) return false;
  if (!restoreUnknown(*inner, unknown, path)) return false;
  any.PackFrom(*inner);
  return true;
}

bool restoreUnknown(Message& msg, const std::vector<Unknown>& unknown, const std::string& path) {
  if (msg.GetDescriptor()->full_name() == "google.protobuf.Any") {
    return restoreAny(static_cast<Any&>(msg), unknown, path);
  }
  const auto* refl = msg.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  refl->ListFields(msg, &fields);
  bool changed = false;
  for (const FieldDescriptor* f : fields) {
    if (f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) continue;
    if (f->is_repeated()) {
      for (int i = 0; i < refl->FieldSize(msg, f); ++i) {
        changed |= restoreUnknown(*refl->MutableRepeatedMessage(&msg, f, i), unknown, path);
      }
    } else {
      changed |= restoreUnknown(*refl->MutableMessage(&msg, f), unknown, path);
    }
  }
  return changed;
}

// Clears in `dst` what a merge from `src` must replace rather than combine.
void prepareMerge(Message& dst, const Message& src, bool replace_lists) {
  const auto* sr = src.GetReflection();
  const auto* dr = dst.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  sr->ListFields(src, &fields);
  for (const FieldDescriptor* f : fields) {
    if (f->is_repeated()) {
      if (replace_lists && !f->is_map()) dr->ClearField(&dst, f);
      continue;
    }
    if (f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) continue;
    if (f->message_type()->full_name() == "google.protobuf.Duration") {
      dr->ClearField(&dst, f);
    } else if (dr->HasField(dst, f)) {
      prepareMerge(*dr->MutableMessage(&dst, f), sr->GetMessage(src, f), replace_lists);
    }
  }
}

}  // namespace

void yamlToMessage(const YAML::Node& value, Message& out, const std::string& path, const std::string& who) {
  // Strict first; then lenient as Envoy and istiod are: TypedStructs stay TypedStructs (Envoy converts them
  // only when the extension is built), single objects are accepted where lists are expected.
  std::optional<config::ConfigError> first;
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::vector<Unknown> unknown;
    YAML::Node stripped = stripUnknown(value, unknown, attempt == 1);
    const int wrapped = attempt == 1 ? wrapSingletons(stripped, out.GetDescriptor()) : 0;
    std::vector<std::string> warnings;
    try {
      config::loadMessageYaml(YAML::Dump(stripped), out, warnings, path);
      if (!unknown.empty()) restoreUnknown(out, unknown, path);
      if (attempt == 1) {
        SKIFF_LOG(kConfig, warn, "{}{}: accepted leniently ({}; {} single object(s) taken as lists)", who,
                  path, first->what(), wrapped);
      }
      return;
    } catch (const config::ConfigError& e) {
      if (!first) first = e;
      if (attempt == 1) SKIFF_LOG(kConfig, debug, "{}: lenient conversion failed too: {}", path, e.what());
    }
  }
  throw *first;
}

void mergeMessage(Message& dst, const Message& src, bool replace_lists) {
  prepareMerge(dst, src, replace_lists);
  dst.MergeFrom(src);
}

void mergeAny(Any& dst, const Any& src, bool replace_lists) {
  const std::string dst_name(config::typeNameOfUrl(dst.type_url()));
  const std::string src_name(config::typeNameOfUrl(src.type_url()));
  const Descriptor* d = google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(dst_name);
  if (d == nullptr)
    throw PatchError{fmt::format("typed_config type '{}' is not known to this proxy", dst_name)};
  auto* factory = google::protobuf::MessageFactory::generated_factory();
  std::unique_ptr<Message> a(factory->GetPrototype(d)->New());
  std::unique_ptr<Message> b(factory->GetPrototype(d)->New());
  if (!dst.UnpackTo(a.get()))
    throw PatchError{fmt::format("typed_config of type '{}' does not decode", dst_name)};
  // istiod swaps the URL when the types differ and tries anyway, which only made sense for v2 vs v3 names
  // (v2 is rejected at load): a different type is an error here rather than a silent reinterpretation.
  if (src_name != dst_name || !b->ParseFromString(src.value())) {
    throw PatchError{
        fmt::format("cannot merge a typed_config of type '{}' into one of type '{}'", src_name, dst_name)};
  }
  mergeMessage(*a, *b, replace_lists);
  dst.PackFrom(*a, std::string(dst.type_url().substr(0, dst.type_url().rfind('/'))));
}

std::string canonicalName(std::string_view name) {
  static const std::map<std::string_view, std::string_view> kLegacy = {
      {"envoy.http_connection_manager", "envoy.filters.network.http_connection_manager"},
      {"envoy.tcp_proxy", "envoy.filters.network.tcp_proxy"},
      {"envoy.router", "envoy.filters.http.router"},
      {"envoy.lua", "envoy.filters.http.lua"},
      {"envoy.cors", "envoy.filters.http.cors"},
      {"envoy.fault", "envoy.filters.http.fault"},
      {"envoy.ext_authz", "envoy.filters.http.ext_authz"},
      {"envoy.ratelimit", "envoy.filters.http.ratelimit"},
      {"envoy.grpc_stats", "envoy.filters.http.grpc_stats"},
      {"envoy.health_check", "envoy.filters.http.health_check"},
      {"envoy.gzip", "envoy.filters.http.gzip"},
      {"envoy.wasm", "envoy.filters.http.wasm"},
      {"envoy.listener.tls_inspector", "envoy.filters.listener.tls_inspector"},
      {"envoy.listener.original_dst", "envoy.filters.listener.original_dst"},
      {"envoy.listener.http_inspector", "envoy.filters.listener.http_inspector"},
      {"envoy.listener.proxy_protocol", "envoy.filters.listener.proxy_protocol"},
      {"envoy.listener.original_src", "envoy.filters.listener.original_src"},
  };
  auto it = kLegacy.find(name);
  return std::string(it == kLegacy.end() ? name : it->second);
}

bool nameMatches(std::string_view match, std::string_view name) {
  return match == name || canonicalName(match) == canonicalName(name);
}

bool isHcm(const envoy::config::listener::v3::Filter& filter) {
  if (canonicalName(filter.name()) == "envoy.filters.network.http_connection_manager") return true;
  return filter.has_typed_config() &&
         config::typeNameOfUrl(filter.typed_config().type_url()) == Hcm::descriptor()->full_name();
}

}  // namespace skiff::envoy_filter::internal
