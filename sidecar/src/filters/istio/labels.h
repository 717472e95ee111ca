// Istio's standard metric labels: names, and the values for one request or connection (pure, so the
// rules are unit-tested without a proxy).
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string_view>

#include "filters/istio/workload.h"

namespace skiff::filters::istio {

enum class Reporter { kSource, kDestination, kWaypoint };

// In Istio's order.
enum Label : size_t {
  kReporter,
  kSourceWorkload,
  kSourceCanonicalService,
  kSourceCanonicalRevision,
  kSourceWorkloadNamespace,
  kSourcePrincipal,
  kSourceApp,
  kSourceVersion,
  kSourceCluster,
  kDestinationWorkload,
  kDestinationWorkloadNamespace,
  kDestinationPrincipal,
  kDestinationApp,
  kDestinationVersion,
  kDestinationService,
  kDestinationCanonicalService,
  kDestinationCanonicalRevision,
  kDestinationServiceName,
  kDestinationServiceNamespace,
  kDestinationCluster,
  kRequestProtocol,
  kResponseCode,
  kGrpcResponseStatus,
  kResponseFlags,
  kConnectionSecurityPolicy,
  kLabelCount,
};
const std::array<std::string_view, kLabelCount>& labelNames();
// Index of a standard label name, or kLabelCount.
size_t labelIndex(std::string_view name);

using LabelValues = std::array<std::string_view, kLabelCount>;

// What one request (or TCP connection) contributes. Every view must outlive the LabelValues built from it.
struct RequestFacts {
  Reporter reporter = Reporter::kSource;
  const WorkloadInfo* local = nullptr;  // required
  const WorkloadInfo* peer = nullptr;   // null: no metadata exchange happened
  std::string_view peer_principal;      // peer certificate URI SAN
  std::string_view local_principal;     // our certificate URI SAN
  std::string_view host;                // Host/:authority (empty when disable_host_header_fallback)
  std::string_view cluster_name;        // upstream cluster ("outbound|80||svc.ns.svc.cluster.local")
  std::string_view route_name;
  std::string_view protocol;              // "http", "grpc" or "tcp"
  std::string_view response_code;         // "200"; "0" when no response
  std::string_view grpc_response_status;  // "" unless gRPC
  std::string_view response_flags;        // "-" or Envoy's short flags
};

// Fills `out` as Istio's stats filter does (see README.md for where Skiff differs).
void buildLabels(const RequestFacts& facts, LabelValues& out);

// "<domain>/ns/<namespace>/sa/<account>" → namespace; empty when absent.
std::string_view namespaceFromPrincipal(std::string_view principal);

}  // namespace skiff::filters::istio
