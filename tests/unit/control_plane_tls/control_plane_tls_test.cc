// Which control-plane TLS settings come from files (and so are re-read after rotation), and that the
// credentials for each kind are made.
#include "server/xds/control_plane_tls.h"

#include <google/protobuf/util/json_util.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace skiff::server {
namespace {

namespace fs = std::filesystem;

class ControlPlaneTlsFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("skiff-cp-tls-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    for (const char* name : {"root.pem", "cert.pem", "key.pem"}) {
      std::ofstream(dir_ / name) << "-----BEGIN X-----\n" << name << "\n-----END X-----\n";
    }
  }
  void TearDown() override { fs::remove_all(dir_); }

  envoy::config::bootstrap::v3::Bootstrap bootstrap(const std::string& common_tls_context_json) {
    const std::string json = R"({
      "dynamic_resources": {"ads_config": {"api_type": "GRPC", "transport_api_version": "V3",
        "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}]}},
      "static_resources": {"clusters": [{"name": "xds-grpc", "transport_socket": {
        "name": "envoy.transport_sockets.tls", "typed_config": {
          "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
          "sni": "istiod.istio-system.svc",
          "common_tls_context": )" +
                             common_tls_context_json + "}}}]}}";
    envoy::config::bootstrap::v3::Bootstrap b;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &b).ok()) << json;
    return b;
  }
  std::string file(const char* name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

TEST_F(ControlPlaneTlsFilesTest, FilesAreRememberedAndWatched) {
  auto tls = controlPlaneTls(bootstrap(R"({"tls_certificates": [{
      "certificate_chain": {"filename": ")" +
                                       file("cert.pem") + R"("},
      "private_key": {"filename": ")" + file("key.pem") +
                                       R"("}}],
    "validation_context": {"trusted_ca": {"filename": ")" +
                                       file("root.pem") + R"("}}})"));
  ASSERT_TRUE(tls.has_value());
  EXPECT_EQ(tls->root_certs_file, file("root.pem"));
  EXPECT_EQ(tls->cert_chain_file, file("cert.pem"));
  EXPECT_EQ(tls->private_key_file, file("key.pem"));
  EXPECT_NE(tls->root_certs.find("root.pem"), std::string::npos);  // still read once, to fail early
  EXPECT_EQ(tls->sni, "istiod.istio-system.svc");
  EXPECT_TRUE(tls->filesOnly());
  EXPECT_NE(controlPlaneCredentials(*tls), nullptr);
}

TEST_F(ControlPlaneTlsFilesTest, RootFileAloneIsWatched) {
  auto tls = controlPlaneTls(bootstrap(R"({"combined_validation_context": {"default_validation_context": {
      "trusted_ca": {"filename": ")" + file("root.pem") +
                                       R"("}}}})"));
  ASSERT_TRUE(tls.has_value());
  EXPECT_TRUE(tls->filesOnly());
  EXPECT_TRUE(tls->cert_chain.empty());
  EXPECT_NE(controlPlaneCredentials(*tls), nullptr);
}

TEST_F(ControlPlaneTlsFilesTest, InlineOrMixedSettingsAreFixed) {
  auto inline_only = controlPlaneTls(bootstrap(R"({"validation_context": {
      "trusted_ca": {"inline_string": "-----BEGIN X-----\nabc\n-----END X-----\n"}}})"));
  ASSERT_TRUE(inline_only.has_value());
  EXPECT_FALSE(inline_only->filesOnly());
  EXPECT_TRUE(inline_only->root_certs_file.empty());
  EXPECT_NE(controlPlaneCredentials(*inline_only), nullptr);

  auto mixed = controlPlaneTls(bootstrap(R"({"tls_certificates": [{
      "certificate_chain": {"filename": ")" +
                                         file("cert.pem") + R"("},
      "private_key": {"inline_string": "key"}}],
    "validation_context": {"trusted_ca": {"filename": ")" +
                                         file("root.pem") + R"("}}})"));
  ASSERT_TRUE(mixed.has_value());
  EXPECT_FALSE(mixed->filesOnly());
}

TEST_F(ControlPlaneTlsFilesTest, GoogleGrpcSslCredentialFilesAreWatched) {
  const std::string json = R"({
    "dynamic_resources": {"ads_config": {"api_type": "GRPC", "transport_api_version": "V3",
      "grpc_services": [{"google_grpc": {"target_uri": "localhost:15012", "stat_prefix": "xds",
        "channel_credentials": {"ssl_credentials": {
          "root_certs": {"filename": ")" +
                           file("root.pem") + R"("},
          "cert_chain": {"filename": ")" +
                           file("cert.pem") + R"("},
          "private_key": {"filename": ")" +
                           file("key.pem") + R"("}}}}}]}}})";
  envoy::config::bootstrap::v3::Bootstrap b;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &b).ok());
  auto tls = controlPlaneTls(b);
  ASSERT_TRUE(tls.has_value());
  EXPECT_TRUE(tls->filesOnly());
  EXPECT_EQ(tls->private_key_file, file("key.pem"));
}

}  // namespace
}  // namespace skiff::server
