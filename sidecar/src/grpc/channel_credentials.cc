// TLS for side-call channels: PEM material out of the cluster's SSL_CTX snapshot, and grpc++ TLS
// credentials that verify the server the way the cluster's UpstreamTlsContext says.
#include "grpc/channel_credentials.h"

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "skiff/common/logging.h"
#include "tls/context_impl.h"

namespace skiff::grpc::detail {
namespace {

std::string bioString(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
}

std::string certPem(X509* cert) {
  BIO* bio = BIO_new(BIO_s_mem());
  std::string out;
  if (bio != nullptr && PEM_write_bio_X509(bio, cert) == 1) out = bioString(bio);
  BIO_free(bio);
  return out;
}

std::string keyPem(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  std::string out;
  if (bio != nullptr && PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr) == 1) {
    out = bioString(bio);
  }
  BIO_free(bio);
  return out;
}

// The cluster's SAN matchers on the server's leaf certificate (gRPC already verified the chain when asked).
class SanVerifier : public ::grpc::experimental::ExternalCertificateVerifier {
 public:
  explicit SanVerifier(std::vector<tls::SanMatcher> matchers) : matchers_(std::move(matchers)) {}

  bool Verify(::grpc::experimental::TlsCustomVerificationCheckRequest* request,
              std::function<void(::grpc::Status)>, ::grpc::Status* sync_status) override {
    *sync_status = ::grpc::Status::OK;
    if (matchers_.empty()) return true;
    const ::grpc::string_ref pem = request->peer_cert();
    BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    X509* leaf = bio != nullptr ? PEM_read_bio_X509(bio, nullptr, nullptr, nullptr) : nullptr;
    BIO_free(bio);
    const bool ok = leaf != nullptr && tls::matchSubjectAltNames(leaf, matchers_);
    X509_free(leaf);
    if (!ok) {
      *sync_status = ::grpc::Status(::grpc::StatusCode::UNAUTHENTICATED,
                                    "verify cert failed: SAN matcher (side-call cluster)");
    }
    return true;
  }
  void Cancel(::grpc::experimental::TlsCustomVerificationCheckRequest*) override {}

 private:
  std::vector<tls::SanMatcher> matchers_;
};

}  // namespace

TlsMaterial tlsMaterial(const tls::ContextSnapshot& snapshot) {
  TlsMaterial out;
  SSL_CTX* ctx = snapshot.ctx.get();
  out.sni = snapshot.sni;
  out.san_matchers = snapshot.san_matchers;
  out.verify_chain = snapshot.verify_chain && !snapshot.accept_untrusted;
  if (X509* leaf = SSL_CTX_get0_certificate(ctx); leaf != nullptr) {
    out.cert_chain = certPem(leaf);
    STACK_OF(X509)* chain = nullptr;
    if (SSL_CTX_get0_chain_certs(ctx, &chain) == 1 && chain != nullptr) {
      for (int i = 0; i < sk_X509_num(chain); ++i) out.cert_chain += certPem(sk_X509_value(chain, i));
    }
    if (EVP_PKEY* key = SSL_CTX_get0_privatekey(ctx); key != nullptr) out.private_key = keyPem(key);
  }
  if (snapshot.verify_chain) {
    X509_STORE* store = SSL_CTX_get_cert_store(ctx);
    STACK_OF(X509_OBJECT)* objects = store != nullptr ? X509_STORE_get0_objects(store) : nullptr;
    for (int i = 0; objects != nullptr && i < sk_X509_OBJECT_num(objects); ++i) {
      if (X509* ca = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objects, i)); ca != nullptr) {
        out.root_certs += certPem(ca);
      }
    }
  }
  return out;
}

TlsChannel tlsChannel(const TlsMaterial& material, const std::string& sni_override) {
  namespace exp = ::grpc::experimental;
  std::vector<exp::IdentityKeyCertPair> identity;
  if (!material.cert_chain.empty() && !material.private_key.empty()) {
    identity.push_back(exp::IdentityKeyCertPair{material.private_key, material.cert_chain});
  }
  exp::TlsChannelCredentialsOptions options;
  const bool roots = material.verify_chain && !material.root_certs.empty();
  if (roots || !identity.empty()) {
    options.set_certificate_provider(
        std::make_shared<exp::StaticDataCertificateProvider>(roots ? material.root_certs : "", identity));
    if (roots) options.watch_root_certs();
    if (!identity.empty()) options.watch_identity_key_cert_pairs();
  }
  options.set_verify_server_certs(roots);
  options.set_check_call_host(false);
  options.set_certificate_verifier(
      exp::ExternalCertificateVerifier::Create<SanVerifier>(material.san_matchers));
  TlsChannel out;
  out.credentials = exp::TlsCredentials(options);
  out.sni = sni_override.empty() ? material.sni : sni_override;
  return out;
}

}  // namespace skiff::grpc::detail
