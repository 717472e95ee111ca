// Label building and workload metadata: Istio's rules for both reporters, and the exchange header codec.
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include "filters/istio/labels.h"
#include "filters/istio/workload.h"

namespace skiff::filters::istio {
namespace {

google::protobuf::Struct structOf(const std::string& json) {
  google::protobuf::Struct s;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &s).ok()) << json;
  return s;
}

WorkloadInfo productpage() {
  return workloadFromMetadata(structOf(R"({"WORKLOAD_NAME":"productpage-v1","NAMESPACE":"default",
      "CLUSTER_ID":"Kubernetes","LABELS":{"app":"productpage","version":"v1"}})"));
}
WorkloadInfo reviews() {
  return workloadFromMetadata(structOf(R"({"WORKLOAD_NAME":"reviews-v2","NAMESPACE":"bookinfo",
      "CLUSTER_ID":"east","LABELS":{"app":"reviews","version":"v2",
      "service.istio.io/canonical-name":"reviews-svc","service.istio.io/canonical-revision":"r2"}})"));
}

TEST(IstioWorkload, ReadsNodeMetadataAndLabelFallbacks) {
  const WorkloadInfo w = reviews();
  EXPECT_EQ(w.workload_name, "reviews-v2");
  EXPECT_EQ(w.namespace_name, "bookinfo");
  EXPECT_EQ(w.cluster_id, "east");
  EXPECT_EQ(w.app, "reviews");
  EXPECT_EQ(w.version, "v2");
  EXPECT_EQ(w.canonical_service, "reviews-svc");
  EXPECT_EQ(w.canonical_revision, "r2");
  // ISTIO_META_LABELS gives the labels as a JSON string.
  const WorkloadInfo s =
      workloadFromMetadata(structOf(R"({"LABELS":"{\"app.kubernetes.io/name\":\"ratings\"}"})"));
  EXPECT_EQ(s.app, "ratings");
}

TEST(IstioWorkload, ExchangeValueRoundTripsThroughTheHeaderCodec) {
  auto md = structOf(R"({"WORKLOAD_NAME":"reviews-v2","NAMESPACE":"bookinfo","SECRET":"x",
      "LABELS":{"app":"reviews"},"EXCHANGE_KEYS":"NAMESPACE,LABELS,WORKLOAD_NAME"})");
  const std::string value = exchangeValue(md);
  ASSERT_FALSE(value.empty());
  auto peer = decodePeerMetadata(value);
  ASSERT_TRUE(peer);
  EXPECT_EQ(peer->workload_name, "reviews-v2");
  EXPECT_EQ(peer->namespace_name, "bookinfo");
  EXPECT_EQ(peer->app, "reviews");
  // Only EXCHANGE_KEYS leave the proxy; the value is deterministic (cacheable by peers).
  EXPECT_EQ(value.find("SECRET"), std::string::npos);
  EXPECT_EQ(exchangeValue(md), value);
  // Padding is optional, as Istio decodes it.
  std::string unpadded = value;
  while (!unpadded.empty() && unpadded.back() == '=') unpadded.pop_back();
  ASSERT_TRUE(decodePeerMetadata(unpadded));
  EXPECT_EQ(cachedPeerMetadata(value).get(), cachedPeerMetadata(value).get());
}

TEST(IstioWorkload, BadHeaderValuesAreRejected) {
  EXPECT_FALSE(decodePeerMetadata(""));
  EXPECT_FALSE(decodePeerMetadata("not base64!"));
  EXPECT_FALSE(decodePeerMetadata("/////w"));  // base64, but not a Struct
  EXPECT_FALSE(cachedPeerMetadata("%%%"));
}

TEST(IstioLabels, NamespaceFromPrincipal) {
  EXPECT_EQ(namespaceFromPrincipal("spiffe://cluster.local/ns/bookinfo/sa/reviews"), "bookinfo");
  EXPECT_EQ(namespaceFromPrincipal("spiffe://cluster.local/ns/last"), "last");
  EXPECT_EQ(namespaceFromPrincipal("spiffe://cluster.local/sa/x"), "");
}

