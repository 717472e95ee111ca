// Istio's standard labels from local workload, peer workload, certificates and the request outcome.
#include "filters/istio/labels.h"

namespace skiff::filters::istio {
namespace {

constexpr std::string_view kUnknown = "unknown";

std::string_view orUnknown(std::string_view v) {
  return v.empty() ? kUnknown : v;
}

// Canonical service / revision with the pod-label fallbacks Istio's injector would have applied.
std::string_view canonicalService(const WorkloadInfo& w) {
  if (!w.canonical_service.empty()) return w.canonical_service;
  if (!w.app.empty()) return w.app;
  return orUnknown(w.workload_name);
}
std::string_view canonicalRevision(const WorkloadInfo& w) {
  if (!w.canonical_revision.empty()) return w.canonical_revision;
  if (!w.version.empty()) return w.version;
  return "latest";
}

}  // namespace

const std::array<std::string_view, kLabelCount>& labelNames() {
  static const std::array<std::string_view, kLabelCount> kNames = {
      "reporter",
      "source_workload",
      "source_canonical_service",
      "source_canonical_revision",
      "source_workload_namespace",
      "source_principal",
      "source_app",
      "source_version",
      "source_cluster",
      "destination_workload",
      "destination_workload_namespace",
      "destination_principal",
      "destination_app",
      "destination_version",
      "destination_service",
      "destination_canonical_service",
      "destination_canonical_revision",
      "destination_service_name",
      "destination_service_namespace",
      "destination_cluster",
      "request_protocol",
      "response_code",
      "grpc_response_status",
      "response_flags",
      "connection_security_policy",
  };
  return kNames;
}

size_t labelIndex(std::string_view name) {
  const auto& names = labelNames();
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == name) return i;
  }
  return kLabelCount;
}

std::string_view namespaceFromPrincipal(std::string_view principal) {
  constexpr std::string_view kKey = "/ns/";
  const size_t begin = principal.find(kKey);
  if (begin == std::string_view::npos) return {};
  std::string_view rest = principal.substr(begin + kKey.size());
  return rest.substr(0, rest.find('/'));
}

void buildLabels(const RequestFacts& f, LabelValues& out) {
  const WorkloadInfo& local = *f.local;
  const WorkloadInfo* peer = f.peer;

  // Destination service: the Host header unless disabled, refined by the cluster: Istio's special
  // clusters name themselves, and an outbound cluster "outbound|<port>|<subset>|<fqdn>" names the
  // service host (what istiod puts in the cluster's istio metadata).
  std::string_view service_host = f.host, service_name = f.host;
  if (f.route_name == "block_all") {
    service_name = "BlackHoleCluster";
  } else if (f.route_name == "allow_any") {
    service_name = "PassthroughCluster";
  } else if (f.cluster_name == "BlackHoleCluster" || f.cluster_name == "PassthroughCluster" ||
             f.cluster_name == "InboundPassthroughCluster" ||
             f.cluster_name == "InboundPassthroughClusterIpv4" ||
             f.cluster_name == "InboundPassthroughClusterIpv6") {
    service_name = f.cluster_name;
  } else if (f.cluster_name.starts_with("outbound|")) {
    const size_t last = f.cluster_name.rfind('|');
    std::string_view fqdn = f.cluster_name.substr(last + 1);
    if (!fqdn.empty()) {
      service_host = fqdn;
      service_name = fqdn.substr(0, fqdn.find('.'));
    }
  }

  std::string_view peer_namespace = namespaceFromPrincipal(f.peer_principal);
  if (peer_namespace.empty() && peer != nullptr) peer_namespace = peer->namespace_name;

  out[kReporter] = f.reporter == Reporter::kSource        ? "source"
                   : f.reporter == Reporter::kDestination ? "destination"
                                                          : "waypoint";
  if (f.reporter == Reporter::kSource) {
    out[kSourceWorkload] = orUnknown(local.workload_name);
    out[kSourceCanonicalService] = canonicalService(local);
    out[kSourceCanonicalRevision] = canonicalRevision(local);
    out[kSourceWorkloadNamespace] = orUnknown(local.namespace_name);
    out[kSourcePrincipal] = orUnknown(f.local_principal);
    out[kSourceApp] = orUnknown(local.app);
    out[kSourceVersion] = orUnknown(local.version);
    out[kSourceCluster] = orUnknown(local.cluster_id);
    out[kDestinationWorkload] = peer ? orUnknown(peer->workload_name) : kUnknown;
    out[kDestinationWorkloadNamespace] = orUnknown(peer_namespace);
    out[kDestinationPrincipal] = orUnknown(f.peer_principal);
    out[kDestinationApp] = peer ? orUnknown(peer->app) : kUnknown;
    out[kDestinationVersion] = peer ? orUnknown(peer->version) : kUnknown;
    out[kDestinationService] = orUnknown(service_host);
    out[kDestinationCanonicalService] = peer ? canonicalService(*peer) : kUnknown;
    out[kDestinationCanonicalRevision] = peer ? canonicalRevision(*peer) : "latest";
    out[kDestinationServiceName] = orUnknown(service_name);
    out[kDestinationServiceNamespace] = orUnknown(peer_namespace);
    out[kDestinationCluster] = peer ? orUnknown(peer->cluster_id) : kUnknown;
  } else {
    out[kSourceWorkload] = peer ? orUnknown(peer->workload_name) : kUnknown;
    out[kSourceCanonicalService] = peer ? canonicalService(*peer) : kUnknown;
    out[kSourceCanonicalRevision] = peer ? canonicalRevision(*peer) : "latest";
    out[kSourceWorkloadNamespace] = orUnknown(peer_namespace);
    out[kSourcePrincipal] = orUnknown(f.peer_principal);
    out[kSourceApp] = peer ? orUnknown(peer->app) : kUnknown;
    out[kSourceVersion] = peer ? orUnknown(peer->version) : kUnknown;
    out[kSourceCluster] = peer ? orUnknown(peer->cluster_id) : kUnknown;
    out[kDestinationWorkload] = orUnknown(local.workload_name);
    out[kDestinationWorkloadNamespace] = orUnknown(local.namespace_name);
    out[kDestinationPrincipal] = orUnknown(f.local_principal);
    out[kDestinationApp] = orUnknown(local.app);
    out[kDestinationVersion] = orUnknown(local.version);
    out[kDestinationService] = service_host.empty() ? canonicalService(local) : service_host;
    out[kDestinationCanonicalService] = canonicalService(local);
    out[kDestinationCanonicalRevision] = canonicalRevision(local);
    out[kDestinationServiceName] = service_name.empty() ? canonicalService(local) : service_name;
    out[kDestinationServiceNamespace] = orUnknown(local.namespace_name);
    out[kDestinationCluster] = orUnknown(local.cluster_id);
  }
  out[kRequestProtocol] = f.protocol;
  out[kResponseCode] = f.response_code;
  out[kGrpcResponseStatus] = f.grpc_response_status;
  out[kResponseFlags] = f.response_flags.empty() ? "-" : f.response_flags;
  // Istio knows the mTLS state on the server side only (the downstream handshake).
  if (f.reporter == Reporter::kSource) {
    out[kConnectionSecurityPolicy] = kUnknown;
  } else {
    out[kConnectionSecurityPolicy] =
        !f.peer_principal.empty() && !f.local_principal.empty() ? "mutual_tls" : "none";
  }
}

}  // namespace skiff::filters::istio
