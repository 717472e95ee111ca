// In-memory issuance: chain verification, SANs, key usages, basic constraints, serials, validity, bad PEM.
#include <gtest/gtest.h>
#include <openssl/x509v3.h>

#include <ctime>
#include <set>

#include "skiff/certs/inspect.h"
#include "skiff/certs/issue.h"
#include "skiff/certs/pem.h"

namespace skiff::certs {
namespace {

struct Pki {
  Issued root, intermediate;
};

Pki makePki(KeySpec key = {}) {
  CaOptions options;
  options.key = key;
  Result<Issued> root = createRootCa(options);
  EXPECT_TRUE(root.ok()) << root.error();
  Result<Issued> inter = createIntermediateCa(options, root->cert.get(), root->key.get());
  EXPECT_TRUE(inter.ok()) << inter.error();
  return Pki{std::move(root.value()), std::move(inter.value())};
}

Issued makeWorkload(const Pki& pki, WorkloadOptions options = {}) {
  if (options.identity.uris.empty())
    options.identity.uris.push_back("spiffe://cluster.local/ns/default/sa/web");
  Result<Issued> leaf = issueWorkload(options, pki.intermediate.cert.get(), pki.intermediate.key.get());
  EXPECT_TRUE(leaf.ok()) << leaf.error();
  return std::move(leaf.value());
}

// X509_verify_cert directly, with a TLS purpose, so the EKU and key usage are checked too.
int verifyWithPurpose(X509* leaf, X509* intermediate, X509* root, int purpose) {
  X509StorePtr store(X509_STORE_new());
  X509_STORE_add_cert(store.get(), root);
  X509StackPtr untrusted(sk_X509_new_null());
  sk_X509_push(untrusted.get(), intermediate);
  X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  X509_STORE_CTX_init(ctx.get(), store.get(), leaf, untrusted.get());
  X509_STORE_CTX_set_purpose(ctx.get(), purpose);
  int rc = X509_verify_cert(ctx.get());
  return rc == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx.get());
}

bool extensionCritical(X509* cert, int nid) {
  int index = X509_get_ext_by_NID(cert, nid, -1);
  return index >= 0 && X509_EXTENSION_get_critical(X509_get_ext(cert, index)) == 1;
}

TEST(CertsIssueTest, RootIntermediateWorkloadChainVerifies) {
  Pki pki = makePki();
  Issued leaf = makeWorkload(pki);
  X509* l = leaf.cert.get();
  EXPECT_EQ(verifyWithPurpose(l, pki.intermediate.cert.get(), pki.root.cert.get(), X509_PURPOSE_SSL_SERVER),
            X509_V_OK);
  EXPECT_EQ(verifyWithPurpose(l, pki.intermediate.cert.get(), pki.root.cert.get(), X509_PURPOSE_SSL_CLIENT),
            X509_V_OK);
  EXPECT_EQ(verifyChain(l, {pki.intermediate.cert.get()}, {pki.root.cert.get()}), "ok");
  // Without the intermediate, or against another root, it does not verify.
  EXPECT_NE(verifyChain(l, {}, {pki.root.cert.get()}), "ok");
  Pki other = makePki();
  EXPECT_EQ(verifyChain(l, {pki.intermediate.cert.get()}, {other.root.cert.get()}),
            "unable to get local issuer certificate");
}

TEST(CertsIssueTest, WorkloadSansAreCriticalWithEmptySubject) {
  Pki pki = makePki();
  WorkloadOptions options;
  options.identity.uris = {"spiffe://example.org/ns/shop/sa/cart"};
  options.identity.dns = {"cart.shop.svc.cluster.local", "*.shop.svc"};
  options.identity.ips = {"10.1.2.3", "fd00::1"};
  Issued leaf = makeWorkload(pki, options);
  CertInfo info = describe(leaf.cert.get());
  EXPECT_EQ(info.subject, "");
  EXPECT_EQ(info.uris, std::vector<std::string>{"spiffe://example.org/ns/shop/sa/cart"});
  EXPECT_EQ(info.dns, (std::vector<std::string>{"cart.shop.svc.cluster.local", "*.shop.svc"}));
  EXPECT_EQ(info.ips, (std::vector<std::string>{"10.1.2.3", "fd00::1"}));
  EXPECT_TRUE(info.san_critical);
  EXPECT_EQ(info.issuer, "CN=Skiff Intermediate CA,O=cluster.local");
  EXPECT_EQ(X509_check_host(leaf.cert.get(), "cart.shop.svc.cluster.local", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_ip_asc(leaf.cert.get(), "10.1.2.3", 0), 1);
}

TEST(CertsIssueTest, WorkloadEcExtensions) {
  Pki pki = makePki();
  Issued leaf = makeWorkload(pki);
  X509* c = leaf.cert.get();
  EXPECT_EQ(X509_check_ca(c), 0);
  EXPECT_TRUE(extensionCritical(c, NID_basic_constraints));
  EXPECT_TRUE(extensionCritical(c, NID_key_usage));
  EXPECT_FALSE(extensionCritical(c, NID_ext_key_usage));
  EXPECT_EQ(X509_get_key_usage(c), static_cast<uint32_t>(KU_DIGITAL_SIGNATURE));
  EXPECT_EQ(X509_get_extended_key_usage(c), static_cast<uint32_t>(XKU_SSL_SERVER | XKU_SSL_CLIENT));
  ASSERT_NE(X509_get0_subject_key_id(c), nullptr);
  ASSERT_NE(X509_get0_authority_key_id(c), nullptr);
  EXPECT_EQ(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(c),
                                  X509_get0_subject_key_id(pki.intermediate.cert.get())),
            0);
  EXPECT_EQ(describe(c).key_type, "EC P-256");
  EXPECT_EQ(X509_get_signature_nid(c), NID_ecdsa_with_SHA256);
}

TEST(CertsIssueTest, RsaWorkloadAddsKeyEncipherment) {
  Pki pki = makePki();
  WorkloadOptions options;
  options.key = KeySpec{KeyType::kRsa, 2048};
  Issued leaf = makeWorkload(pki, options);
  EXPECT_EQ(X509_get_key_usage(leaf.cert.get()),
            static_cast<uint32_t>(KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT));
  EXPECT_EQ(describe(leaf.cert.get()).key_type, "RSA 2048");
  EXPECT_TRUE(keyMatchesCert(leaf.cert.get(), leaf.key.get()));
}

TEST(CertsIssueTest, CaExtensions) {
  Pki pki = makePki();
  for (X509* ca : {pki.root.cert.get(), pki.intermediate.cert.get()}) {
    EXPECT_GE(X509_check_ca(ca), 1);
    EXPECT_TRUE(extensionCritical(ca, NID_basic_constraints));
    EXPECT_EQ(X509_get_key_usage(ca), static_cast<uint32_t>(KU_KEY_CERT_SIGN | KU_CRL_SIGN));
    ASSERT_NE(X509_get0_subject_key_id(ca), nullptr);
  }
  EXPECT_EQ(X509_self_signed(pki.root.cert.get(), 1), 1);
  EXPECT_EQ(X509_self_signed(pki.intermediate.cert.get(), 0), 0);
  EXPECT_EQ(describe(pki.root.cert.get()).subject, "CN=Skiff Root CA,O=cluster.local");
  EXPECT_EQ(subjectOrganization(pki.intermediate.cert.get()), "cluster.local");
}

TEST(CertsIssueTest, SerialsAreRandomAndUnique) {
  Pki pki = makePki();
  std::set<std::string> serials;
  for (int i = 0; i < 100; ++i) {
    Issued leaf = makeWorkload(pki);
    const ASN1_INTEGER* serial = X509_get0_serialNumber(leaf.cert.get());
    EXPECT_EQ(ASN1_STRING_length(serial), 16);
    BignumPtr bn(ASN1_INTEGER_to_BN(serial, nullptr));
    EXPECT_FALSE(BN_is_negative(bn.get()));
    serials.insert(describe(leaf.cert.get()).serial);
  }
  EXPECT_EQ(serials.size(), 100u);
}

TEST(CertsIssueTest, ValidityWindowIncludesClockSkew) {
  Pki pki = makePki();
  WorkloadOptions options;
  options.validity = std::chrono::hours(5);
  std::time_t now = std::time(nullptr);
  Issued leaf = makeWorkload(pki, options);
  CertInfo info = describe(leaf.cert.get());
  EXPECT_NEAR(static_cast<double>(info.not_before), static_cast<double>(now - kClockSkew.count()), 5);
  EXPECT_NEAR(static_cast<double>(info.not_after), static_cast<double>(now + 5 * 3600), 5);
}

TEST(CertsIssueTest, BackdatedCertificateIsExpired) {
  Pki pki = makePki();
  WorkloadOptions options;
  options.validity = std::chrono::hours(1);
  options.backdate = std::chrono::hours(2);
  Issued leaf = makeWorkload(pki, options);
  EXPECT_LT(describe(leaf.cert.get()).not_after, std::time(nullptr));
  EXPECT_EQ(verifyChain(leaf.cert.get(), {pki.intermediate.cert.get()}, {pki.root.cert.get()}),
            "certificate has expired");
}

TEST(CertsIssueTest, LeafNeverOutlivesIssuer) {
  CaOptions short_lived;
  short_lived.validity = std::chrono::hours(2);
  Result<Issued> root = createRootCa(short_lived);
  ASSERT_TRUE(root.ok());
  WorkloadOptions options;
  options.identity.uris = {"spiffe://cluster.local/ns/a/sa/b"};
  options.validity = std::chrono::hours(48);
  Result<Issued> leaf = issueWorkload(options, root->cert.get(), root->key.get());
  ASSERT_TRUE(leaf.ok()) << leaf.error();
  EXPECT_EQ(describe(leaf->cert.get()).not_after, describe(root->cert.get()).not_after);
}

TEST(CertsIssueTest, RejectsBadInput) {
  Pki pki = makePki();
  WorkloadOptions options;
  EXPECT_FALSE(
      issueWorkload(options, pki.intermediate.cert.get(), pki.intermediate.key.get()).ok());  // no SAN
  options.identity.uris = {"http://x/y"};
  EXPECT_FALSE(issueWorkload(options, pki.intermediate.cert.get(), pki.intermediate.key.get()).ok());
  options.identity.uris = {"spiffe://cluster.local/ns/a/sa/b"};
  options.identity.dns = {"bad name"};
  EXPECT_FALSE(issueWorkload(options, pki.intermediate.cert.get(), pki.intermediate.key.get()).ok());
  options.identity.dns.clear();
  options.identity.ips = {"10.0.0.300"};
  EXPECT_FALSE(issueWorkload(options, pki.intermediate.cert.get(), pki.intermediate.key.get()).ok());
  options.identity.ips.clear();
  // A workload certificate cannot sign, and a key must match its certificate.
  Issued leaf = makeWorkload(pki);
  Result<Issued> bad = issueWorkload(options, leaf.cert.get(), leaf.key.get());
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error(), "issuer certificate is not a CA");
  bad = issueWorkload(options, pki.intermediate.cert.get(), pki.root.key.get());
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error(), "issuer key does not match its certificate");
  EXPECT_FALSE(generateKey(KeySpec{KeyType::kRsa, 512}).ok());
}

