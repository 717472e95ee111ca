// XdsManager: bootstrap checks, CDS/EDS application with Envoy's partial-apply-and-NACK rule, SotW removals,
// EDS subscription names following CDS, readiness.
#include "server/xds/xds_manager.h"

#include <gtest/gtest.h>

#include "envoy/extensions/transport_sockets/tls/v3/secret.pb.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls.pb.h"
#include "envoy/extensions/upstreams/http/v3/http_protocol_options.pb.h"
#include "server/xds/control_plane_tls.h"
#include "server/xds/route_config_provider.h"
#include "server/xds/secret_refs.h"

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

namespace skiff::server {
namespace {

TEST_F(XdsManagerTest, UnchangedAssignmentIsANoOpWithoutRebuild) {
  ASSERT_EQ(xds_.onClusters(sotw({resourceOf(edsCluster("a"), "a", "1")}, "1")), "");
  drain();
  xds::ConfigUpdate eds;
  eds.type_url = std::string(xds::kEndpointType);
  eds.state_of_the_world = true;
  eds.resources = {resourceOf(assignment("a", "10.0.0.1"), "a", "1")};
  ASSERT_EQ(xds_.onEndpoints(eds), "");
  const auto hosts = clusters_.hosts("a");
  ASSERT_NE(hosts, nullptr);
  eds.resources = {resourceOf(assignment("a", "10.0.0.1"), "a", "2")};  // a SotW resend
  ASSERT_EQ(xds_.onEndpoints(eds), "");
  EXPECT_EQ(clusters_.hosts("a"), hosts);  // the same host set: nothing rebuilt or republished
  EXPECT_EQ(store_.counter("cluster.a.update_no_rebuild").value(), 1u);
  EXPECT_EQ(store_.counter("cluster.a.update_success").value(), 2u);
  eds.resources = {resourceOf(assignment("a", "10.0.0.9"), "a", "3")};  // a real change still applies
  ASSERT_EQ(xds_.onEndpoints(eds), "");
  EXPECT_EQ(clusters_.hosts("a")->hosts.at(0)->address(), "10.0.0.9:80");
}

// HttpProtocolOptions packed into an Any with its fields in the given order (a control plane's encoder may
// write them in any order; the message is the same).
google::protobuf::Any httpOptionsAny(bool reversed, int idle_seconds = 30) {
  envoy::extensions::upstreams::http::v3::HttpProtocolOptions common, explicit_h2;
  common.mutable_common_http_protocol_options()->mutable_idle_timeout()->set_seconds(idle_seconds);
  explicit_h2.mutable_explicit_http_config()->mutable_http2_protocol_options();
  google::protobuf::Any any;
  any.set_type_url("type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions");
  any.set_value(reversed ? explicit_h2.SerializeAsString() + common.SerializeAsString()
                         : common.SerializeAsString() + explicit_h2.SerializeAsString());
  return any;
}

Cluster clusterWithHttpOptions(bool reversed, int idle_seconds = 30) {
  Cluster c = edsCluster("a");
  (*c.mutable_typed_extension_protocol_options())["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"] =
      httpOptionsAny(reversed, idle_seconds);
  return c;
}

// A resend whose Any is encoded differently (field order inside the packed message) is the same cluster:
// no new ClusterInfo, no cluster_modified, no re-warming. A real change inside the Any still applies.
TEST_F(XdsManagerTest, ClusterWithAnEquallyPackedAnyIsUnchanged) {
  ASSERT_NE(httpOptionsAny(false).value(), httpOptionsAny(true).value());
  // Deterministic serialization keeps an Any's bytes as they are: comparing bytes alone would churn.
  ASSERT_NE(upstream::clusterConfigBytes(clusterWithHttpOptions(false)),
            upstream::clusterConfigBytes(clusterWithHttpOptions(true)));
  ASSERT_EQ(xds_.onClusters(sotw({resourceOf(clusterWithHttpOptions(false), "a", "1")}, "1")), "");
  const auto info = clusters_.latestInfo("a");
  ASSERT_NE(info, nullptr);
  ASSERT_EQ(xds_.onClusters(sotw({resourceOf(clusterWithHttpOptions(true), "a", "2")}, "2")), "");
  EXPECT_EQ(clusters_.latestInfo("a"), info);
  EXPECT_EQ(store_.counter("cluster_manager.cluster_modified").value(), 0u);
  // The same packing again takes the fast path (the record now has its hash) and stays unchanged.
  ASSERT_EQ(xds_.onClusters(sotw({resourceOf(clusterWithHttpOptions(true), "a", "3")}, "3")), "");
  EXPECT_EQ(clusters_.latestInfo("a"), info);
  ASSERT_EQ(xds_.onClusters(sotw({resourceOf(clusterWithHttpOptions(true, 45), "a", "4")}, "4")), "");
  EXPECT_NE(clusters_.latestInfo("a"), info);
  EXPECT_EQ(store_.counter("cluster_manager.cluster_modified").value(), 1u);
}

envoy::config::core::v3::TransportSocket upstreamTlsWithAdsSecret(const std::string& name) {
  envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext tls;
  auto* sds = tls.mutable_common_tls_context()->mutable_validation_context_sds_secret_config();
  sds->set_name(name);
  sds->mutable_sds_config()->mutable_ads();
  envoy::config::core::v3::TransportSocket socket;
  socket.set_name("envoy.transport_sockets.tls");
  socket.mutable_typed_config()->PackFrom(tls);
  return socket;
}

TEST(SecretRefsTest, FindsOnlyAdsSecretsOfTlsTransportSockets) {
  Cluster c = edsCluster("c");
  *c.mutable_transport_socket() = upstreamTlsWithAdsSecret("root-ca");
  auto* match = c.add_transport_socket_matches();
  *match->mutable_transport_socket() = upstreamTlsWithAdsSecret("other-root");
  EXPECT_EQ(adsSecretNames(c), (std::set<std::string>{"other-root", "root-ca"}));

  envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext down;
  auto* cert = down.mutable_common_tls_context()->add_tls_certificate_sds_secret_configs();
  cert->set_name("default");
  cert->mutable_sds_config()->mutable_ads();
  auto* file = down.mutable_common_tls_context()->add_tls_certificate_sds_secret_configs();
  file->set_name("from-file");
  file->mutable_sds_config()->set_path("/etc/sds.yaml");  // not ADS: not subscribed
  auto* validation = down.mutable_common_tls_context()
                         ->mutable_combined_validation_context()
                         ->mutable_validation_context_sds_secret_config();
  validation->set_name("ROOTCA");
  validation->mutable_sds_config()->mutable_ads();
  envoy::config::listener::v3::Listener l;
  auto* ts = l.add_filter_chains()->mutable_transport_socket();
  ts->set_name("envoy.transport_sockets.tls");
  ts->mutable_typed_config()->PackFrom(down);
  EXPECT_EQ(adsSecretNames(l), (std::set<std::string>{"ROOTCA", "default"}));
  EXPECT_TRUE(adsSecretNames(edsCluster("plain")).empty());
}

TEST_F(XdsManagerTest, ClusterWaitsForItsAdsSecret) {
  Cluster c = edsCluster("tls");
  *c.mutable_transport_socket() = upstreamTlsWithAdsSecret("xds-test-root");
  ASSERT_EQ(xds_.onClusters(sotw({resourceOf(c, "tls", "1")}, "1")), "");  // ACKed, warming
  drain();
  EXPECT_TRUE(clusters_.clusterNames().empty());
  EXPECT_EQ(xds_.warmingOnSecrets(), std::vector<std::string>{"tls"});
  EXPECT_EQ(xds_.sdsNames(), std::vector<std::string>{"xds-test-root"});

  envoy::extensions::transport_sockets::tls::v3::Secret secret;
  secret.set_name("xds-test-root");
  secret.mutable_validation_context()->mutable_trusted_ca()->set_inline_string("-----BEGIN CERTIFICATE-----");
  xds::ConfigUpdate sds;
  sds.type_url = std::string(xds::kSecretType);
  sds.resources = {resourceOf(secret, "xds-test-root", "1")};
  ASSERT_EQ(xds_.onSecrets(sds), "");
  drain();
  EXPECT_TRUE(xds_.warmingOnSecrets().empty());
  EXPECT_EQ(clusters_.clusterNames(), std::vector<std::string>{"tls"});

  // The cluster goes away: so does the subscription.
  ASSERT_EQ(xds_.onClusters(sotw({}, "2")), "");
  drain();
  EXPECT_TRUE(xds_.sdsNames().empty());
}

}  // namespace
}  // namespace skiff::server

