// Config parsing: Envoy defaults, field coverage, StringMatcher/SAN semantics and errors naming the field
// path and the file.
#include <gtest/gtest.h>

#include "envoy/config/core/v3/base.pb.h"
#include "tls/context_impl.h"
#include "unit/tls/tls_test_util.h"

namespace skiff::tls::testing {
namespace {

using Downstream = envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext;
using Upstream = envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext;

std::string errorOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "<no error>";
}

class ConfigTest : public ::testing::Test {
 protected:
  Pki pki_;
  std::string dir_ = pki_.workload("w", "shop", "cart");
};

TEST_F(ConfigTest, EnvoyDefaults) {
  auto server =
      parseServerConfig(parseYaml<Downstream>("common_tls_context: {" + certYaml(dir_) + "}"), nullptr);
  EXPECT_EQ(server.common.min_version, TlsVersion::k1_2);
  EXPECT_EQ(server.common.max_version, TlsVersion::k1_3);
  EXPECT_FALSE(server.require_client_certificate);
  EXPECT_EQ(server.common.ecdh_curves, "X25519:P-256");
  auto client = parseClientConfig(parseYaml<Upstream>("sni: a.example"), nullptr);
  EXPECT_EQ(client.common.min_version, TlsVersion::k1_2);
  EXPECT_EQ(client.common.max_version, TlsVersion::k1_2);
  EXPECT_EQ(client.max_session_keys, 1u);
  EXPECT_EQ(client.sni, "a.example");
}

TEST_F(ConfigTest, FieldsAreRead) {
  auto client = parseClientConfig(parseYaml<Upstream>(R"(
common_tls_context:
  tls_params:
    tls_minimum_protocol_version: TLSv1_3
    tls_maximum_protocol_version: TLSv1_3
    cipher_suites: ["[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]", ECDHE-RSA-AES128-GCM-SHA256]
    ecdh_curves: [P-256]
  alpn_protocols: [istio-peer-exchange, istio]
  validation_context:
    match_subject_alt_names: [{suffix: ".svc"}]
    match_typed_subject_alt_names:
    - {san_type: DNS, matcher: {exact: "a.example"}}
    - {san_type: URI, matcher: {safe_regex: {regex: "spiffe://.*/sa/cart"}}}
    - {san_type: EMAIL, matcher: {contains: "@"}}
    - {san_type: IP_ADDRESS, matcher: {exact: "10.0.0.1"}}
    allow_expired_certificate: true
sni: x.example
auto_sni_san_validation: true
max_session_keys: 4
)"),
                                  nullptr);
  EXPECT_EQ(client.common.min_version, TlsVersion::k1_3);
  EXPECT_EQ(client.common.cipher_suites,
            "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256");
  EXPECT_EQ(client.common.ecdh_curves, "P-256");
  EXPECT_EQ(client.common.alpn_protocols, (std::vector<std::string>{"istio-peer-exchange", "istio"}));
  ASSERT_TRUE(client.common.validation.has_value());
  EXPECT_FALSE(client.common.validation->trusted_ca.has_value());
  ASSERT_EQ(client.common.validation->san_matchers.size(), 5u);
  EXPECT_EQ(client.common.validation->san_matchers[4].type, SanType::kAny);
  EXPECT_TRUE(client.common.validation->allow_expired_certificate);
  EXPECT_TRUE(client.auto_sni_san_validation);
  EXPECT_EQ(client.max_session_keys, 4u);
}

TEST_F(ConfigTest, TransportSocketAny) {
  auto socket = parseYaml<envoy::config::core::v3::TransportSocket>(
      "name: envoy.transport_sockets.tls\ntyped_config:\n  \"@type\": "
      "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext\n  sni: "
      "db.example\n");
  EXPECT_EQ(parseClientTransportSocket(socket, nullptr, "clusters[0].transport_socket").sni, "db.example");
  std::string err = errorOf(
      [&] { parseServerTransportSocket(socket, nullptr, "listeners[0].filter_chains[0].transport_socket"); });
  EXPECT_NE(err.find("listeners[0].filter_chains[0].transport_socket.typed_config: expected "
                     "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"),
            std::string::npos)
      << err;
}

TEST_F(ConfigTest, MissingFileNamesFieldAndFile) {
  std::string err = errorOf([&] {
    parseServerConfig(
        parseYaml<Downstream>("common_tls_context: {tls_certificates: [{certificate_chain: {filename: "
                              "/nonexistent/chain.pem}, private_key: {filename: /nonexistent/key.pem}}]}"),
        nullptr);
  });
  EXPECT_NE(err.find("common_tls_context.tls_certificates[0].certificate_chain.filename"), std::string::npos)
      << err;
  EXPECT_NE(err.find("/nonexistent/chain.pem"), std::string::npos) << err;
}

TEST_F(ConfigTest, BadPemNamesFieldAndFile) {
  pki_.write("bad.pem", "-----BEGIN CERTIFICATE-----\nnot base64 at all!!\n-----END CERTIFICATE-----\n");
  std::string err = errorOf([&] {
    parseServerConfig(parseYaml<Downstream>(
                          "common_tls_context: {tls_certificates: [{certificate_chain: {filename: \"" +
                          pki_.path("bad.pem") + "\"}, private_key: {filename: \"" + dir_ + "/key.pem\"}}]}"),
                      nullptr);
  });
  EXPECT_NE(err.find("common_tls_context.tls_certificates[0].certificate_chain"), std::string::npos) << err;
  EXPECT_NE(err.find(pki_.path("bad.pem")), std::string::npos) << err;

  pki_.write("empty-ca.pem", "hello\n");
  err = errorOf([&] {
    parseClientConfig(
        parseYaml<Upstream>("common_tls_context: {validation_context: {trusted_ca: {filename: \"" +
                            pki_.path("empty-ca.pem") + "\"}}}"),
        nullptr);
  });
  EXPECT_NE(err.find("common_tls_context.validation_context.trusted_ca: " + pki_.path("empty-ca.pem")),
            std::string::npos)
      << err;
}

TEST_F(ConfigTest, KeyCertificateMismatch) {
  std::string other = pki_.workload("other", "shop", "bank");
  std::string err = errorOf([&] {
    parseServerConfig(parseYaml<Downstream>(
                          "common_tls_context: {tls_certificates: [{certificate_chain: {filename: \"" + dir_ +
                          "/cert-chain.pem\"}, private_key: {filename: \"" + other + "/key.pem\"}}]}"),
                      nullptr);
  });
  EXPECT_NE(err.find("common_tls_context.tls_certificates[0]: private key " + other +
                     "/key.pem does not match certificate " + dir_ + "/cert-chain.pem"),
            std::string::npos)
      << err;
}

TEST_F(ConfigTest, OtherErrors) {
  EXPECT_NE(errorOf([&] {
              parseServerConfig(parseYaml<Downstream>("require_client_certificate: true"), nullptr);
            }).find("needs tls_certificates"),
            std::string::npos);
  EXPECT_NE(errorOf([&] {
              parseClientConfig(
                  parseYaml<Upstream>("common_tls_context: {validation_context: "
                                      "{match_typed_subject_alt_names: [{san_type: URI, matcher: "
                                      "{safe_regex: {regex: \"(\"}}}]}}"),
                  nullptr);
            }).find("match_typed_subject_alt_names[0].matcher.safe_regex.regex"),
            std::string::npos);
  EXPECT_NE(errorOf([&] {
              parseClientConfig(
                  parseYaml<Upstream>("common_tls_context: {tls_params: {cipher_suites: [NOPE-CIPHER]}}"),
                  nullptr);
            }).find("common_tls_context.tls_params.cipher_suites"),
            std::string::npos);
  EXPECT_NE(errorOf([&] {
              parseClientConfig(
                  parseYaml<Upstream>("common_tls_context: {tls_params: {tls_minimum_protocol_version: "
                                      "TLSv1_3, tls_maximum_protocol_version: TLSv1_2}}"),
                  nullptr);
            }).find("common_tls_context.tls_params"),
            std::string::npos);
  EXPECT_NE(errorOf([&] {
              parseClientConfig(parseYaml<Upstream>(
                                    "common_tls_context: {tls_certificate_sds_secret_configs: [{name: "
                                    "x, sds_config: {path_config_source: {path: /nonexistent/sds.yaml}}}]}"),
                                nullptr);
            }).find("tls_certificate_sds_secret_configs[0]"),
            std::string::npos);
}

TEST(StringMatcherTest, Kinds) {
  EXPECT_TRUE(StringMatcher(StringMatcher::Kind::kExact, "abc", false).match("abc"));
  EXPECT_FALSE(StringMatcher(StringMatcher::Kind::kExact, "abc", false).match("ABC"));
  EXPECT_TRUE(StringMatcher(StringMatcher::Kind::kExact, "abc", true).match("ABC"));
  EXPECT_TRUE(StringMatcher(StringMatcher::Kind::kPrefix, "spiffe://a/", false).match("spiffe://a/ns/x"));
  EXPECT_TRUE(StringMatcher(StringMatcher::Kind::kSuffix, ".svc", false).match("a.svc"));
  EXPECT_FALSE(StringMatcher(StringMatcher::Kind::kSuffix, ".svc", false).match("svc"));
  EXPECT_TRUE(StringMatcher(StringMatcher::Kind::kContains, "/ns/", false).match("spiffe://a/ns/x"));
  EXPECT_TRUE(
      StringMatcher(StringMatcher::Kind::kRegex, "spiffe://[^/]+/ns/x", false).match("spiffe://a/ns/x"));
  EXPECT_FALSE(
      StringMatcher(StringMatcher::Kind::kRegex, "ns/x", false).match("spiffe://a/ns/x"));  // full match
  EXPECT_THROW(StringMatcher(StringMatcher::Kind::kRegex, "(", false), std::invalid_argument);
}

TEST(SanMatchTest, DnsWildcard) {
  EXPECT_TRUE(dnsNameMatch("api.example.com", "*.example.com"));
  EXPECT_FALSE(dnsNameMatch("a.b.example.com", "*.example.com"));
  EXPECT_FALSE(dnsNameMatch("example.com", "*.example.com"));
  EXPECT_TRUE(dnsNameMatch("API.example.com", "api.EXAMPLE.com"));
}

}  // namespace
}  // namespace skiff::tls::testing