TEST(CertsIssueTest, SpiffeIdValidation) {
  EXPECT_EQ(spiffeId("cluster.local", "default", "web"), "spiffe://cluster.local/ns/default/sa/web");
  EXPECT_TRUE(validateSpiffeId("spiffe://cluster.local/ns/default/sa/web").ok());
  EXPECT_TRUE(validateSpiffeId("spiffe://td/x").ok());
  for (const char* bad :
       {"spiffe://", "spiffe://td", "spiffe://td/", "spiffe://TD/x", "spiffe://td//x", "spiffe://td/x/",
        "spiffe://td/../x", "spiffe://td/x?y", "https://td/x", "spiffe://td/a b"}) {
    EXPECT_FALSE(validateSpiffeId(bad).ok()) << bad;
  }
}

TEST(CertsPemTest, RoundTripAndMismatch) {
  Pki pki = makePki();
  Issued leaf = makeWorkload(pki);
  std::string chain_pem = certsToPem({leaf.cert.get(), pki.intermediate.cert.get()});
  Result<std::vector<X509Ptr>> certs = parseCerts(chain_pem, "chain");
  ASSERT_TRUE(certs.ok()) << certs.error();
  ASSERT_EQ(certs->size(), 2u);
  EXPECT_EQ(X509_cmp(certs.value()[0].get(), leaf.cert.get()), 0);
  Result<EvpPkeyPtr> key = parseKey(keyToPem(leaf.key.get()), "key");
  ASSERT_TRUE(key.ok()) << key.error();
  EXPECT_NE(keyToPem(leaf.key.get()).find("BEGIN PRIVATE KEY"), std::string::npos);  // PKCS#8
  EXPECT_TRUE(keyMatchesCert(leaf.cert.get(), key->get()));
  EXPECT_FALSE(keyMatchesCert(pki.root.cert.get(), key->get()));
}