namespace skiff::server {
namespace {

TEST(ControlPlaneTlsTest, ReadsEnvoyGrpcClusterAndGoogleGrpcCredentials) {
  auto b = adsBootstrap();
  EXPECT_FALSE(controlPlaneTls(b).has_value());  // plaintext
  auto* svc = b.mutable_dynamic_resources()->mutable_ads_config()->mutable_grpc_services(0);
  svc->mutable_envoy_grpc()->set_cluster_name("xds-grpc");
  auto* c = b.mutable_static_resources()->add_clusters();
  c->set_name("xds-grpc");
  envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext tls;
  tls.set_sni("istiod.istio-system.svc");
  tls.mutable_common_tls_context()->mutable_validation_context()->mutable_trusted_ca()->set_inline_string(
      "ROOT");
  auto* cert = tls.mutable_common_tls_context()->add_tls_certificates();
  cert->mutable_certificate_chain()->set_inline_string("CHAIN");
  cert->mutable_private_key()->set_inline_bytes("KEY");
  c->mutable_transport_socket()->set_name("envoy.transport_sockets.tls");
  c->mutable_transport_socket()->mutable_typed_config()->PackFrom(tls);
  auto got = controlPlaneTls(b);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->root_certs, "ROOT");
  EXPECT_EQ(got->cert_chain, "CHAIN");
  EXPECT_EQ(got->private_key, "KEY");
  EXPECT_EQ(got->sni, "istiod.istio-system.svc");

  // A secret from SDS cannot secure the channel that would deliver it.
  auto* sds = tls.mutable_common_tls_context()->mutable_validation_context_sds_secret_config();
  sds->set_name("ROOTCA");
  sds->mutable_sds_config()->mutable_ads();
  c->mutable_transport_socket()->mutable_typed_config()->PackFrom(tls);
  try {
    controlPlaneTls(b);
    ADD_FAILURE() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("validation_context_sds_secret_config.sds_config"),
              std::string::npos)
        << e.what();
  }

  auto g = adsBootstrap();
  auto* google =
      g.mutable_dynamic_resources()->mutable_ads_config()->mutable_grpc_services(0)->mutable_google_grpc();
  google->set_target_uri("istiod:15012");
  google->mutable_channel_credentials()->mutable_ssl_credentials()->mutable_root_certs()->set_inline_string(
      "R");
  ASSERT_TRUE(controlPlaneTls(g).has_value());
  EXPECT_EQ(controlPlaneTls(g)->root_certs, "R");
  google->mutable_channel_credentials()->mutable_google_default();
  EXPECT_THROW(controlPlaneTls(g), std::invalid_argument);
}

}  // namespace
}  // namespace skiff::server
