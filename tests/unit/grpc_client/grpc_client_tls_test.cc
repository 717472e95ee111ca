// The side-call client on clusters with an UpstreamTlsContext (mTLS with SAN matching and SNI, as Istio
// configures it) and with GrpcService.retry_policy.
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>
#include <gtest/gtest.h>

#include <asio/io_context.hpp>
#include <fstream>
#include <optional>
#include <sstream>

#include "../tls/tls_test_util.h"
#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/core/v3/grpc_service.pb.h"
#include "raw_echo_server.h"
#include "skiff/grpc/async_client.h"
#include "skiff/upstream/cluster_info.h"
#include "skiff/upstream/thread_local_cluster.h"
#include "skiff/upstream/transport_socket.h"

namespace skiff::grpc {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs `io` until `done()` or 5 s (restarting it: between posted completions it runs out of work).
bool runUntil(asio::io_context& io, const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    io.restart();
    io.run_for(std::chrono::milliseconds(5));
  }
  return done();
}

struct Result : RawCallbacks {
  std::vector<std::string> messages;
  std::optional<Status> closed;
  void onMessage(std::string&& m) override { messages.push_back(std::move(m)); }
  void onClose(const Status& s) override { closed = s; }
};

class GrpcClientTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_dir_ =
        pki_.workload("server", "default", "authz", std::chrono::seconds(0), {"authz.local", "localhost"});
    client_dir_ = pki_.workload("client", "default", "app");
    ::grpc::SslServerCredentialsOptions ssl(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    ssl.pem_root_certs = slurp(pki_.root());
    ssl.pem_key_cert_pairs.push_back(
        {slurp(server_dir_ + "/key.pem"), slurp(server_dir_ + "/cert-chain.pem")});
    ::grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", ::grpc::SslServerCredentials(ssl), &port_);
    builder.RegisterCallbackGenericService(&echo_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(port_, 0);
  }
  void TearDown() override { server_->Shutdown(std::chrono::system_clock::now()); }

  // A static cluster "<name>" to the server whose transport socket is `tls_yaml` (an UpstreamTlsContext).
  void addCluster(const std::string& name, const std::string& tls_yaml) {
    auto tls =
        tls::testing::parseYaml<envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext>(tls_yaml);
    envoy::config::cluster::v3::Cluster proto;
    proto.set_name(name);
    proto.mutable_transport_socket()->set_name("envoy.transport_sockets.tls");
    proto.mutable_transport_socket()->mutable_typed_config()->PackFrom(tls);
    auto info = std::make_shared<const upstream::ClusterInfo>(proto, stats::defaultStore(), false, "");
    ASSERT_TRUE(info->transport && info->transport->anyTls());
    auto hosts = std::make_shared<upstream::HostSet>();
    auto host = std::make_shared<upstream::Host>();
    host->endpoint = asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_);
    hosts->hosts.push_back(host);
    clusters_.update(name, info, hosts);
  }
  std::string mtlsYaml(const std::string& san) const {
    return "{sni: authz.local, common_tls_context: {" + tls::testing::certYaml(client_dir_) +
           ", validation_context: {trusted_ca: {filename: \"" + pki_.root() +
           "\"}, match_typed_subject_alt_names: [{san_type: URI, matcher: {exact: \"" + san + "\"}}]}}}";
  }
  std::optional<Status> call(const std::string& cluster) {
    ServiceConfig svc;
    svc.cluster = cluster;
    svc.authority = cluster;
    Result r;
    RawCallOptions opts;
    opts.timeout = std::chrono::seconds(5);
    auto s = client_.rawUnary(svc, "test.Raw", "Echo", "hello", r, opts);
    runUntil(io_, [&] { return r.closed.has_value(); });
    if (r.closed && r.closed->ok()) {
      EXPECT_EQ(r.messages, std::vector<std::string>{"hello"});
    }
    return r.closed;
  }

  tls::testing::Pki pki_;
  std::string server_dir_, client_dir_;
  asio::io_context io_;
  upstream::ThreadLocalClusterManager clusters_;
  AsyncClient client_{io_, clusters_};
  testing::RawEchoService echo_;
  std::unique_ptr<::grpc::Server> server_;
  int port_ = 0;
};

TEST_F(GrpcClientTlsTest, MutualTlsWithMatchingSanSucceeds) {
  addCluster("authz_mtls", mtlsYaml(tls::testing::spiffe("default", "authz")));
  auto status = call("authz_mtls");
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(status->ok()) << status->code << " " << status->message;
  EXPECT_EQ(echo_.calls.load(), 1);
}

TEST_F(GrpcClientTlsTest, WrongSanIsRefused) {
  addCluster("authz_wrong_san", mtlsYaml(tls::testing::spiffe("default", "someone-else")));
  auto status = call("authz_wrong_san");
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->code, kUnavailable) << status->message;
  EXPECT_EQ(echo_.calls.load(), 0);
}

TEST_F(GrpcClientTlsTest, UntrustedServerIsRefused) {
  const std::string yaml = "{common_tls_context: {" + tls::testing::certYaml(client_dir_) +
                           ", validation_context: {trusted_ca: {filename: \"" + pki_.otherRoot() + "\"}}}}";
  addCluster("authz_other_ca", yaml);
  auto status = call("authz_other_ca");
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->code, kUnavailable) << status->message;
  EXPECT_EQ(echo_.calls.load(), 0);
}

