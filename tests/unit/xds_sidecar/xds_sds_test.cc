// XdsManager's SDS side: Envoy's sds.<name>.* stats, secrets in /config_dump (active and warming), and the
// initial_fetch_timeout of each SdsSecretConfig.
#include <gtest/gtest.h>

#include <chrono>

#include "envoy/extensions/transport_sockets/tls/v3/secret.pb.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls.pb.h"
#include "server/xds/version_hash.h"
#include "server/xds/xds_manager.h"

namespace skiff::server {
namespace {

using envoy::config::cluster::v3::Cluster;
using envoy::extensions::transport_sockets::tls::v3::Secret;

envoy::config::bootstrap::v3::Bootstrap adsBootstrap() {
  envoy::config::bootstrap::v3::Bootstrap b;
  auto* ads = b.mutable_dynamic_resources()->mutable_ads_config();
  ads->set_api_type(envoy::config::core::v3::ApiConfigSource::GRPC);
  ads->add_grpc_services()->mutable_google_grpc()->set_target_uri("127.0.0.1:1");
  b.mutable_dynamic_resources()->mutable_cds_config()->mutable_ads();
  b.mutable_node()->set_id("node-1");
  return b;
}

xds::XdsResource resourceOf(const google::protobuf::Message& m, const std::string& name,
                            const std::string& version) {
  xds::XdsResource r;
  r.name = name;
  r.version = version;
  r.resource.PackFrom(m);
  return r;
}

// A STATIC cluster whose upstream TLS takes its validation context from ADS secret `secret`.
Cluster tlsCluster(const std::string& name, const std::string& secret, int timeout_ms = -1) {
  Cluster c;
  c.set_name(name);
  c.set_type(Cluster::STATIC);
  c.mutable_connect_timeout()->set_seconds(1);
  envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext tls;
  auto* sds = tls.mutable_common_tls_context()->mutable_validation_context_sds_secret_config();
  sds->set_name(secret);
  sds->mutable_sds_config()->mutable_ads();
  if (timeout_ms >= 0) {
    sds->mutable_sds_config()->mutable_initial_fetch_timeout()->set_nanos(timeout_ms * 1000000);
  }
  c.mutable_transport_socket()->set_name("envoy.transport_sockets.tls");
  c.mutable_transport_socket()->mutable_typed_config()->PackFrom(tls);
  return c;
}

Secret rootSecret(const std::string& name) {
  Secret s;
  s.set_name(name);
  s.mutable_validation_context()->mutable_trusted_ca()->set_inline_string("-----BEGIN CERTIFICATE-----");
  return s;
}

class XdsSdsTest : public ::testing::Test {
 protected:
  XdsSdsTest() : store_(1), clusters_(loop_, store_), xds_(loop_, store_, clusters_, adsBootstrap()) {
    clusters_.start();
  }
  void drain() {
    loop_.restart();
    loop_.poll();
  }
  // Runs the loop until `done` or the deadline.
  bool runUntil(const std::function<bool()>& done, std::chrono::milliseconds deadline) {
    const auto end = std::chrono::steady_clock::now() + deadline;
    while (!done() && std::chrono::steady_clock::now() < end) {
      loop_.restart();
      loop_.run_for(std::chrono::milliseconds(10));
    }
    return done();
  }
  std::string applyClusters(std::vector<xds::XdsResource> resources, const std::string& version) {
    xds::ConfigUpdate u;
    u.type_url = std::string(xds::kClusterType);
    u.resources = std::move(resources);
    u.system_version = version;
    u.state_of_the_world = true;
    std::string error = xds_.onClusters(u);
    drain();
    return error;
  }
  std::string applySecrets(std::vector<xds::XdsResource> resources) {
    xds::ConfigUpdate u;
    u.type_url = std::string(xds::kSecretType);
    u.resources = std::move(resources);
    u.state_of_the_world = true;
    std::string error = xds_.onSecrets(u);
    drain();
    return error;
  }
  uint64_t counter(const std::string& name) { return store_.counter(name).value(); }
  std::string text(const std::string& name) {
    for (const auto& s : store_.snapshot([&](std::string_view n) { return n == name; })) return s.text;
    return "<missing>";
  }

