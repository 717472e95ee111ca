#include <filesystem>

#include <gtest/gtest.h>

#include "envoy/config/cluster/v3/cluster.pb.h"
#include "skiff/xds/test_server.h"
#include "skiff/xds/types.h"

namespace skiff::xds {
namespace {

TEST(SnapshotLoaderTest, SnapshotListsInYaml) {
  auto loaded = loadSnapshotText(R"(
clusters:
- name: backend
  type: EDS
  connect_timeout: 1s
  eds_cluster_config: {eds_config: {ads: {}}}
endpoints:
- cluster_name: backend
  endpoints:
  - lb_endpoints:
    - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8080}}}
routes:
- name: "80"
  virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: backend}}]}]
)");
  EXPECT_TRUE(loaded.errors.empty()) << loaded.errors.front();
  ASSERT_EQ(loaded.resources[std::string(kClusterType)].size(), 1u);
  envoy::config::cluster::v3::Cluster cluster;
  ASSERT_TRUE(loaded.resources[std::string(kClusterType)]["backend"].UnpackTo(&cluster));
  EXPECT_EQ(cluster.type(), envoy::config::cluster::v3::Cluster::EDS);
  EXPECT_EQ(cluster.connect_timeout().seconds(), 1);
  EXPECT_EQ(loaded.resources[std::string(kEndpointType)].count("backend"), 1u);
  EXPECT_EQ(loaded.resources[std::string(kRouteType)].count("80"), 1u);
}

TEST(SnapshotLoaderTest, BadResourceIsSkippedWithItsPath) {
  auto loaded = loadSnapshotText("clusters:\n- name: a\n  connect_timeout: [1, 2]\n- name: b\n");
  ASSERT_EQ(loaded.errors.size(), 1u);
  EXPECT_NE(loaded.errors[0].find(".clusters[0]"), std::string::npos) << loaded.errors[0];
  EXPECT_EQ(loaded.resources[std::string(kClusterType)].count("b"), 1u);
}

TEST(SnapshotLoaderTest, UnknownExtensionTypesTravelAsTypedStruct) {
  auto loaded = loadSnapshotText(R"({"listeners":[{"name":"l","filter_chains":[{"filters":[{"name":"x",
    "typed_config":{"@type":"type.googleapis.com/istio.example.Unknown","a":1}}]}]}]})");
  EXPECT_TRUE(loaded.errors.empty()) << loaded.errors.front();
  EXPECT_EQ(loaded.resources[std::string(kListenerType)].count("l"), 1u);
}

// The real istiod dumps, in both JSON spellings.
TEST(SnapshotLoaderTest, IstioFixtures) {
  const std::filesystem::path fixtures =
      std::filesystem::path(SKIFF_SOURCE_DIR).parent_path() / "shared" / "fixtures" / "istio";
  if (!std::filesystem::exists(fixtures)) GTEST_SKIP() << "no fixtures at " << fixtures;
  auto full =
      loadSnapshot((fixtures / "sidecar-1.10-full-dump" / "configdump.json").string());  // lowerCamelCase
  EXPECT_EQ(full.resources[std::string(kListenerType)].size(), 16u);
  EXPECT_EQ(full.resources[std::string(kClusterType)].size(), 23u);
  EXPECT_EQ(full.resources[std::string(kRouteType)].size(), 6u);
  auto lds = loadSnapshot((fixtures / "sidecar-lds-dump" / "configdump.yaml").string());  // snake_case
  EXPECT_EQ(lds.resources[std::string(kListenerType)].size(), 27u);
  auto eds = loadSnapshot((fixtures / "sidecar-eds-dump" / "configdump.json").string());
  EXPECT_EQ(eds.resources[std::string(kEndpointType)].size(), 32u);
  for (const auto& e : full.errors) ADD_FAILURE() << e;
  for (const auto& e : lds.errors) ADD_FAILURE() << e;
  for (const auto& e : eds.errors) ADD_FAILURE() << e;
}

}  // namespace
}  // namespace skiff::xds