TEST_F(GrpcClientTlsTest, MissingClientCertificateIsRefusedByTheServer) {
  addCluster("authz_no_cert",
             "{common_tls_context: {validation_context: {trusted_ca: {filename: \"" + pki_.root() + "\"}}}}");
  auto status = call("authz_no_cert");
  ASSERT_TRUE(status.has_value());
  EXPECT_FALSE(status->ok());
  EXPECT_EQ(echo_.calls.load(), 0);
}

// google_grpc with channel_credentials.ssl_credentials: gRPC's own SSL credentials (host-name checked
// against the target), client certificate included.
TEST_F(GrpcClientTlsTest, GoogleGrpcSslCredentials) {
  envoy::config::core::v3::GrpcService proto;
  auto* g = proto.mutable_google_grpc();
  g->set_target_uri("localhost:" + std::to_string(port_));
  auto* ssl = g->mutable_channel_credentials()->mutable_ssl_credentials();
  ssl->mutable_root_certs()->set_filename(pki_.root());
  ssl->mutable_cert_chain()->set_filename(client_dir_ + "/cert-chain.pem");
  ssl->mutable_private_key()->set_filename(client_dir_ + "/key.pem");
  ServiceConfig svc = ServiceConfig::fromProto(proto, "grpc_service");
  ASSERT_NE(svc.google_ssl, nullptr);
  Result ok;
  RawCallOptions opts;
  opts.timeout = std::chrono::seconds(5);
  auto a = client_.rawUnary(svc, "test.Raw", "Echo", "hi", ok, opts);
  runUntil(io_, [&] { return ok.closed.has_value(); });
  ASSERT_TRUE(ok.closed.has_value());
  EXPECT_TRUE(ok.closed->ok()) << ok.closed->code << " " << ok.closed->message;

  // Without the client certificate the server refuses the handshake.
  ssl->clear_cert_chain();
  ssl->clear_private_key();
  ServiceConfig no_cert = ServiceConfig::fromProto(proto, "grpc_service");
  Result refused;
  auto b = client_.rawUnary(no_cert, "test.Raw", "Echo", "hi", refused, opts);
  runUntil(io_, [&] { return refused.closed.has_value(); });
  ASSERT_TRUE(refused.closed.has_value());
  EXPECT_EQ(refused.closed->code, kUnavailable);
  EXPECT_EQ(echo_.calls.load(), 1);
}

// GrpcService.retry_policy: a call that fails UNAVAILABLE once succeeds on the retry; without the policy
// the failure surfaces.
TEST(GrpcClientRetryTest, RetryPolicyRetriesUnavailable) {
  testing::RawEchoService echo;
  int port = 0;
  ::grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", ::grpc::InsecureServerCredentials(), &port);
  builder.RegisterCallbackGenericService(&echo);
  auto server = builder.BuildAndStart();
  ASSERT_NE(port, 0);
  asio::io_context io;
  upstream::ThreadLocalClusterManager clusters;
  AsyncClient client(io, clusters);

  envoy::config::core::v3::GrpcService proto;
  proto.mutable_google_grpc()->set_target_uri("127.0.0.1:" + std::to_string(port));
  ServiceConfig plain = ServiceConfig::fromProto(proto, "grpc_service");
  proto.mutable_retry_policy()->mutable_num_retries()->set_value(2);
  proto.mutable_retry_policy()->mutable_retry_back_off()->mutable_base_interval()->set_nanos(10'000'000);
  ServiceConfig retrying = ServiceConfig::fromProto(proto, "grpc_service");
  EXPECT_TRUE(plain.retry_service_config.empty());
  EXPECT_NE(retrying.retry_service_config.find("\"maxAttempts\":3"), std::string::npos)
      << retrying.retry_service_config;

  auto run = [&](const ServiceConfig& svc, const std::string& id) {
    Result r;
    RawCallOptions opts;
    opts.timeout = std::chrono::seconds(5);
    opts.initial_metadata = {{"x-mode", "flaky"}, {"x-flaky-id", id}};
    auto s = client.rawUnary(svc, "test.Raw", "Echo", "again", r, opts);
    runUntil(io, [&] { return r.closed.has_value(); });
    return r.closed;
  };
  auto without = run(plain, "a");
  ASSERT_TRUE(without.has_value());
  EXPECT_EQ(without->code, kUnavailable);
  EXPECT_EQ(echo.calls.load(), 1);
  auto with = run(retrying, "b");
  ASSERT_TRUE(with.has_value());
  EXPECT_TRUE(with->ok()) << with->code << " " << with->message;
  EXPECT_EQ(echo.calls.load(), 3);  // b failed once, then succeeded

  proto.mutable_retry_policy()->mutable_retry_back_off()->mutable_max_interval()->set_nanos(1'000'000);
  EXPECT_THROW(ServiceConfig::fromProto(proto, "grpc_service"), std::invalid_argument);
  server->Shutdown(std::chrono::system_clock::now());
}

}  // namespace
}  // namespace skiff::grpc
