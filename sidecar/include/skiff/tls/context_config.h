// Envoy's DownstreamTlsContext / UpstreamTlsContext turned into immutable, validated configs. Inline and
// file material is read and checked here (bad PEM, missing file, key/cert mismatch -> std::invalid_argument
// naming the field path and file); SDS references keep their provider and are read when a context builds.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "skiff/tls/secret_provider.h"

namespace re2 {
class RE2;
}
namespace envoy::config::core::v3 {
class TransportSocket;
}
namespace envoy::extensions::transport_sockets::tls::v3 {
class DownstreamTlsContext;
class UpstreamTlsContext;
class CertificateValidationContext;
class TlsCertificate;
}  // namespace envoy::extensions::transport_sockets::tls::v3

namespace skiff::tls {

inline constexpr std::string_view kTlsTransportSocketName = "envoy.transport_sockets.tls";

// Envoy's TlsParameters.TlsProtocol.
enum class TlsVersion { kAuto = 0, k1_0 = 1, k1_1 = 2, k1_2 = 3, k1_3 = 4 };

// PEM (or DER) bytes and where they came from: a file path or "<inline>", for error messages.
struct PemSource {
  std::string data;
  std::string origin;
};

struct CertificateConfig {
  PemSource chain;
  PemSource key;
};

// Envoy's StringMatcher (exact, prefix, suffix, contains, safe_regex; ignore_case).
class StringMatcher {
 public:
  enum class Kind { kExact, kPrefix, kSuffix, kContains, kRegex };
  // Throws std::invalid_argument for a bad regex.
  StringMatcher(Kind kind, std::string value, bool ignore_case);
  bool match(std::string_view value) const;
  Kind kind() const { return kind_; }
  const std::string& value() const { return value_; }

 private:
  Kind kind_;
  std::string value_;
  bool ignore_case_;
  std::shared_ptr<const re2::RE2> regex_;
};

// SubjectAltNameMatcher. kAny is the deprecated `match_subject_alt_names` (any DNS/URI/email/IP SAN);
// DNS exact matchers accept a wildcard certificate SAN (*.example.com) as Envoy does.
enum class SanType { kAny, kEmail, kDns, kUri, kIpAddress };
struct SanMatcher {
  SanType type;
  StringMatcher matcher;
};

struct ValidationConfig {
  std::optional<PemSource> trusted_ca;
  std::vector<SanMatcher> san_matchers;
  bool allow_expired_certificate = false;
  bool accept_untrusted = false;  // trust_chain_verification: ACCEPT_UNTRUSTED
  std::optional<uint32_t> max_verify_depth;
};

// A secret read through SDS when the context builds.
struct SdsReference {
  std::string name;
  SecretProviderSharedPtr provider;
};

struct CommonConfig {
  std::vector<CertificateConfig> certificates;  // tls_certificates
  std::vector<SdsReference> certificate_sds;    // tls_certificate_sds_secret_configs
  std::optional<ValidationConfig> validation;   // validation_context / combined default
  std::optional<SdsReference> validation_sds;   // validation_context_sds_secret_config / combined
  std::vector<std::string> alpn_protocols;
  TlsVersion min_version = TlsVersion::k1_2;
  TlsVersion max_version = TlsVersion::k1_3;
  std::string cipher_suites;  // OpenSSL list (TLS <= 1.2), ':'-joined
  std::string ecdh_curves;    // OpenSSL groups list
  std::string signature_algorithms;
};

struct ServerContextConfig {
  CommonConfig common;
  bool require_client_certificate = false;
  bool require_sni = false;
  bool disable_stateless_session_resumption = false;
  bool disable_stateful_session_resumption = false;
  bool prefer_client_ciphers = false;  // default: the server's cipher order wins, as Envoy
  std::optional<std::chrono::seconds> session_timeout;
};

struct ClientContextConfig {
  CommonConfig common;
  std::string sni;
  bool auto_host_sni = false;
  bool auto_sni_san_validation = false;
  uint32_t max_session_keys = 1;
};

// Envoy's defaults: minimum TLS 1.2 for both sides; maximum TLS 1.3 for servers and TLS 1.2 for clients
// (Istio sets TLSv1_3 explicitly on its upstream contexts).
ServerContextConfig parseServerConfig(
    const envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext& proto, SecretManager* secrets,
    std::vector<std::string>* warnings = nullptr);
ClientContextConfig parseClientConfig(
    const envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext& proto, SecretManager* secrets,
    std::vector<std::string>* warnings = nullptr);

// From a TransportSocket named envoy.transport_sockets.tls whose typed_config is the matching context.
// `field_path` prefixes error messages (e.g. "clusters[0].transport_socket").
ServerContextConfig parseServerTransportSocket(const envoy::config::core::v3::TransportSocket& socket,
                                               SecretManager* secrets, const std::string& field_path,
                                               std::vector<std::string>* warnings = nullptr);
ClientContextConfig parseClientTransportSocket(const envoy::config::core::v3::TransportSocket& socket,
                                               SecretManager* secrets, const std::string& field_path,
                                               std::vector<std::string>* warnings = nullptr);

// Pieces reused when an SDS secret arrives. `field_path` names the field in error messages.
CertificateConfig parseTlsCertificate(
    const envoy::extensions::transport_sockets::tls::v3::TlsCertificate& proto,
    const std::string& field_path);
ValidationConfig parseValidationContext(
    const envoy::extensions::transport_sockets::tls::v3::CertificateValidationContext& proto,
    const std::string& field_path);

}  // namespace skiff::tls
