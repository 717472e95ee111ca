// Istio workload identity: this proxy's own (from the bootstrap node metadata and ISTIO_META_* variables)
// and a peer's (from Istio's metadata exchange), reduced to what the standard metrics label.
#pragma once

#include <google/protobuf/struct.pb.h>

#include <memory>
#include <string>
#include <string_view>

#include "envoy/config/core/v3/base.pb.h"

namespace skiff::filters::istio {

struct WorkloadInfo {
  std::string workload_name;       // WORKLOAD_NAME
  std::string namespace_name;      // NAMESPACE
  std::string cluster_id;          // CLUSTER_ID
  std::string app;                 // LABELS["app"] (else app.kubernetes.io/name)
  std::string version;             // LABELS["version"] (else app.kubernetes.io/version)
  std::string canonical_service;   // LABELS["service.istio.io/canonical-name"]
  std::string canonical_revision;  // LABELS["service.istio.io/canonical-revision"]
};
using WorkloadInfoConstSharedPtr = std::shared_ptr<const WorkloadInfo>;

// Reads the Istio keys out of node metadata (or an exchanged peer Struct). LABELS may be a Struct or a
// JSON object string (as ISTIO_META_LABELS gives it).
WorkloadInfo workloadFromMetadata(const google::protobuf::Struct& metadata);

// What this proxy says about itself: set once at start-up from the bootstrap node (the server calls it),
// with ISTIO_META_* / ISTIO_METAJSON_* variables folded in for keys the node lacks.
void setLocalNode(const envoy::config::core::v3::Node& node);

struct LocalNode {
  std::string id;                     // node.id: x-envoy-peer-metadata-id
  google::protobuf::Struct metadata;  // node.metadata with the environment folded in
  WorkloadInfo workload;
  std::string exchange_value;  // x-envoy-peer-metadata: base64(deterministic Struct of EXCHANGE_KEYS)
};
// The local node (from setLocalNode, else from the environment alone). Stable after start-up.
const LocalNode& localNode();

// Istio's exchange header value for `metadata`: the keys named by EXCHANGE_KEYS (a comma-separated
// string; Istio's default list when absent), serialized deterministically and base64-encoded.
std::string exchangeValue(const google::protobuf::Struct& metadata);

// Decodes an x-envoy-peer-metadata value; nullopt-like empty pointer when it is not base64 of a Struct.
WorkloadInfoConstSharedPtr decodePeerMetadata(std::string_view header_value);

// Per-worker cache in front of decodePeerMetadata, keyed by the header value (peers send the same value on
// every request). Bounded; no allocation on a hit.
WorkloadInfoConstSharedPtr cachedPeerMetadata(std::string_view header_value);

}  // namespace skiff::filters::istio
