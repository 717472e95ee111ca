// Issues keys and X.509 certificates for the mesh PKI: root/intermediate CAs and SPIFFE workload
// certificates.
#include "skiff/certs/issue.h"

#include <arpa/inet.h>
#include <openssl/ec.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include <algorithm>
#include <cctype>
#include <functional>
#include <string_view>

#include "skiff/certs/pem.h"

namespace skiff::certs {
namespace {

using Extender = std::function<Status(X509* cert, X509V3_CTX* ctx)>;

bool isLowerDomainChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

bool isPathChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
         c == '_';
}

Status validateDnsName(const std::string& name) {
  if (name.empty() || name.size() > 253) return Status::error("invalid DNS name '" + name + "'");
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || (c == '*' && i == 0);
    if (!ok) return Status::error("invalid DNS name '" + name + "'");
  }
  return {};
}

// A positive random serial with 127 bits of entropy (RFC 5280 allows up to 20 octets).
Status setRandomSerial(X509* cert) {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) return Status::error("RAND_bytes failed: " + lastOpenSslError());
  bytes[0] &= 0x7f;
  bytes[0] |= 0x40;  // keeps the encoding 16 octets long, so serials always print at the same width
  BignumPtr bn(BN_bin2bn(bytes, sizeof(bytes), nullptr));
  if (!bn) return Status::error("BN_bin2bn failed");
  Asn1IntegerPtr serial(BN_to_ASN1_INTEGER(bn.get(), nullptr));
  if (!serial || X509_set_serialNumber(cert, serial.get()) != 1) return Status::error("cannot set serial");
  return {};
}

Status addConfExtension(X509* cert, X509V3_CTX* ctx, int nid, const char* value) {
  X509ExtensionPtr ext(X509V3_EXT_conf_nid(nullptr, ctx, nid, value));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) {
    return Status::error(std::string("cannot add extension ") + OBJ_nid2sn(nid) + "=" + value + ": " +
                         lastOpenSslError());
  }
  return {};
}

Status addGeneralName(GENERAL_NAMES* names, int type, const std::string& value) {
  GENERAL_NAME* name = GENERAL_NAME_new();
  if (name == nullptr) return Status::error("out of memory");
  if (type == GEN_IPADD) {
    ASN1_OCTET_STRING* ip = a2i_IPADDRESS(value.c_str());
    if (ip == nullptr) {
      GENERAL_NAME_free(name);
      return Status::error("invalid IP address '" + value + "'");
    }
    GENERAL_NAME_set0_value(name, GEN_IPADD, ip);
  } else {
    ASN1_IA5STRING* text = ASN1_IA5STRING_new();
    if (text == nullptr || ASN1_STRING_set(text, value.data(), static_cast<int>(value.size())) != 1) {
      ASN1_IA5STRING_free(text);
      GENERAL_NAME_free(name);
      return Status::error("out of memory");
    }
    GENERAL_NAME_set0_value(name, type, text);
  }
  sk_GENERAL_NAME_push(names, name);
  return {};
}

X509NamePtr caSubject(const CaOptions& options, const char* default_cn) {
  X509NamePtr name(X509_NAME_new());
  const std::string& cn = options.common_name.empty() ? std::string(default_cn) : options.common_name;
  auto add = [&](const char* field, const std::string& value) {
    X509_NAME_add_entry_by_txt(name.get(), field, MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>(value.c_str()), -1, -1, 0);
  };
  if (!options.trust_domain.empty()) add("O", options.trust_domain);
  add("CN", cn);
  return name;
}

