#include <gtest/gtest.h>

#include "skiff/xds/node.h"
#include "skiff/xds/types.h"

namespace skiff::xds {
namespace {

TEST(NodeTest, IstioMetaVariablesBecomeStringKeys) {
  google::protobuf::Struct metadata;
  foldIstioMetaEnv({"ISTIO_META_CLUSTER_ID=Kubernetes", "ISTIO_META_INTERCEPTION_MODE=REDIRECT", "PATH=/bin",
                    "ISTIO_META_=ignored", "ISTIO_META_EMPTY="},
                   metadata);
  ASSERT_EQ(metadata.fields().size(), 3u);
  EXPECT_EQ(metadata.fields().at("CLUSTER_ID").string_value(), "Kubernetes");
  EXPECT_EQ(metadata.fields().at("INTERCEPTION_MODE").string_value(), "REDIRECT");
  EXPECT_EQ(metadata.fields().at("EMPTY").string_value(), "");
}

TEST(NodeTest, IstioMetaJsonVariablesAreParsed) {
  google::protobuf::Struct metadata;
  foldIstioMetaEnv({R"(ISTIO_METAJSON_LABELS={"app":"reviews","version":"v1"})", "ISTIO_METAJSON_BAD={nope"},
                   metadata);
  const auto& labels = metadata.fields().at("LABELS").struct_value().fields();
  EXPECT_EQ(labels.at("app").string_value(), "reviews");
  EXPECT_EQ(labels.at("version").string_value(), "v1");
  EXPECT_EQ(metadata.fields().at("BAD").string_value(), "{nope");
}

TEST(NodeTest, SkiffIdentity) {
  envoy::config::core::v3::Node node;
  node.set_id("sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local");
  setSkiffIdentity(node, "1.2.3");
  EXPECT_EQ(node.user_agent_name(), "skiff");
  EXPECT_EQ(node.user_agent_build_version().version().major_number(), 1u);
  EXPECT_EQ(node.user_agent_build_version().version().minor_number(), 2u);
  EXPECT_EQ(node.user_agent_build_version().version().patch(), 3u);
  EXPECT_EQ(node.id(), "sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local");
  EXPECT_FALSE(node.client_features().empty());
}

TEST(TypesTest, EnvoyRequestOrder) {
  EXPECT_LT(typeOrder(kClusterType), typeOrder(kEndpointType));
  EXPECT_LT(typeOrder(kEndpointType), typeOrder(kListenerType));
  EXPECT_LT(typeOrder(kListenerType), typeOrder(kRouteType));
  EXPECT_LT(typeOrder(kRouteType), typeOrder(kSecretType));
  EXPECT_TRUE(isWildcardType(kListenerType));
  EXPECT_FALSE(isWildcardType(kRouteType));
}

}  // namespace
}  // namespace skiff::xds
