#pragma once
// Reading certificates back: the fields skiff-certs prints, and chain verification against a root.
#include <ctime>
#include <string>
#include <vector>

#include "skiff/certs/openssl_ptr.h"
#include "skiff/certs/result.h"

namespace skiff::certs {

struct CertInfo {
  std::string subject;  // RFC 2253 style, "" when empty
  std::string issuer;
  std::string serial;  // upper-case hex
  std::vector<std::string> uris, dns, ips;
  bool san_critical = false;
  std::time_t not_before = 0, not_after = 0;
  std::string key_type;  // "EC P-256", "RSA 2048", ...
  bool is_ca = false;
};

CertInfo describe(X509* cert);

// "ok", or OpenSSL's verification error text (e.g. "certificate has expired") for `leaf` with `untrusted`
// intermediates against `roots`, at the current time (or `at` when non-zero).
std::string verifyChain(X509* leaf, const std::vector<X509*>& untrusted, const std::vector<X509*>& roots,
                        std::time_t at = 0);

// "2025-01-02T03:04:05Z".
std::string formatTime(std::time_t t);
// "23h59m", "3d4h", "-2h5m" (expired).
std::string formatDuration(long seconds);

}  // namespace skiff::certs
