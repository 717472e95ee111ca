// x-forwarded-client-cert rendering and the five forward_client_cert_details modes.
#include <gtest/gtest.h>

#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "skiff/http/header_map.h"
#include "skiff/tls/xfcc.h"
#include "unit/tls/tls_test_util.h"

namespace skiff::tls::testing {
namespace {

TlsConnectionInfo mtlsInfo() {
  TlsConnectionInfo info;
  info.peer_certificate_presented = true;
  info.uri_san_local = {"spiffe://cluster.local/ns/shop/sa/cart"};
  info.uri_san_peer = {"spiffe://cluster.local/ns/shop/sa/frontend"};
  info.dns_san_peer = {"frontend.shop", "fe.shop"};
  info.sha256_peer_digest = std::string(64, 'a');
  info.subject_peer = "CN=frontend,O=shop";
  return info;
}

XfccConfig config(ForwardClientCertMode mode) {
  XfccConfig c;
  c.mode = mode;
  c.subject = c.uri = c.dns = true;
  return c;
}

TEST(XfccTest, RendersEnvoyElement) {
  EXPECT_EQ(
      renderXfccElement(mtlsInfo(), config(ForwardClientCertMode::kSanitizeSet)),
      "By=spiffe://cluster.local/ns/shop/sa/cart;Hash=" + std::string(64, 'a') +
          ";Subject=\"CN=frontend,O=shop\";URI=spiffe://cluster.local/ns/shop/sa/frontend;DNS=frontend.shop;"
          "DNS=fe.shop");
  XfccConfig bare;
  EXPECT_EQ(renderXfccElement(mtlsInfo(), bare),
            "By=spiffe://cluster.local/ns/shop/sa/cart;Hash=" + std::string(64, 'a'));
  auto no_uri = mtlsInfo();
  no_uri.uri_san_peer.clear();
  no_uri.subject_peer.clear();
  XfccConfig uri_only;
  uri_only.uri = uri_only.subject = true;
  EXPECT_EQ(renderXfccElement(no_uri, uri_only),
            "By=spiffe://cluster.local/ns/shop/sa/cart;Hash=" + std::string(64, 'a') + ";Subject=\"\";URI=");
}

TEST(XfccTest, Modes) {
  const std::string incoming = "By=spiffe://x;Hash=bb";
  const auto info = mtlsInfo();
  const std::string mine = renderXfccElement(info, config(ForwardClientCertMode::kSanitizeSet));
  auto apply = [&](ForwardClientCertMode mode, const TlsConnectionInfo* tls) {
    http::HeaderMap headers;
    headers.add(kXfccHeader, incoming);
    mutateXfcc(headers, tls, config(mode));
    return std::string(headers.getOr(kXfccHeader, "<absent>"));
  };
  EXPECT_EQ(apply(ForwardClientCertMode::kSanitize, &info), "<absent>");
  EXPECT_EQ(apply(ForwardClientCertMode::kForwardOnly, &info), incoming);
  EXPECT_EQ(apply(ForwardClientCertMode::kForwardOnly, nullptr), "<absent>");
  EXPECT_EQ(apply(ForwardClientCertMode::kAppendForward, &info), incoming + "," + mine);
  EXPECT_EQ(apply(ForwardClientCertMode::kAppendForward, nullptr), "<absent>");
  EXPECT_EQ(apply(ForwardClientCertMode::kSanitizeSet, &info), mine);
  EXPECT_EQ(apply(ForwardClientCertMode::kSanitizeSet, nullptr), "<absent>");
  EXPECT_EQ(apply(ForwardClientCertMode::kAlwaysForwardOnly, nullptr), incoming);
  TlsConnectionInfo one_way;  // TLS without a client certificate is not mutual
  EXPECT_EQ(apply(ForwardClientCertMode::kSanitizeSet, &one_way), "<absent>");
  http::HeaderMap empty;
  mutateXfcc(empty, &info, config(ForwardClientCertMode::kAppendForward));
  EXPECT_EQ(empty.getOr(kXfccHeader), mine);
}

TEST(XfccTest, FromProto) {
  envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager hcm;
  hcm.set_forward_client_cert_details(envoy::extensions::filters::network::http_connection_manager::v3::
                                          HttpConnectionManager::APPEND_FORWARD);
  hcm.mutable_set_current_client_cert_details()->mutable_subject()->set_value(true);
  hcm.mutable_set_current_client_cert_details()->set_uri(true);
  auto c = XfccConfig::fromProto(hcm);
  EXPECT_EQ(c.mode, ForwardClientCertMode::kAppendForward);
  EXPECT_TRUE(c.subject);
  EXPECT_TRUE(c.uri);
  EXPECT_FALSE(c.cert);
}

TEST(XfccTest, FromRealHandshake) {
  Pki pki;
  std::string server_dir = pki.workload("server", "shop", "cart");
  std::string client_dir = pki.workload("client", "shop", "frontend");
  stats::Store store(1);
  asio::io_context io;
  auto server = serverContext("common_tls_context: {" + certYaml(server_dir) +
                                  ", validation_context: {trusted_ca: {filename: \"" + pki.root() +
                                  "\"}}}\nrequire_client_certificate: true\n",
                              store);
  auto client = clientContext("common_tls_context: {" + certYaml(client_dir) + "}", store);
  Connection conn(io, client, server);
  ASSERT_TRUE(conn.handshake(io));
  ASSERT_FALSE(*conn.server_ec) << conn.server.failureReason();
  XfccConfig c = config(ForwardClientCertMode::kSanitizeSet);
  c.cert = c.chain = true;
  std::string element = renderXfccElement(conn.server.info(), c);
  EXPECT_EQ(element.rfind("By=" + spiffe("shop", "cart") + ";Hash=" + conn.server.info().sha256_peer_digest +
                              ";Cert=\"-----BEGIN%20CERTIFICATE-----%0A",
                          0),
            0u)
      << element;
  EXPECT_NE(element.find(";Subject=\"\";URI=" + spiffe("shop", "frontend")), std::string::npos) << element;
  // The chain is the leaf plus the intermediate skiff-certs put in cert-chain.pem.
  std::string chain = urlEncodedPemPeerCertificateChain(conn.server.info());
  size_t begins = 0;
  for (size_t p = chain.find("BEGIN%20CERTIFICATE"); p != std::string::npos;
       p = chain.find("BEGIN%20CERTIFICATE", p + 1))
    ++begins;
  EXPECT_EQ(begins, 2u);
}

}  // namespace
}  // namespace skiff::tls::testing
