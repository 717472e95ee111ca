#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <google/protobuf/struct.pb.h>

#include "envoy/config/core/v3/base.pb.h"

namespace skiff::xds {

// Folds Istio agent-style variables ("NAME=value" strings, e.g. from environ) into node metadata:
// ISTIO_META_<K>=v sets key <K> to the string v; ISTIO_METAJSON_<K>=json sets <K> to the parsed JSON value
// (an unparsable value is kept as a string). Other variables are ignored.
void foldIstioMetaEnv(const std::vector<std::string>& environment, google::protobuf::Struct& metadata);

// The process environment as "NAME=value" strings.
std::vector<std::string> processEnvironment();

// Fills what Skiff says about itself: user_agent_name "skiff", user_agent_build_version, client_features.
// Keeps id, cluster, metadata and locality as given.
void setSkiffIdentity(envoy::config::core::v3::Node& node, std::string_view version = "0.1.0");

}  // namespace skiff::xds
