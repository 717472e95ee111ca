// XdsManager: bootstrap checks, CDS/EDS application with Envoy's partial-apply-and-NACK rule, SotW removals,
// EDS subscription names following CDS, readiness.
#include "server/xds/xds_manager.h"

#include <gtest/gtest.h>

#include "server/xds/route_config_provider.h"

namespace skiff::server {
namespace {

using envoy::config::bootstrap::v3::Bootstrap;
using envoy::config::cluster::v3::Cluster;

Bootstrap adsBootstrap() {
  Bootstrap b;
  auto* ads = b.mutable_dynamic_resources()->mutable_ads_config();
  ads->set_api_type(envoy::config::core::v3::ApiConfigSource::GRPC);
  ads->add_grpc_services()->mutable_google_grpc()->set_target_uri("127.0.0.1:1");
  b.mutable_dynamic_resources()->mutable_cds_config()->mutable_ads();
  b.mutable_node()->set_id("node-1");
  return b;
}

std::string validationError(const Bootstrap& b) {
  try {
    XdsManager::validate(b);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

xds::XdsResource resourceOf(const google::protobuf::Message& m, const std::string& name,
                            const std::string& version) {
  xds::XdsResource r;
  r.name = name;
  r.version = version;
  r.resource.PackFrom(m);
  return r;
}

Cluster edsCluster(const std::string& name) {
  Cluster c;
  c.set_name(name);
  c.set_type(Cluster::EDS);
  c.mutable_connect_timeout()->set_seconds(1);
  c.mutable_eds_cluster_config()->mutable_eds_config()->mutable_ads();
  c.mutable_eds_cluster_config()->mutable_eds_config()->mutable_initial_fetch_timeout()->set_seconds(0);
  return c;
}

envoy::config::endpoint::v3::ClusterLoadAssignment assignment(const std::string& name,
                                                              const std::string& ip) {
  envoy::config::endpoint::v3::ClusterLoadAssignment cla;
  cla.set_cluster_name(name);
  auto* sa = cla.add_endpoints()
                 ->add_lb_endpoints()
                 ->mutable_endpoint()
                 ->mutable_address()
                 ->mutable_socket_address();
  sa->set_address(ip);
  sa->set_port_value(80);
  return cla;
}

TEST(XdsManagerValidateTest, NamesTheUnsupportedField) {
  EXPECT_EQ(validationError(adsBootstrap()), "");

  auto rest = adsBootstrap();
  rest.mutable_dynamic_resources()->mutable_ads_config()->set_api_type(
      envoy::config::core::v3::ApiConfigSource::REST);
  EXPECT_NE(validationError(rest).find("dynamic_resources.ads_config.api_type"), std::string::npos);

  auto path = adsBootstrap();
  path.mutable_dynamic_resources()->mutable_cds_config()->set_path("/etc/cds.yaml");
  EXPECT_NE(validationError(path).find("dynamic_resources.cds_config.path"), std::string::npos);

  auto no_ads = adsBootstrap();
  no_ads.mutable_dynamic_resources()->clear_ads_config();
  EXPECT_NE(validationError(no_ads).find("dynamic_resources.ads_config"), std::string::npos);

  auto missing_cluster = adsBootstrap();
  auto* svc = missing_cluster.mutable_dynamic_resources()->mutable_ads_config()->mutable_grpc_services(0);
  svc->mutable_envoy_grpc()->set_cluster_name("xds-grpc");
  EXPECT_NE(
      validationError(missing_cluster).find("envoy_grpc.cluster_name: 'xds-grpc' is not a static cluster"),
      std::string::npos);
}

TEST(XdsManagerValidateTest, EnvoyGrpcResolvesToTheStaticClustersAddress) {
  auto b = adsBootstrap();
  b.mutable_dynamic_resources()
      ->mutable_ads_config()
      ->mutable_grpc_services(0)
      ->mutable_envoy_grpc()
      ->set_cluster_name("xds-grpc");
  auto* c = b.mutable_static_resources()->add_clusters();
  c->set_name("xds-grpc");
  auto* sa = c->mutable_load_assignment()
                 ->add_endpoints()
                 ->add_lb_endpoints()
                 ->mutable_endpoint()
                 ->mutable_address()
                 ->mutable_socket_address();
  sa->set_address("10.1.2.3");
  sa->set_port_value(15010);
  EXPECT_EQ(XdsManager::adsTarget(b), "10.1.2.3:15010");
}

class XdsManagerTest : public ::testing::Test {
 protected:
  XdsManagerTest() : store_(1), clusters_(loop_, store_), xds_(loop_, store_, clusters_, adsBootstrap()) {
    clusters_.start();
  }
  void drain() {
    loop_.restart();
    loop_.poll();
  }
  xds::ConfigUpdate sotw(std::vector<xds::XdsResource> resources, const std::string& version) {
    xds::ConfigUpdate u;
    u.type_url = std::string(xds::kClusterType);
    u.resources = std::move(resources);
    u.system_version = version;
    u.state_of_the_world = true;
    return u;
  }

  asio::io_context loop_;
  stats::Store store_;
  upstream::ClusterManager clusters_;
  XdsManager xds_;
};

TEST_F(XdsManagerTest, AppliesValidClustersAndNacksTheBadOneByName) {
  Cluster good = edsCluster("good");
  Cluster bad = edsCluster("bad");
  bad.mutable_eds_cluster_config()->mutable_eds_config()->set_path("/x");
  Cluster broken_name = edsCluster("other");
  const std::string error = xds_.onClusters(sotw(
      {resourceOf(good, "good", "1"), resourceOf(bad, "bad", "1"), resourceOf(broken_name, "mismatch", "1")},
      "1"));
  EXPECT_NE(error.find("Error adding/updating cluster(s)"), std::string::npos) << error;
  EXPECT_NE(error.find("bad: eds_cluster_config.eds_config.path"), std::string::npos) << error;
  EXPECT_NE(error.find("mismatch: name"), std::string::npos) << error;
  EXPECT_EQ(clusters_.clusterNames(), std::vector<std::string>{"good"});  // Envoy applies the valid ones
  drain();
  EXPECT_EQ(xds_.edsNames(), std::vector<std::string>{"good"});
}

TEST_F(XdsManagerTest, SotwRemovesAbsentClustersAndEdsFollows) {
  Cluster a = edsCluster("a");
  Cluster b = edsCluster("b");
  b.mutable_eds_cluster_config()->set_service_name("svc-b");
  ASSERT_EQ(xds_.onClusters(sotw({resourceOf(a, "a", "1"), resourceOf(b, "b", "1")}, "1")), "");
  drain();
  EXPECT_EQ(xds_.edsNames(), (std::vector<std::string>{"a", "svc-b"}));

  // Endpoints for svc-b reach cluster b; a bad address NACKs naming the resource and field.
  xds::ConfigUpdate eds;
  eds.type_url = std::string(xds::kEndpointType);
  eds.state_of_the_world = true;
  eds.resources = {resourceOf(assignment("svc-b", "10.0.0.1"), "svc-b", "1"),
                   resourceOf(assignment("a", "not-an-ip"), "a", "1")};
  const std::string error = xds_.onEndpoints(eds);
  EXPECT_NE(error.find("a: cluster 'a': endpoints[0].lb_endpoints[0].endpoint.address.address"),
            std::string::npos)
      << error;
  ASSERT_NE(clusters_.hosts("b"), nullptr);
  EXPECT_EQ(clusters_.hosts("b")->hosts.size(), 1u);
  EXPECT_EQ(clusters_.hosts("a"), nullptr);  // still warming
  EXPECT_EQ(store_.counter("cluster.a.update_rejected").value(), 1u);

  ASSERT_EQ(xds_.onClusters(sotw({resourceOf(b, "b", "2")}, "2")), "");
  drain();
  EXPECT_EQ(clusters_.clusterNames(), std::vector<std::string>{"b"});
  EXPECT_EQ(xds_.edsNames(), std::vector<std::string>{"svc-b"});
  EXPECT_EQ(clusters_.cdsVersionInfo(), "2");
}

TEST_F(XdsManagerTest, ReadyOnlyAfterInitialCdsAndItsEndpoints) {
  bool fired = false;
  xds_.setInitializedCallback([&] { fired = true; });
  xds_.start();
  drain();
  EXPECT_FALSE(xds_.initialized());
  ASSERT_EQ(xds_.onClusters(sotw({resourceOf(edsCluster("a"), "a", "1")}, "1")), "");
  drain();
  EXPECT_FALSE(xds_.initialized());  // cluster a waits for its endpoints
  xds::ConfigUpdate eds;
  eds.type_url = std::string(xds::kEndpointType);
  eds.resources = {resourceOf(assignment("a", "10.0.0.2"), "a", "1")};
  ASSERT_EQ(xds_.onEndpoints(eds), "");
  drain();
  EXPECT_TRUE(xds_.initialized());
  EXPECT_TRUE(fired);
}

TEST_F(XdsManagerTest, ListenersAreNackedUntilASinkIsWired) {
  envoy::config::listener::v3::Listener listener;
  listener.set_name("l1");
  xds::ConfigUpdate lds;
  lds.type_url = std::string(xds::kListenerType);
  lds.state_of_the_world = true;
  lds.resources = {resourceOf(listener, "l1", "1")};
  EXPECT_NE(xds_.onListeners(lds).find("l1: dynamic listeners (LDS) are not wired"), std::string::npos);

  struct Sink : ListenerSink {
    std::vector<std::string> added, removed;
    std::string addOrUpdateListener(const envoy::config::listener::v3::Listener& l,
                                    const std::string&) override {
      if (l.name() == "bad") return "address: must be set";
      added.push_back(l.name());
      return "";
    }
    bool removeListener(const std::string& name) override {
      removed.push_back(name);
      return true;
    }
  } sink;
  xds_.setListenerSink(&sink);
  envoy::config::listener::v3::Listener bad;
  bad.set_name("bad");
  lds.resources.push_back(resourceOf(bad, "bad", "1"));
  EXPECT_EQ(xds_.onListeners(lds), "Error adding/updating listener(s) bad: address: must be set");
  EXPECT_EQ(sink.added, std::vector<std::string>{"l1"});
  lds.resources = {};
  EXPECT_EQ(xds_.onListeners(lds), "");
  EXPECT_EQ(sink.removed, std::vector<std::string>{"l1"});
}

}  // namespace
}  // namespace skiff::server
