// Which proxy an EnvoyFilter selects, and the proxy-level part of a patch's match.
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <re2/re2.h>

#include "envoy_filter/internal.h"

namespace skiff::envoy_filter {

namespace {

void stringFields(const google::protobuf::Struct& s, std::map<std::string, std::string>& out) {
  for (const auto& [k, v] : s.fields()) {
    if (v.kind_case() == google::protobuf::Value::kStringValue) out[k] = v.string_value();
  }
}

}  // namespace

Proxy Proxy::fromNode(const envoy::config::core::v3::Node& node) {
  Proxy p;
  stringFields(node.metadata(), p.metadata);
  const auto& fields = node.metadata().fields();
  if (auto it = fields.find("LABELS"); it != fields.end()) {
    if (it->second.has_struct_value()) {
      stringFields(it->second.struct_value(), p.labels);
    } else if (it->second.kind_case() == google::protobuf::Value::kStringValue) {
      google::protobuf::Struct parsed;  // ISTIO_META_LABELS-style: a JSON object in a string
      if (google::protobuf::util::JsonStringToMessage(it->second.string_value(), &parsed).ok()) {
        stringFields(parsed, p.labels);
      }
    }
  }
  if (auto it = p.metadata.find("ISTIO_VERSION"); it != p.metadata.end()) p.istio_version = it->second;
  // node.id: <type>~<ip>~<pod>.<namespace>~<namespace>.svc.cluster.local
  const std::string& id = node.id();
  p.gateway = id.rfind("router~", 0) == 0;
  if (auto it = p.metadata.find("NAMESPACE"); it != p.metadata.end()) {
    p.namespace_ = it->second;
  } else {
    const size_t a = id.find('~'), b = a == std::string::npos ? a : id.find('~', a + 1);
    const size_t c = b == std::string::npos ? b : id.find('~', b + 1);
    if (c != std::string::npos) {
      const std::string pod = id.substr(b + 1, c - b - 1);
      if (auto dot = pod.rfind('.'); dot != std::string::npos) p.namespace_ = pod.substr(dot + 1);
    }
  }
  return p;
}

void ApplyReport::append(const ApplyReport& other) {
  applied.insert(applied.end(), other.applied.begin(), other.applied.end());
  failed.insert(failed.end(), other.failed.begin(), other.failed.end());
  removed = removed || other.removed;
}

namespace internal {

bool contextMatches(PatchContext patch, PatchContext object) {
  if (patch == PatchContext::kAny) return object != PatchContext::kWaypoint;
  return patch == object;
}

bool proxyMatches(const ConfigPatch& patch, const Proxy& proxy) {
  if (patch.object == ConfigPatch::ObjectMatch::kWaypoint) return false;  // sidecars and gateways only
  if (!patch.proxy_version.empty()) {
    if (proxy.istio_version.empty()) return false;
    RE2 re(patch.proxy_version, RE2::Quiet);
    if (!RE2::PartialMatch(proxy.istio_version, re)) return false;
  }
  for (const auto& [k, v] : patch.proxy_metadata) {
    auto it = proxy.metadata.find(k);
    if (it == proxy.metadata.end() || it->second != v) return false;
  }
  return true;
}

}  // namespace internal
}  // namespace skiff::envoy_filter
