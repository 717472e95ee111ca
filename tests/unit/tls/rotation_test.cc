// SDS: static secrets, file-based SDS with a watched directory, and certificate rotation (new handshakes
// get the new certificate within a second, established connections keep working).
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "envoy/extensions/transport_sockets/tls/v3/secret.pb.h"
#include "unit/tls/tls_test_util.h"

namespace skiff::tls::testing {
namespace {

class SdsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_dir_ = pki_.workload("server", "shop", "cart");
    client_dir_ = pki_.workload("client", "shop", "frontend");
    // Istio's shape: a "default" certificate secret and a "ROOTCA" validation secret, here from one file.
    pki_.write("sds.yaml", R"(resources:
- "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret
  name: default
  tls_certificate:
    certificate_chain: {filename: ")" +
                               server_dir_ + R"(/cert-chain.pem"}
    private_key: {filename: ")" +
                               server_dir_ + R"(/key.pem"}
- "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret
  name: ROOTCA
  validation_context:
    trusted_ca: {filename: ")" +
                               server_dir_ + R"(/root-cert.pem"}
)");
  }

  std::string sdsServerYaml() {
    const std::string source = "sds_config: {path_config_source: {path: \"" + pki_.path("sds.yaml") +
                               "\", watched_directory: {path: \"" + server_dir_ + "\"}}}";
    return "common_tls_context: {tls_certificate_sds_secret_configs: [{name: default, " + source +
           "}], combined_validation_context: {default_validation_context: {match_subject_alt_names: "
           "[{prefix: "
           "\"spiffe://cluster.local/ns/shop/\"}]}, validation_context_sds_secret_config: {name: ROOTCA, " +
           source + "}}}\nrequire_client_certificate: true\n";
  }
  std::string clientYaml() {
    return "common_tls_context: {" + certYaml(client_dir_) +
           ", validation_context: {trusted_ca: {filename: \"" + pki_.root() +
           "\"}}, tls_params: {tls_maximum_protocol_version: TLSv1_3}}\n";
  }

  Pki pki_;
  std::string server_dir_, client_dir_;
  asio::io_context io_;
  stats::Store store_{1};
};

TEST_F(SdsTest, StaticSecrets) {
  SecretManager secrets;
  envoy::extensions::transport_sockets::tls::v3::Secret secret;
  secret.set_name("default");
  secret.mutable_tls_certificate()->mutable_certificate_chain()->set_filename(server_dir_ +
                                                                              "/cert-chain.pem");
  secret.mutable_tls_certificate()->mutable_private_key()->set_filename(server_dir_ + "/key.pem");
  secrets.addStaticSecret(secret);
  auto server = serverContext("common_tls_context: {tls_certificate_sds_secret_configs: [{name: default}]}",
                              store_, &secrets);
  ASSERT_NE(server->current(), nullptr) << server->lastError();
  auto client = clientContext(clientYaml(), store_);
  Connection conn(io_, client, server);
  ASSERT_TRUE(conn.handshake(io_));
  EXPECT_FALSE(*conn.client_ec) << conn.client.failureReason();
  EXPECT_EQ(conn.client.info().uri_san_peer, std::vector<std::string>{spiffe("shop", "cart")});
}

TEST_F(SdsTest, MissingSecretLeavesNoContextUntilItArrives) {
  SecretManager secrets;
  auto server = serverContext("common_tls_context: {tls_certificate_sds_secret_configs: [{name: late}]}",
                              store_, &secrets);
  EXPECT_EQ(server->current(), nullptr);
  EXPECT_NE(server->lastError().find("late"), std::string::npos);
  envoy::extensions::transport_sockets::tls::v3::Secret secret;
  secret.set_name("late");
  secret.mutable_tls_certificate()->mutable_certificate_chain()->set_filename(server_dir_ +
                                                                              "/cert-chain.pem");
  secret.mutable_tls_certificate()->mutable_private_key()->set_filename(server_dir_ + "/key.pem");
  secrets.staticStore().update(secret);  // how ADS will deliver it
  EXPECT_NE(server->current(), nullptr) << server->lastError();
  EXPECT_EQ(server->generation(), 1u);
  secrets.staticStore().update(secret);  // same content: no rebuild
  EXPECT_EQ(server->generation(), 1u);
}