  asio::io_context loop_;
  stats::Store store_;
  upstream::ClusterManager clusters_;
  XdsManager xds_;
};

TEST_F(XdsSdsTest, StatsFollowEnvoysNames) {
  ASSERT_EQ(applyClusters({resourceOf(tlsCluster("c", "root-ca"), "c", "1")}, "1"), "");
  // Listed (at zero) as soon as the secret is subscribed.
  EXPECT_EQ(counter("sds.root-ca.update_attempt"), 0u);
  EXPECT_EQ(text("sds.root-ca.version_text"), "<missing>");

  ASSERT_EQ(applySecrets({resourceOf(rootSecret("root-ca"), "root-ca", "v1")}), "");
  EXPECT_EQ(counter("sds.root-ca.update_attempt"), 1u);
  EXPECT_EQ(counter("sds.root-ca.update_success"), 1u);
  EXPECT_EQ(counter("sds.root-ca.update_rejected"), 0u);
  EXPECT_EQ(store_.gauge("sds.root-ca.version").value(), static_cast<int64_t>(xxHash64("v1")));
  EXPECT_GT(store_.gauge("sds.root-ca.update_time").value(), 0);
  EXPECT_EQ(text("sds.root-ca.version_text"), "v1");
  EXPECT_EQ(counter("sds.root-ca.key_rotation_failed"), 0u);

  // A resend of the same secret is an attempt and a success (SotW), a bad one is rejected by name.
  ASSERT_EQ(applySecrets({resourceOf(rootSecret("root-ca"), "root-ca", "v2")}), "");
  EXPECT_EQ(counter("sds.root-ca.update_success"), 2u);
  EXPECT_EQ(text("sds.root-ca.version_text"), "v2");
  const std::string error = applySecrets({resourceOf(rootSecret("other"), "root-ca", "v3")});
  EXPECT_NE(error.find("root-ca: name"), std::string::npos) << error;
  EXPECT_EQ(counter("sds.root-ca.update_attempt"), 3u);
  EXPECT_EQ(counter("sds.root-ca.update_rejected"), 1u);
  EXPECT_EQ(text("sds.root-ca.version_text"), "v2");  // the good version stays
}

TEST_F(XdsSdsTest, ConfigDumpShowsActiveAndWarmingSecrets) {
  ASSERT_EQ(applyClusters({resourceOf(tlsCluster("a", "root-ca"), "a", "1"),
                           resourceOf(tlsCluster("b", "not-yet", 0), "b", "1")},
                          "1"),
            "");
  ASSERT_EQ(applySecrets({resourceOf(rootSecret("root-ca"), "root-ca", "v1")}), "");
  envoy::admin::v3::SecretsConfigDump dump;
  xds_.dumpSecrets([](const std::string&) { return true; }, dump);
  ASSERT_EQ(dump.dynamic_active_secrets_size(), 1);
  const auto& active = dump.dynamic_active_secrets(0);
  EXPECT_EQ(active.name(), "root-ca");
  EXPECT_EQ(active.version_info(), "v1");
  EXPECT_GT(active.last_updated().seconds(), 0);
  Secret secret;
  ASSERT_TRUE(active.secret().UnpackTo(&secret));
  EXPECT_EQ(secret.name(), "root-ca");
  EXPECT_TRUE(secret.has_validation_context());

  ASSERT_EQ(dump.dynamic_warming_secrets_size(), 1);
  EXPECT_EQ(dump.dynamic_warming_secrets(0).name(), "not-yet");
  EXPECT_EQ(dump.dynamic_warming_secrets(0).version_info(), "");
  ASSERT_TRUE(dump.dynamic_warming_secrets(0).secret().UnpackTo(&secret));
  EXPECT_EQ(secret.name(), "not-yet");
  EXPECT_FALSE(secret.has_validation_context());

  envoy::admin::v3::SecretsConfigDump filtered;
  xds_.dumpSecrets([](const std::string& name) { return name == "not-yet"; }, filtered);
  EXPECT_EQ(filtered.dynamic_active_secrets_size(), 0);
  EXPECT_EQ(filtered.dynamic_warming_secrets_size(), 1);
}

TEST_F(XdsSdsTest, EachSecretHasItsOwnInitialFetchTimeout) {
  ASSERT_EQ(applyClusters({resourceOf(tlsCluster("fast", "short-wait", 50), "fast", "1"),
                           resourceOf(tlsCluster("never", "no-timeout", 0), "never", "1")},
                          "1"),
            "");
  EXPECT_EQ(xds_.warmingOnSecrets(), (std::vector<std::string>{"fast", "never"}));
  // The 50 ms secret times out: its cluster goes on without it (Envoy's rule); 0 waits forever.
  ASSERT_TRUE(
      runUntil([&] { return counter("sds.short-wait.init_fetch_timeout") == 1; }, std::chrono::seconds(5)));
  EXPECT_EQ(xds_.warmingOnSecrets(), std::vector<std::string>{"never"});
  EXPECT_EQ(clusters_.clusterNames(), std::vector<std::string>{"fast"});
  loop_.restart();
  loop_.run_for(std::chrono::milliseconds(200));
  EXPECT_EQ(xds_.warmingOnSecrets(), std::vector<std::string>{"never"});
  EXPECT_EQ(counter("sds.no-timeout.init_fetch_timeout"), 0u);

  // The late secret still arrives and is taken; the one that never timed out releases its cluster.
  ASSERT_EQ(applySecrets({resourceOf(rootSecret("short-wait"), "short-wait", "1"),
                          resourceOf(rootSecret("no-timeout"), "no-timeout", "1")}),
            "");
  EXPECT_TRUE(xds_.warmingOnSecrets().empty());
  EXPECT_EQ(clusters_.clusterNames(), (std::vector<std::string>{"fast", "never"}));
  EXPECT_EQ(counter("sds.short-wait.update_success"), 1u);
}

}  // namespace
}  // namespace skiff::server