TEST(CertsPemTest, BadPemIsAnErrorNamingTheSource) {
  Pki pki = makePki();
  std::string good = certToPem(pki.root.cert.get());
  std::string corrupt = good;
  corrupt[40] = '!';  // inside the base64 body
  std::string truncated = good.substr(0, good.size() / 2);
  std::string wrong_der = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
  for (const std::string& pem : {std::string(""), std::string("garbage\n"), corrupt, truncated, wrong_der,
                                 keyToPem(pki.root.key.get())}) {
    Result<std::vector<X509Ptr>> certs = parseCerts(pem, "/some/file.pem");
    ASSERT_FALSE(certs.ok());
    EXPECT_EQ(certs.error().rfind("/some/file.pem: ", 0), 0u) << certs.error();
  }
  for (const std::string& pem : {std::string(""), good, std::string("-----BEGIN PRIVATE KEY-----\nAAAA\n")}) {
    Result<EvpPkeyPtr> key = parseKey(pem, "/some/key.pem");
    ASSERT_FALSE(key.ok());
    EXPECT_EQ(key.error().rfind("/some/key.pem: ", 0), 0u) << key.error();
  }
  Result<std::vector<X509Ptr>> missing = readCertsFile("/nonexistent/dir/cert.pem");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error(), "/nonexistent/dir/cert.pem: cannot open: No such file or directory");
}

}  // namespace
}  // namespace skiff::certs
