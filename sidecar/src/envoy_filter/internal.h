// Shared internals of the EnvoyFilter library: value conversion, merge semantics, matching helpers.
#pragma once

#include <string>
#include <string_view>

#include <google/protobuf/any.pb.h>
#include <google/protobuf/message.h>
#include <yaml-cpp/yaml.h>

#include "envoy/config/listener/v3/listener.pb.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "skiff/envoy_filter/applier.h"

namespace skiff::envoy_filter::internal {

// A patch failed; the message names the patch and the problem. Caught per EnvoyFilter.
struct PatchError {
  std::string message;
};

// YAML `value` -> `out`. Any payloads of types this build has no .proto for are kept as
// udpa.type.v1.TypedStruct Anys. Throws config::ConfigError naming `path`.
// `who` prefixes the warning logged when the value is only accepted leniently.
void yamlToMessage(const YAML::Node& value, google::protobuf::Message& out, const std::string& path,
                   const std::string& who = "");

// proto merge as istiod does it: set scalars replace, messages merge recursively, lists append (or are
// replaced with `replace_lists`), maps merge by key, google.protobuf.Duration is replaced as a whole.
void mergeMessage(google::protobuf::Message& dst, const google::protobuf::Message& src, bool replace_lists);
// Unpacks both Anys and merges `src` into `dst` (istiod's MergeAnyWithAny); throws PatchError.
void mergeAny(google::protobuf::Any& dst, const google::protobuf::Any& src, bool replace_lists);

// "envoy.router" -> "envoy.filters.http.router" etc. (Istio matches both spellings).
std::string canonicalName(std::string_view name);
bool nameMatches(std::string_view match, std::string_view name);

bool contextMatches(PatchContext patch, PatchContext object);
bool proxyMatches(const ConfigPatch& patch, const Proxy& proxy);

using Hcm = envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
bool isHcm(const envoy::config::listener::v3::Filter& filter);

}  // namespace skiff::envoy_filter::internal
