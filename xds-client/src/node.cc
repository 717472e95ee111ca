// Node identity: Istio-style metadata from the environment, and what Skiff says about itself.

#include "skiff/xds/node.h"

#include <google/protobuf/util/json_util.h>

extern char** environ;

namespace skiff::xds {

namespace {
constexpr std::string_view kMetaPrefix = "ISTIO_META_";
constexpr std::string_view kMetaJsonPrefix = "ISTIO_METAJSON_";
}  // namespace

void foldIstioMetaEnv(const std::vector<std::string>& environment, google::protobuf::Struct& metadata) {
  auto& fields = *metadata.mutable_fields();
  for (const auto& entry : environment) {
    const size_t eq = entry.find('=');
    if (eq == std::string::npos) continue;
    std::string_view name(entry.data(), eq);
    const std::string value = entry.substr(eq + 1);
    if (name.starts_with(kMetaJsonPrefix)) {
      const std::string key(name.substr(kMetaJsonPrefix.size()));
      if (key.empty()) continue;
      google::protobuf::Value parsed;
      if (google::protobuf::util::JsonStringToMessage(value, &parsed).ok()) {
        fields[key] = parsed;
      } else {
        fields[key].set_string_value(value);
      }
    } else if (name.starts_with(kMetaPrefix)) {
      const std::string key(name.substr(kMetaPrefix.size()));
      if (!key.empty()) fields[key].set_string_value(value);
    }
  }
}

std::vector<std::string> processEnvironment() {
  std::vector<std::string> out;
  for (char** e = environ; e && *e; ++e) out.emplace_back(*e);
  return out;
}

void setSkiffIdentity(envoy::config::core::v3::Node& node, std::string_view version) {
  node.set_user_agent_name("skiff");
  auto* semver = node.mutable_user_agent_build_version()->mutable_version();
  unsigned major = 0, minor = 0, patch = 0;
  if (std::sscanf(std::string(version).c_str(), "%u.%u.%u", &major, &minor, &patch) >= 1) {
    semver->set_major_number(major);
    semver->set_minor_number(minor);
    semver->set_patch(patch);
  }
  node.clear_client_features();
  // Skiff ignores ClusterLoadAssignment.policy.overprovisioning_factor.
  node.add_client_features("envoy.lb.does_not_support_overprovisioning");
}

}  // namespace skiff::xds
