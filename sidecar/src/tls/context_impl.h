// The inside of a TLS context snapshot and of one connection's verification state, shared by context.cc
// (which builds SSL_CTXs and verifies peers) and transport.cc (which runs handshakes).
#pragma once

#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "skiff/stats/stats.h"
#include "skiff/tls/context.h"
#include "skiff/tls/transport.h"
#include "tls/openssl_util.h"

namespace skiff::tls {

// Stats resolved once per context (Envoy's ALL_SSL_STATS) plus the dynamic families.
struct TlsStats {
  TlsStats(stats::Store& store, std::string prefix);
  stats::Store* store;
  std::string prefix;
  stats::Counter connection_error, handshake, session_reused, no_certificate, fail_verify_no_cert,
      fail_verify_error, fail_verify_san, fail_verify_cert_hash;
  // <prefix><family>.<value>, e.g. ssl.versions.TLSv1.3, ssl.ciphers.TLS_AES_128_GCM_SHA256.
  void incFamily(std::string_view family, std::string_view value) const;
};

class ContextSnapshot {
 public:
  bool server = false;
  detail::SslCtxPtr ctx;
  std::shared_ptr<const TlsStats> stats;
  bool verify_chain = false;  // trusted_ca configured
  bool allow_expired = false;
  bool accept_untrusted = false;
  bool require_client_certificate = false;
  std::vector<SanMatcher> san_matchers;
  std::vector<unsigned char> alpn_wire;  // length-prefixed list
  std::string sni;
  bool auto_sni_san_validation = false;
  uint32_t max_session_keys = 0;
  std::vector<std::string> local_uri_sans, local_dns_sans;
  std::string local_subject, local_serial;

  // Client session cache, one list per SNI sent (a session resumes only under the name it was made for,
  // RFC 8446 4.6.1; with auto_sni one context serves many names). Each list is newest first and holds at
  // most max_session_keys; past kMaxSessionSnis names the least recently stored one is dropped.
  struct SniSessions {
    std::string sni;
    std::deque<detail::SslSessionPtr> sessions;
  };
  static constexpr size_t kMaxSessionSnis = 64;
  mutable std::mutex session_mu;
  mutable std::deque<SniSessions> sessions;  // most recently stored SNI first
  // Callers hold session_mu. The newest session stored for `sni`, or null.
  SSL_SESSION* sessionFor(std::string_view sni) const;
  // Callers hold session_mu. Stores `session` (taking the reference) under `sni`.
  void storeSession(std::string_view sni, SSL_SESSION* session) const;

  static int ctxIndex();
};

// Per-connection state the verify callback reads and writes (SSL ex_data).
struct ConnectionState {
  const ContextSnapshot* context = nullptr;
  std::vector<std::string> extra_dns_sans;  // auto_sni_san_validation
  std::string sni;                          // client: the SNI sent (keys the session cache)
  std::string verify_detail;                // "verify cert failed: SAN matcher"
  bool chain_validated = false;
  static int sslIndex();
};

struct PeerCertificates {
  detail::X509Ptr leaf;
  std::vector<detail::X509Ptr> chain;  // leaf first
};

// True when a SAN of `cert` satisfies one of `matchers` (Envoy: any matcher, any SAN of its type).
bool matchSubjectAltNames(X509* cert, const std::vector<SanMatcher>& matchers);
// "*.example.com" matches exactly one label in front of ".example.com".
bool dnsNameMatch(std::string_view name, std::string_view pattern);

}  // namespace skiff::tls