// A cluster or listener update can drop a context's last reference on a worker while the secrets thread is
// delivering a rotation to it: the delivery must find the context gone, not rebuild freed memory (ASan).
TEST_F(SdsTest, ContextReleasedWhileARotationIsBeingDeliveredIsLeftAlone) {
  auto secretFrom = [](const std::string& dir) {
    envoy::extensions::transport_sockets::tls::v3::Secret secret;
    secret.set_name("default");
    secret.mutable_tls_certificate()->mutable_certificate_chain()->set_filename(dir + "/cert-chain.pem");
    secret.mutable_tls_certificate()->mutable_private_key()->set_filename(dir + "/key.pem");
    return secret;
  };
  SecretManager secrets;
  secrets.staticStore().update(secretFrom(server_dir_));
  // Subscribed first, so notified first: it holds the delivery until the context has been released.
  std::promise<void> delivering, released;
  auto gate = secrets.staticStore().subscribe("default", [&, wait = released.get_future().share()] {
    delivering.set_value();
    wait.wait();
  });
  auto server = serverContext("common_tls_context: {tls_certificate_sds_secret_configs: [{name: default}]}",
                              store_, &secrets);
  ASSERT_NE(server->current(), nullptr) << server->lastError();
  std::weak_ptr<TlsContext> weak = server;
  std::thread notifier([&] { secrets.staticStore().update(secretFrom(client_dir_)); });
  delivering.get_future().wait();
  server.reset();
  EXPECT_TRUE(weak.expired());
  released.set_value();
  notifier.join();
  EXPECT_NE(secrets.staticStore().secret("default"), nullptr);
}

TEST_F(SdsTest, RotationViaWatchedDirectory) {
  SecretManager secrets;
  auto server = serverContext(sdsServerYaml(), store_, &secrets);
  ASSERT_NE(server->current(), nullptr) << server->lastError();
  secrets.startWatching(io_, 50ms);
  auto client = clientContext(clientYaml(), store_);

  Connection before(io_, client, server);
  ASSERT_TRUE(before.handshake(io_));
  ASSERT_FALSE(*before.client_ec) << before.client.failureReason();
  ASSERT_FALSE(*before.server_ec) << before.server.failureReason();
  const std::string old_serial = before.client.info().serial_peer;

  const uint64_t generation = server->generation();
  auto renewed_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(pki_.renew("server"));
  ASSERT_TRUE(runUntil(
      io_, [&] { return server->generation() > generation; }, 1000ms))
      << "rotation not picked up within 1 s: " << server->lastError();
  auto took =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - renewed_at);
  std::cout << "[ measured ] rotation picked up after " << took.count() << " ms (poll 50 ms)\n";

  Connection after(io_, client, server);
  ASSERT_TRUE(after.handshake(io_));
  ASSERT_FALSE(*after.client_ec) << after.client.failureReason();
  EXPECT_NE(after.client.info().serial_peer, old_serial);
  EXPECT_EQ(after.client.info().uri_san_peer, std::vector<std::string>{spiffe("shop", "cart")});

  // The connection made before the rotation still carries data both ways.
  EXPECT_EQ(before.exchange(io_, before.client, before.server, "still here"), "still here");
  EXPECT_EQ(before.exchange(io_, before.server, before.client, "yes"), "yes");
}

TEST_F(SdsTest, BadSdsFileKeepsPreviousSecrets) {
  SecretManager secrets;
  auto server = serverContext(sdsServerYaml(), store_, &secrets);
  ASSERT_NE(server->current(), nullptr);
  secrets.startWatching(io_, 20ms);
  const uint64_t generation = server->generation();
  pki_.write("sds.yaml", "resources: [ {\"@type\": not-a-type");
  runUntil(
      io_, [] { return false; }, 200ms);  // several polls see the broken file
  EXPECT_EQ(server->generation(), generation);
  EXPECT_NE(server->current(), nullptr);
}

}  // namespace
}  // namespace skiff::tls::testing
