// Small OpenSSL helpers shared by the TLS sources: owning pointers, PEM parsing, error text.
#pragma once

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace skiff::tls::detail {

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using SslCtxPtr = std::unique_ptr<SSL_CTX, Deleter<SSL_CTX, SSL_CTX_free>>;
using SslPtr = std::unique_ptr<SSL, Deleter<SSL, SSL_free>>;
using SslSessionPtr = std::unique_ptr<SSL_SESSION, Deleter<SSL_SESSION, SSL_SESSION_free>>;

// Certificates in `data` (PEM, or a single DER certificate). Empty on any malformed block; `error` says why.
std::vector<X509Ptr> parseCertificates(std::string_view data, std::string* error);
// The first private key in `data` (PEM PKCS#8 or traditional, or DER).
EvpPkeyPtr parsePrivateKey(std::string_view data, std::string* error);
// The oldest queued OpenSSL error as "<lib>: <reason>" (and clears the queue); `fallback` when none.
std::string drainErrors(std::string_view fallback);

// SAN lists, subject (RFC 2253), serial (lower-case hex), SHA-256 of the DER (lower-case hex).
std::vector<std::string> sansOfType(X509* cert, int gen_type);
std::string subjectOf(X509* cert);
std::string issuerOf(X509* cert);
std::string serialOf(X509* cert);
std::string sha256Of(X509* cert);
int64_t unixTime(const ASN1_TIME* t);
std::string certToPem(X509* cert);

// A socket BIO on `fd` (not owned) that writes with send(MSG_NOSIGNAL): OpenSSL's own socket BIO uses
// write(2), which raises SIGPIPE on a socket the peer has reset, and SIGPIPE's default action ends the
// process. Reads, ctrl and EOF handling are OpenSSL's socket BIO's. Null when OpenSSL is out of memory.
BIO* newSocketBio(int fd);

}  // namespace skiff::tls::detail