TEST(IstioLabels, DestinationReporterUsesThePeerAsSource) {
  const WorkloadInfo local = reviews(), peer = productpage();
  RequestFacts f;
  f.reporter = Reporter::kDestination;
  f.local = &local;
  f.peer = &peer;
  f.peer_principal = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage";
  f.local_principal = "spiffe://cluster.local/ns/bookinfo/sa/reviews";
  f.host = "reviews:9080";
  f.cluster_name = "inbound|9080||";
  f.protocol = "http";
  f.response_code = "200";
  f.response_flags = "-";
  LabelValues v;
  buildLabels(f, v);
  EXPECT_EQ(v[kReporter], "destination");
  EXPECT_EQ(v[kSourceWorkload], "productpage-v1");
  EXPECT_EQ(v[kSourceWorkloadNamespace], "default");
  EXPECT_EQ(v[kSourceApp], "productpage");
  EXPECT_EQ(v[kSourceVersion], "v1");
  EXPECT_EQ(v[kSourceCanonicalService], "productpage");  // no canonical label: the app label
  EXPECT_EQ(v[kSourceCanonicalRevision], "v1");
  EXPECT_EQ(v[kSourceCluster], "Kubernetes");
  EXPECT_EQ(v[kSourcePrincipal], "spiffe://cluster.local/ns/default/sa/bookinfo-productpage");
  EXPECT_EQ(v[kDestinationWorkload], "reviews-v2");
  EXPECT_EQ(v[kDestinationCanonicalService], "reviews-svc");
  EXPECT_EQ(v[kDestinationCanonicalRevision], "r2");
  EXPECT_EQ(v[kDestinationService], "reviews:9080");
  EXPECT_EQ(v[kDestinationServiceName], "reviews:9080");
  EXPECT_EQ(v[kDestinationServiceNamespace], "bookinfo");
  EXPECT_EQ(v[kDestinationCluster], "east");
  EXPECT_EQ(v[kConnectionSecurityPolicy], "mutual_tls");
  EXPECT_EQ(v[kResponseCode], "200");
  EXPECT_EQ(v[kRequestProtocol], "http");
  EXPECT_EQ(v[kGrpcResponseStatus], "");
}

TEST(IstioLabels, SourceReporterUsesThePeerAsDestinationAndTheClusterAsService) {
  const WorkloadInfo local = productpage(), peer = reviews();
  RequestFacts f;
  f.reporter = Reporter::kSource;
  f.local = &local;
  f.peer = &peer;
  f.host = "reviews:9080";
  f.cluster_name = "outbound|9080||reviews.bookinfo.svc.cluster.local";
  f.protocol = "grpc";
  f.response_code = "200";
  f.grpc_response_status = "0";
  f.response_flags = "-";
  LabelValues v;
  buildLabels(f, v);
  EXPECT_EQ(v[kReporter], "source");
  EXPECT_EQ(v[kSourceWorkload], "productpage-v1");
  EXPECT_EQ(v[kSourcePrincipal], "unknown");
  EXPECT_EQ(v[kDestinationWorkload], "reviews-v2");
  EXPECT_EQ(v[kDestinationWorkloadNamespace], "bookinfo");
  EXPECT_EQ(v[kDestinationService], "reviews.bookinfo.svc.cluster.local");
  EXPECT_EQ(v[kDestinationServiceName], "reviews");
  EXPECT_EQ(v[kDestinationServiceNamespace], "bookinfo");
  EXPECT_EQ(v[kDestinationCluster], "east");
  EXPECT_EQ(v[kConnectionSecurityPolicy], "unknown");
  EXPECT_EQ(v[kGrpcResponseStatus], "0");
}

TEST(IstioLabels, WithoutPeerOrHostEverythingRemoteIsUnknown) {
  const WorkloadInfo local;  // no node metadata at all
  RequestFacts f;
  f.reporter = Reporter::kSource;
  f.local = &local;
  f.cluster_name = "PassthroughCluster";
  f.protocol = "http";
  f.response_code = "503";
  LabelValues v;
  buildLabels(f, v);
  for (size_t i : {kSourceWorkload, kSourceWorkloadNamespace, kDestinationWorkload, kDestinationApp,
                   kDestinationService, kDestinationCanonicalService}) {
    EXPECT_EQ(v[i], "unknown") << labelNames()[i];
  }
  EXPECT_EQ(v[kDestinationServiceName], "PassthroughCluster");
  EXPECT_EQ(v[kDestinationCanonicalRevision], "latest");
  EXPECT_EQ(v[kResponseFlags], "-");
}

}  // namespace
}  // namespace skiff::filters::istio
