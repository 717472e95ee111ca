// Extracts printable facts from certificates and verifies chains with X509_verify_cert.
#include "skiff/certs/inspect.h"

#include <arpa/inet.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>

#include <cstdio>

namespace skiff::certs {
namespace {

std::string nameToString(X509_NAME* name) {
  if (name == nullptr || X509_NAME_entry_count(name) == 0) return "";
  BioPtr bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, len > 0 ? static_cast<size_t>(len) : 0);
}

std::time_t toTimeT(const ASN1_TIME* t) {
  struct tm tm {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return timegm(&tm);
}

std::string ipToString(const ASN1_OCTET_STRING* ip) {
  const unsigned char* p = ASN1_STRING_get0_data(ip);
  int len = ASN1_STRING_length(ip);
  char buf[INET6_ADDRSTRLEN];
  int family = len == 4 ? AF_INET : len == 16 ? AF_INET6 : 0;
  if (family == 0 || inet_ntop(family, p, buf, sizeof(buf)) == nullptr) return "<invalid IP>";
  return buf;
}

std::string asn1String(const ASN1_STRING* s) {
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
}

std::string keyType(X509* cert) {
  EVP_PKEY* key = X509_get0_pubkey(cert);
  if (key == nullptr) return "unknown";
  int bits = EVP_PKEY_get_bits(key);
  if (EVP_PKEY_is_a(key, "RSA")) return "RSA " + std::to_string(bits);
  if (EVP_PKEY_is_a(key, "EC")) {
    char group[64] = {0};
    size_t len = 0;
    if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), &len) == 1) {
      std::string g(group, len);
      if (g == "prime256v1") return "EC P-256";
      if (g == "secp384r1") return "EC P-384";
      return "EC " + g;
    }
    return "EC " + std::to_string(bits);
  }
  const char* name = EVP_PKEY_get0_type_name(key);
  return name != nullptr ? name : "unknown";
}

}  // namespace

CertInfo describe(X509* cert) {
  CertInfo info;
  info.subject = nameToString(X509_get_subject_name(cert));
  info.issuer = nameToString(X509_get_issuer_name(cert));
  if (BignumPtr bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr)); bn) {
    char* hex = BN_bn2hex(bn.get());
    if (hex != nullptr) info.serial = hex;
    OPENSSL_free(hex);
  }
  int crit = 0;
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, &crit, nullptr));
  if (names != nullptr) {
    info.san_critical = crit == 1;
    for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
      const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
      if (name->type == GEN_URI) info.uris.push_back(asn1String(name->d.uniformResourceIdentifier));
      if (name->type == GEN_DNS) info.dns.push_back(asn1String(name->d.dNSName));
      if (name->type == GEN_IPADD) info.ips.push_back(ipToString(name->d.iPAddress));
    }
    GENERAL_NAMES_free(names);
  }
  info.not_before = toTimeT(X509_get0_notBefore(cert));
  info.not_after = toTimeT(X509_get0_notAfter(cert));
  info.key_type = keyType(cert);
  info.is_ca = X509_check_ca(cert) >= 1;
  ERR_clear_error();
  return info;
}

std::string verifyChain(X509* leaf, const std::vector<X509*>& untrusted, const std::vector<X509*>& roots,
                        std::time_t at) {
  X509StorePtr store(X509_STORE_new());
  X509StackPtr chain(sk_X509_new_null());
  X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!store || !chain || !ctx) return "out of memory";
  for (X509* root : roots) X509_STORE_add_cert(store.get(), root);
  for (X509* cert : untrusted) sk_X509_push(chain.get(), cert);
  if (X509_STORE_CTX_init(ctx.get(), store.get(), leaf, chain.get()) != 1)
    return "cannot initialise verification";
  if (at != 0) X509_STORE_CTX_set_time(ctx.get(), 0, at);
  int rc = X509_verify_cert(ctx.get());
  ERR_clear_error();
  if (rc == 1) return "ok";
  return X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()));
}

std::string formatTime(std::time_t t) {
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string formatDuration(long seconds) {
  std::string sign = seconds < 0 ? "-" : "";
  long s = seconds < 0 ? -seconds : seconds;
  long days = s / 86400, hours = (s % 86400) / 3600, minutes = (s % 3600) / 60;
  if (days > 0) return sign + std::to_string(days) + "d" + std::to_string(hours) + "h";
  if (hours > 0) return sign + std::to_string(hours) + "h" + std::to_string(minutes) + "m";
  return sign + std::to_string(minutes) + "m" + std::to_string(s % 60) + "s";
}

}  // namespace skiff::certs
