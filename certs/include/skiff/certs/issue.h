#pragma once
// Issuing a mesh PKI in memory: key generation, root and intermediate CAs, SPIFFE workload certificates.
#include <chrono>
#include <string>
#include <vector>

#include "skiff/certs/openssl_ptr.h"
#include "skiff/certs/result.h"

namespace skiff::certs {

enum class KeyType { kEcP256, kRsa };

struct KeySpec {
  KeyType type = KeyType::kEcP256;
  int rsa_bits = 2048;
};

// notBefore is set this far in the past so peers with slightly slow clocks accept a fresh certificate.
inline constexpr std::chrono::seconds kClockSkew{120};

// A certificate and its private key.
struct Issued {
  X509Ptr cert;
  EvpPkeyPtr key;
};

struct CaOptions {
  std::string trust_domain = "cluster.local";  // becomes the subject's O, as Istio's CA does
  std::string common_name;                     // default: "Skiff Root CA" / "Skiff Intermediate CA"
  KeySpec key;
  std::chrono::seconds validity{std::chrono::hours(24 * 3650)};
};

// The subject alternative names of a workload certificate.
struct Identity {
  std::vector<std::string> uris;  // the SPIFFE ID first
  std::vector<std::string> dns;
  std::vector<std::string> ips;  // textual IPv4/IPv6
};

struct WorkloadOptions {
  Identity identity;
  KeySpec key;
  std::chrono::seconds validity{std::chrono::hours(24)};
  // Moves the whole validity window into the past (notAfter = now - backdate + validity): makes expired
  // certificates for tests.
  std::chrono::seconds backdate{0};
};

Result<EvpPkeyPtr> generateKey(const KeySpec& spec);

// Self-signed root: basicConstraints CA:TRUE (critical), keyUsage keyCertSign+cRLSign (critical), SKI/AKI.
Result<Issued> createRootCa(const CaOptions& options);
// An intermediate CA signed by `issuer_cert`/`issuer_key`.
Result<Issued> createIntermediateCa(const CaOptions& options, X509* issuer_cert, EVP_PKEY* issuer_key);
// A workload certificate with an empty subject and a critical SAN extension (as Istio issues them), EKU
// serverAuth+clientAuth, CA:FALSE, keyUsage digitalSignature (+keyEncipherment for RSA), SKI/AKI.
Result<Issued> issueWorkload(const WorkloadOptions& options, X509* issuer_cert, EVP_PKEY* issuer_key);

// "spiffe://<trust_domain>/ns/<ns>/sa/<sa>".
std::string spiffeId(const std::string& trust_domain, const std::string& ns, const std::string& sa);
// Checks the SPIFFE ID syntax: scheme spiffe, a lower-case trust domain, a non-empty path, no query/fragment.
Status validateSpiffeId(const std::string& id);
// The subject's O (our CAs' trust domain), "" when absent.
std::string subjectOrganization(X509* cert);
// True for a textual IPv4 or IPv6 address.
bool isIpAddress(const std::string& text);

}  // namespace skiff::certs
