// OpenSSL helpers: PEM parsing, error text, certificate fields, the socket BIO without SIGPIPE.
#include "tls/openssl_util.h"

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>

namespace skiff::tls::detail {
namespace {

using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;

BioPtr memBio(std::string_view data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

bool looksLikePem(std::string_view data) {
  return data.find("-----BEGIN ") != std::string_view::npos;
}

std::string bioString(BIO* bio) {
  char* p = nullptr;
  long n = BIO_get_mem_data(bio, &p);
  return n > 0 ? std::string(p, static_cast<size_t>(n)) : std::string();
}

std::string hex(const unsigned char* p, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[p[i] >> 4];
    out[2 * i + 1] = kDigits[p[i] & 0xf];
  }
  return out;
}

std::string nameOf(X509_NAME* name) {
  if (name == nullptr) return {};
  BioPtr bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253);
  return bioString(bio.get());
}

}  // namespace

std::vector<X509Ptr> parseCertificates(std::string_view data, std::string* error) {
  std::vector<X509Ptr> certs;
  ERR_clear_error();
  if (!looksLikePem(data)) {
    const auto* p = reinterpret_cast<const unsigned char*>(data.data());
    X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(data.size())));
    if (!cert) {
      *error = "no PEM certificate found";
      ERR_clear_error();
      return {};
    }
    certs.push_back(std::move(cert));
    return certs;
  }
  BioPtr bio = memBio(data);
  while (true) {
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!cert) break;
    certs.push_back(std::move(cert));
  }
  unsigned long err = ERR_peek_last_error();
  if (err != 0 && !(ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE)) {
    *error = "malformed PEM certificate: " + drainErrors("parse error");
    return {};
  }
  ERR_clear_error();
  if (certs.empty()) *error = "no PEM certificate found";
  return certs;
}

EvpPkeyPtr parsePrivateKey(std::string_view data, std::string* error) {
  ERR_clear_error();
  EvpPkeyPtr key;
  if (looksLikePem(data)) {
    BioPtr bio = memBio(data);
    key.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  } else {
    const auto* p = reinterpret_cast<const unsigned char*>(data.data());
    key.reset(d2i_AutoPrivateKey(nullptr, &p, static_cast<long>(data.size())));
  }
  if (!key) *error = "no valid private key found: " + drainErrors("parse error");
  ERR_clear_error();
  return key;
}

std::string drainErrors(std::string_view fallback) {
  unsigned long err = ERR_get_error();
  ERR_clear_error();
  if (err == 0) return std::string(fallback);
  const char* lib = ERR_lib_error_string(err);
  const char* reason = ERR_reason_error_string(err);
  std::string out = lib ? lib : "unknown library";
  out += ": ";
  out += reason ? reason : "unknown reason";
  return out;
}

std::vector<std::string> sansOfType(X509* cert, int gen_type) {
  std::vector<std::string> out;
  if (cert == nullptr) return out;
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type != gen_type) continue;
    if (gen_type == GEN_IPADD) {
      const ASN1_OCTET_STRING* ip = name->d.iPAddress;
      char text[64] = {};
      int family = ip->length == 4 ? AF_INET : (ip->length == 16 ? AF_INET6 : 0);
      if (family != 0 && inet_ntop(family, ip->data, text, sizeof(text)) != nullptr) out.emplace_back(text);
      continue;
    }
    const ASN1_IA5STRING* s = name->d.ia5;  // URI, DNS and email are all IA5String
    out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
  }
  GENERAL_NAMES_free(names);
  return out;
}

std::string subjectOf(X509* cert) {
  return cert ? nameOf(X509_get_subject_name(cert)) : std::string();
}
std::string issuerOf(X509* cert) {
  return cert ? nameOf(X509_get_issuer_name(cert)) : std::string();
}

std::string serialOf(X509* cert) {
  if (cert == nullptr) return {};
  BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr);
  if (bn == nullptr) return {};
  char* text = BN_bn2hex(bn);
  std::string out = text ? text : "";
  OPENSSL_free(text);
  BN_free(bn);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string sha256Of(X509* cert) {
  if (cert == nullptr) return {};
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (X509_digest(cert, EVP_sha256(), md, &n) != 1) return {};
  return hex(md, n);
}

int64_t unixTime(const ASN1_TIME* t) {
  struct tm tm;
  std::memset(&tm, 0, sizeof(tm));
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return static_cast<int64_t>(timegm(&tm));
}

std::string certToPem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  return bioString(bio.get());
}

namespace {

// OpenSSL's sock_write with send(MSG_NOSIGNAL) in place of write(2).
int sendNoSignal(BIO* bio, const char* data, int len) {
  if (data == nullptr || len <= 0) return 0;
  errno = 0;
  const ssize_t n =
      ::send(static_cast<int>(BIO_get_fd(bio, nullptr)), data, static_cast<size_t>(len), MSG_NOSIGNAL);
  BIO_clear_retry_flags(bio);
  if (n <= 0 && BIO_sock_should_retry(static_cast<int>(n))) BIO_set_retry_write(bio);
  return static_cast<int>(n);
}

int putsNoSignal(BIO* bio, const char* text) {
  return sendNoSignal(bio, text, static_cast<int>(std::strlen(text)));
}

// Made once, never freed (BIO methods live as long as the BIOs that use them).
const BIO_METHOD* noSignalSocketMethod() {
  static const BIO_METHOD* method = [] {
    const BIO_METHOD* base = BIO_s_socket();
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                                 "skiff socket (MSG_NOSIGNAL)");
    if (m == nullptr) return static_cast<BIO_METHOD*>(nullptr);
    BIO_meth_set_write(m, sendNoSignal);
    BIO_meth_set_puts(m, putsNoSignal);
    BIO_meth_set_read(m, BIO_meth_get_read(base));
    BIO_meth_set_ctrl(m, BIO_meth_get_ctrl(base));
    BIO_meth_set_create(m, BIO_meth_get_create(base));
    BIO_meth_set_destroy(m, BIO_meth_get_destroy(base));
    return m;
  }();
  return method;
}

}  // namespace

BIO* newSocketBio(int fd) {
  const BIO_METHOD* method = noSignalSocketMethod();
  BIO* bio = method ? BIO_new(method) : nullptr;
  if (bio != nullptr) BIO_set_fd(bio, fd, BIO_NOCLOSE);
  return bio;
}

}  // namespace skiff::tls::detail