// Builds, extends and signs one certificate. `issuer_cert` null means self-signed with `signer`.
Result<X509Ptr> buildCert(X509_NAME* subject, EVP_PKEY* subject_key, X509* issuer_cert, EVP_PKEY* signer,
                          std::chrono::seconds validity, std::chrono::seconds backdate,
                          const Extender& extend) {
  X509Ptr cert(X509_new());
  if (!cert) return Status::error("out of memory");
  X509_set_version(cert.get(), X509_VERSION_3);
  if (Status s = setRandomSerial(cert.get()); !s.ok()) return s;
  if (subject != nullptr) X509_set_subject_name(cert.get(), subject);
  X509_set_issuer_name(cert.get(), issuer_cert != nullptr ? X509_get_subject_name(issuer_cert)
                                                          : X509_get_subject_name(cert.get()));
  long before = -static_cast<long>((kClockSkew + backdate).count());
  long after = static_cast<long>((validity - backdate).count());
  X509_time_adj_ex(X509_getm_notBefore(cert.get()), static_cast<int>(before / 86400), before % 86400,
                   nullptr);
  X509_time_adj_ex(X509_getm_notAfter(cert.get()), static_cast<int>(after / 86400), after % 86400, nullptr);
  if (issuer_cert != nullptr &&
      ASN1_TIME_compare(X509_get0_notAfter(cert.get()), X509_get0_notAfter(issuer_cert)) > 0) {
    // A certificate never outlives its issuer.
    X509_set1_notAfter(cert.get(), X509_get0_notAfter(issuer_cert));
  }
  if (X509_set_pubkey(cert.get(), subject_key) != 1) return Status::error("cannot set public key");

  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer_cert != nullptr ? issuer_cert : cert.get(), cert.get(), nullptr, nullptr, 0);
  if (Status s = extend(cert.get(), &ctx); !s.ok()) return s;
  if (Status s = addConfExtension(cert.get(), &ctx, NID_subject_key_identifier, "hash"); !s.ok()) return s;
  if (Status s = addConfExtension(cert.get(), &ctx, NID_authority_key_identifier, "keyid:always"); !s.ok()) {
    return s;
  }
  if (X509_sign(cert.get(), signer, EVP_sha256()) == 0) {
    return Status::error("signing failed: " + lastOpenSslError());
  }
  return cert;
}

Status checkIssuer(X509* issuer_cert, EVP_PKEY* issuer_key) {
  if (issuer_cert == nullptr || issuer_key == nullptr) return Status::error("no issuer certificate or key");
  if (X509_check_ca(issuer_cert) < 1) return Status::error("issuer certificate is not a CA");
  if (!keyMatchesCert(issuer_cert, issuer_key))
    return Status::error("issuer key does not match its certificate");
  return {};
}

Status addCaExtensions(X509* cert, X509V3_CTX* ctx) {
  if (Status s = addConfExtension(cert, ctx, NID_basic_constraints, "critical,CA:TRUE"); !s.ok()) return s;
  return addConfExtension(cert, ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
}

}  // namespace

Result<EvpPkeyPtr> generateKey(const KeySpec& spec) {
  EvpPkeyPtr key;
  if (spec.type == KeyType::kRsa) {
    if (spec.rsa_bits < 2048 || spec.rsa_bits > 8192) {
      return Status::error("RSA key size must be between 2048 and 8192 bits, got " +
                           std::to_string(spec.rsa_bits));
    }
    key.reset(EVP_RSA_gen(static_cast<unsigned int>(spec.rsa_bits)));
  } else {
    key.reset(EVP_EC_gen("P-256"));
  }
  if (!key) return Status::error("key generation failed: " + lastOpenSslError());
  return key;
}

Result<Issued> createRootCa(const CaOptions& options) {
  Result<EvpPkeyPtr> key = generateKey(options.key);
  if (!key.ok()) return key.status();
  X509NamePtr subject = caSubject(options, "Skiff Root CA");
  Result<X509Ptr> cert = buildCert(subject.get(), key->get(), nullptr, key->get(), options.validity,
                                   std::chrono::seconds(0), addCaExtensions);
  if (!cert.ok()) return cert.status();
  return Issued{std::move(cert.value()), std::move(key.value())};
}

Result<Issued> createIntermediateCa(const CaOptions& options, X509* issuer_cert, EVP_PKEY* issuer_key) {
  if (Status s = checkIssuer(issuer_cert, issuer_key); !s.ok()) return s;
  Result<EvpPkeyPtr> key = generateKey(options.key);
  if (!key.ok()) return key.status();
  X509NamePtr subject = caSubject(options, "Skiff Intermediate CA");
  Result<X509Ptr> cert = buildCert(subject.get(), key->get(), issuer_cert, issuer_key, options.validity,
                                   std::chrono::seconds(0), addCaExtensions);
  if (!cert.ok()) return cert.status();
  return Issued{std::move(cert.value()), std::move(key.value())};
}

Result<Issued> issueWorkload(const WorkloadOptions& options, X509* issuer_cert, EVP_PKEY* issuer_key) {
  if (Status s = checkIssuer(issuer_cert, issuer_key); !s.ok()) return s;
  const Identity& id = options.identity;
  if (id.uris.empty() && id.dns.empty() && id.ips.empty()) {
    return Status::error("a workload certificate needs at least one SAN (SPIFFE ID, DNS name or IP)");
  }
  for (const std::string& uri : id.uris) {
    if (Status s = validateSpiffeId(uri); !s.ok()) return s;
  }
  for (const std::string& dns : id.dns) {
    if (Status s = validateDnsName(dns); !s.ok()) return s;
  }
  if (options.validity.count() <= 0) return Status::error("validity must be positive");
  Result<EvpPkeyPtr> key = generateKey(options.key);
  if (!key.ok()) return key.status();
  bool rsa = options.key.type == KeyType::kRsa;

  auto extend = [&](X509* cert, X509V3_CTX* ctx) -> Status {
    if (Status s = addConfExtension(cert, ctx, NID_basic_constraints, "critical,CA:FALSE"); !s.ok()) return s;
    const char* usage = rsa ? "critical,digitalSignature,keyEncipherment" : "critical,digitalSignature";
    if (Status s = addConfExtension(cert, ctx, NID_key_usage, usage); !s.ok()) return s;
    if (Status s = addConfExtension(cert, ctx, NID_ext_key_usage, "serverAuth,clientAuth"); !s.ok()) return s;
    GeneralNamesPtr names(sk_GENERAL_NAME_new_null());
    for (const std::string& uri : id.uris) {
      if (Status s = addGeneralName(names.get(), GEN_URI, uri); !s.ok()) return s;
    }
    for (const std::string& dns : id.dns) {
      if (Status s = addGeneralName(names.get(), GEN_DNS, dns); !s.ok()) return s;
    }
    for (const std::string& ip : id.ips) {
      if (Status s = addGeneralName(names.get(), GEN_IPADD, ip); !s.ok()) return s;
    }
    // Critical because the subject is empty (RFC 5280 4.2.1.6), as Istio's workload certificates are.
    if (X509_add1_ext_i2d(cert, NID_subject_alt_name, names.get(), 1, X509V3_ADD_DEFAULT) != 1) {
      return Status::error("cannot add subjectAltName: " + lastOpenSslError());
    }
    return {};
  };
  Result<X509Ptr> cert =
      buildCert(nullptr, key->get(), issuer_cert, issuer_key, options.validity, options.backdate, extend);
  if (!cert.ok()) return cert.status();
  return Issued{std::move(cert.value()), std::move(key.value())};
}

std::string spiffeId(const std::string& trust_domain, const std::string& ns, const std::string& sa) {
  return "spiffe://" + trust_domain + "/ns/" + ns + "/sa/" + sa;
}

Status validateSpiffeId(const std::string& id) {
  constexpr std::string_view kScheme = "spiffe://";
  auto bad = [&](const std::string& why) { return Status::error("invalid SPIFFE ID '" + id + "': " + why); };
  if (id.rfind(kScheme, 0) != 0) return bad("must start with spiffe://");
  std::string rest = id.substr(kScheme.size());
  size_t slash = rest.find('/');
  std::string domain = rest.substr(0, slash);
  if (domain.empty()) return bad("empty trust domain");
  if (!std::all_of(domain.begin(), domain.end(), isLowerDomainChar)) {
    return bad("trust domain may only hold lower-case letters, digits, '.', '-' and '_'");
  }
  if (slash == std::string::npos || slash + 1 == rest.size()) return bad("empty path");
  std::string path = rest.substr(slash);
  size_t start = 1;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    std::string segment = path.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (segment.empty()) return bad("empty path segment");
    if (segment == "." || segment == "..") return bad("'.' and '..' segments are not allowed");
    if (!std::all_of(segment.begin(), segment.end(), isPathChar)) {
      return bad("path segments may only hold letters, digits, '.', '-' and '_'");
    }
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return {};
}

std::string subjectOrganization(X509* cert) {
  char buf[256];
  int len = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_organizationName, buf, sizeof(buf));
  return len > 0 ? std::string(buf, static_cast<size_t>(len)) : "";
}

bool isIpAddress(const std::string& text) {
  unsigned char buf[16];
  return inet_pton(AF_INET, text.c_str(), buf) == 1 || inet_pton(AF_INET6, text.c_str(), buf) == 1;
}

}  // namespace skiff::certs
