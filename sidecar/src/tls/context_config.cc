// DownstreamTlsContext / UpstreamTlsContext -> ServerContextConfig / ClientContextConfig, with every
// inline or file credential read and checked now so a bad config fails at load time with its field path.
#include "skiff/tls/context_config.h"

#include <re2/re2.h>

#include <stdexcept>

#include "envoy/config/core/v3/base.pb.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls.pb.h"
#include "skiff/config/data_source.h"
#include "tls/openssl_util.h"

// Deprecated Envoy fields (match_subject_alt_names, ConfigSource.path, old provider fields) are still read.
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

namespace skiff::tls {
namespace {

namespace tlsv3 = envoy::extensions::transport_sockets::tls::v3;
using envoy::config::core::v3::DataSource;

// Envoy's (BoringSSL's) default TLS <= 1.2 cipher list without BoringSSL's equal-preference groups.
constexpr char kDefaultCiphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384";
constexpr char kDefaultCurves[] = "X25519:P-256";

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::invalid_argument(path + ": " + what);
}

// Empty `origin` when the data source is unset.
PemSource readDataSource(const DataSource& ds, const std::string& path) {
  PemSource out;
  out.origin = skiff::config::dataSourceOrigin(ds);
  out.data = skiff::config::readDataSource(ds, path);
  if (ds.has_filename() && out.data.empty()) fail(path + ".filename", "file " + ds.filename() + " is empty");
  return out;
}

std::string joinList(const google::protobuf::RepeatedPtrField<std::string>& items) {
  std::string out;
  for (const auto& item : items) {
    // BoringSSL's "[A|B]" equal-preference groups have no OpenSSL syntax: keep the order, drop the grouping.
    for (char c : item) {
      if (c == '[' || c == ']') continue;
      out += c == '|' ? ':' : c;
    }
    out += ':';
  }
  if (!out.empty()) out.pop_back();
  return out;
}

StringMatcher parseStringMatcher(const envoy::type::matcher::v3::StringMatcher& m, const std::string& path) {
  using M = envoy::type::matcher::v3::StringMatcher;
  switch (m.match_pattern_case()) {
    case M::kExact:
      return StringMatcher(StringMatcher::Kind::kExact, m.exact(), m.ignore_case());
    case M::kPrefix:
      return StringMatcher(StringMatcher::Kind::kPrefix, m.prefix(), m.ignore_case());
    case M::kSuffix:
      return StringMatcher(StringMatcher::Kind::kSuffix, m.suffix(), m.ignore_case());
    case M::kContains:
      return StringMatcher(StringMatcher::Kind::kContains, m.contains(), m.ignore_case());
    case M::kSafeRegex:
      try {
        return StringMatcher(StringMatcher::Kind::kRegex, m.safe_regex().regex(), m.ignore_case());
      } catch (const std::invalid_argument& e) {
        fail(path + ".safe_regex.regex", e.what());
      }
    default:
      fail(path, "unsupported string matcher (expected exact, prefix, suffix, contains or safe_regex)");
  }
}

TlsVersion parseVersion(tlsv3::TlsParameters::TlsProtocol v, TlsVersion fallback) {
  return v == tlsv3::TlsParameters::TLS_AUTO ? fallback : static_cast<TlsVersion>(v);
}

SdsReference parseSds(const tlsv3::SdsSecretConfig& sds, SecretManager* secrets, const std::string& path) {
  if (sds.name().empty()) fail(path + ".name", "SDS secret name is empty");
  if (secrets == nullptr) fail(path, "SDS secrets need a secret manager");
  return SdsReference{sds.name(), secrets->providerFor(sds.sds_config(), path + ".sds_config")};
}

CommonConfig parseCommon(const tlsv3::CommonTlsContext& proto, SecretManager* secrets, bool server,
                         const std::string& path, std::vector<std::string>* warnings) {
  CommonConfig out;
  for (int i = 0; i < proto.tls_certificates_size(); ++i) {
    out.certificates.push_back(parseTlsCertificate(proto.tls_certificates(i),
                                                   path + ".tls_certificates[" + std::to_string(i) + "]"));
  }
  for (int i = 0; i < proto.tls_certificate_sds_secret_configs_size(); ++i) {
    out.certificate_sds.push_back(
        parseSds(proto.tls_certificate_sds_secret_configs(i), secrets,
                 path + ".tls_certificate_sds_secret_configs[" + std::to_string(i) + "]"));
  }
  using C = tlsv3::CommonTlsContext;
  switch (proto.validation_context_type_case()) {
    case C::kValidationContext:
      out.validation = parseValidationContext(proto.validation_context(), path + ".validation_context");
      break;
    case C::kValidationContextSdsSecretConfig:
      out.validation_sds = parseSds(proto.validation_context_sds_secret_config(), secrets,
                                    path + ".validation_context_sds_secret_config");
      break;
    case C::kCombinedValidationContext: {
      const auto& combined = proto.combined_validation_context();
      out.validation =
          parseValidationContext(combined.default_validation_context(),
                                 path + ".combined_validation_context.default_validation_context");
      out.validation_sds =
          parseSds(combined.validation_context_sds_secret_config(), secrets,
                   path + ".combined_validation_context.validation_context_sds_secret_config");
      break;
    }
    case C::VALIDATION_CONTEXT_TYPE_NOT_SET:
      break;
    default:
      fail(path, "certificate provider validation contexts are not supported");
  }
  if (proto.has_tls_certificate_provider_instance() || proto.has_tls_certificate_certificate_provider() ||
      proto.has_tls_certificate_certificate_provider_instance()) {
    fail(path, "certificate provider instances are not supported");
  }
  out.alpn_protocols.assign(proto.alpn_protocols().begin(), proto.alpn_protocols().end());
  const auto& params = proto.tls_params();
  out.min_version = parseVersion(params.tls_minimum_protocol_version(), TlsVersion::k1_2);
  out.max_version =
      parseVersion(params.tls_maximum_protocol_version(), server ? TlsVersion::k1_3 : TlsVersion::k1_2);
  if (out.min_version > out.max_version) {
    fail(path + ".tls_params", "tls_minimum_protocol_version is above tls_maximum_protocol_version");
  }
  out.cipher_suites = params.cipher_suites_size() > 0 ? joinList(params.cipher_suites()) : kDefaultCiphers;
  out.ecdh_curves = params.ecdh_curves_size() > 0 ? joinList(params.ecdh_curves()) : kDefaultCurves;
  out.signature_algorithms = joinList(params.signature_algorithms());
  if (proto.has_custom_handshaker() && warnings) warnings->push_back(path + ".custom_handshaker: ignored");
  if (proto.has_key_log() && warnings) warnings->push_back(path + ".key_log: ignored");
  return out;
}

void checkUsable(const CommonConfig& common, const std::string& path) {
  // Cipher/curve names are checked against OpenSSL now so a typo fails at load, not at the first handshake.
  detail::SslCtxPtr ctx(SSL_CTX_new(TLS_method()));
  if (!common.cipher_suites.empty() &&
      SSL_CTX_set_cipher_list(ctx.get(), common.cipher_suites.c_str()) != 1) {
    // TLS 1.3 suite names go through a different API.
    if (SSL_CTX_set_ciphersuites(ctx.get(), common.cipher_suites.c_str()) != 1) {
      fail(path + ".tls_params.cipher_suites", "no usable cipher suite in \"" + common.cipher_suites + "\"");
    }
  }
  if (!common.ecdh_curves.empty() && SSL_CTX_set1_groups_list(ctx.get(), common.ecdh_curves.c_str()) != 1) {
    fail(path + ".tls_params.ecdh_curves", "unknown curve in \"" + common.ecdh_curves + "\"");
  }
  if (!common.signature_algorithms.empty() &&
      SSL_CTX_set1_sigalgs_list(ctx.get(), common.signature_algorithms.c_str()) != 1) {
    fail(path + ".tls_params.signature_algorithms",
         "unknown algorithm in \"" + common.signature_algorithms + "\"");
  }
  ERR_clear_error();
}

template <typename Proto>
Proto unpack(const envoy::config::core::v3::TransportSocket& socket, const std::string& path) {
  if (socket.name() != kTlsTransportSocketName && !socket.has_typed_config()) {
    fail(path + ".name", "expected " + std::string(kTlsTransportSocketName) + ", got " + socket.name());
  }
  Proto proto;
  if (!socket.has_typed_config()) return proto;
  if (!socket.typed_config().UnpackTo(&proto)) {
    fail(path + ".typed_config",
         "expected " + Proto::descriptor()->full_name() + ", got " + socket.typed_config().type_url());
  }
  return proto;
}

}  // namespace

StringMatcher::StringMatcher(Kind kind, std::string value, bool ignore_case)
    : kind_(kind), value_(std::move(value)), ignore_case_(ignore_case) {
  if (kind_ == Kind::kRegex) {
    RE2::Options options;
    options.set_case_sensitive(!ignore_case_);
    options.set_log_errors(false);
    auto re = std::make_shared<RE2>(value_, options);
    if (!re->ok()) throw std::invalid_argument("invalid regex \"" + value_ + "\": " + re->error());
    regex_ = std::move(re);
  } else if (ignore_case_) {
    for (char& c : value_) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
}

bool StringMatcher::match(std::string_view input) const {
  if (kind_ == Kind::kRegex) return RE2::FullMatch(re2::StringPiece(input.data(), input.size()), *regex_);
  std::string lowered;
  if (ignore_case_) {
    lowered.assign(input);
    for (char& c : lowered) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    input = lowered;
  }
  switch (kind_) {
    case Kind::kExact:
      return input == value_;
    case Kind::kPrefix:
      return input.substr(0, value_.size()) == value_;
    case Kind::kSuffix:
      return input.size() >= value_.size() && input.substr(input.size() - value_.size()) == value_;
    case Kind::kContains:
      return input.find(value_) != std::string_view::npos;
    case Kind::kRegex:
      break;
  }
  return false;
}

CertificateConfig parseTlsCertificate(const tlsv3::TlsCertificate& proto, const std::string& path) {
  if (proto.has_pkcs12()) fail(path + ".pkcs12", "PKCS#12 is not supported");
  if (proto.has_private_key_provider())
    fail(path + ".private_key_provider", "private key providers are not supported");
  if (proto.has_password()) fail(path + ".password", "encrypted private keys are not supported");
  CertificateConfig out;
  out.chain = readDataSource(proto.certificate_chain(), path + ".certificate_chain");
  out.key = readDataSource(proto.private_key(), path + ".private_key");
  if (out.chain.origin.empty()) fail(path + ".certificate_chain", "missing");
  if (out.key.origin.empty()) fail(path + ".private_key", "missing");
  std::string error;
  auto certs = detail::parseCertificates(out.chain.data, &error);
  if (certs.empty()) fail(path + ".certificate_chain", out.chain.origin + ": " + error);
  auto key = detail::parsePrivateKey(out.key.data, &error);
  if (!key) fail(path + ".private_key", out.key.origin + ": " + error);
  if (X509_check_private_key(certs.front().get(), key.get()) != 1) {
    ERR_clear_error();
    fail(path, "private key " + out.key.origin + " does not match certificate " + out.chain.origin);
  }
  return out;
}

ValidationConfig parseValidationContext(const tlsv3::CertificateValidationContext& proto,
                                        const std::string& path) {
  ValidationConfig out;
  if (proto.has_trusted_ca()) {
    PemSource ca = readDataSource(proto.trusted_ca(), path + ".trusted_ca");
    if (!ca.origin.empty()) {
      std::string error;
      if (detail::parseCertificates(ca.data, &error).empty())
        fail(path + ".trusted_ca", ca.origin + ": " + error);
      out.trusted_ca = std::move(ca);
    }
  }
  for (int i = 0; i < proto.match_typed_subject_alt_names_size(); ++i) {
    const auto& m = proto.match_typed_subject_alt_names(i);
    const std::string p = path + ".match_typed_subject_alt_names[" + std::to_string(i) + "]";
    SanType type;
    switch (m.san_type()) {
      case tlsv3::SubjectAltNameMatcher::EMAIL:
        type = SanType::kEmail;
        break;
      case tlsv3::SubjectAltNameMatcher::DNS:
        type = SanType::kDns;
        break;
      case tlsv3::SubjectAltNameMatcher::URI:
        type = SanType::kUri;
        break;
      case tlsv3::SubjectAltNameMatcher::IP_ADDRESS:
        type = SanType::kIpAddress;
        break;
      default:
        fail(p + ".san_type", "must be EMAIL, DNS, URI or IP_ADDRESS");
    }
    out.san_matchers.push_back(SanMatcher{type, parseStringMatcher(m.matcher(), p + ".matcher")});
  }
  for (int i = 0; i < proto.match_subject_alt_names_size(); ++i) {
    out.san_matchers.push_back(SanMatcher{
        SanType::kAny, parseStringMatcher(proto.match_subject_alt_names(i),
                                          path + ".match_subject_alt_names[" + std::to_string(i) + "]")});
  }
  out.allow_expired_certificate = proto.allow_expired_certificate();
  out.accept_untrusted =
      proto.trust_chain_verification() == tlsv3::CertificateValidationContext::ACCEPT_UNTRUSTED;
  if (proto.has_max_verify_depth()) out.max_verify_depth = proto.max_verify_depth().value();
  if (proto.verify_certificate_hash_size() > 0 || proto.verify_certificate_spki_size() > 0) {
    fail(path, "verify_certificate_hash / verify_certificate_spki are not supported");
  }
  if (proto.has_crl()) fail(path + ".crl", "CRLs are not supported");
  if (proto.has_custom_validator_config()) fail(path + ".custom_validator_config", "not supported");
  return out;
}

ServerContextConfig parseServerConfig(const tlsv3::DownstreamTlsContext& proto, SecretManager* secrets,
                                      std::vector<std::string>* warnings) {
  const std::string path = "common_tls_context";
  ServerContextConfig out;
  out.common = parseCommon(proto.common_tls_context(), secrets, true, path, warnings);
  if (out.common.certificates.empty() && out.common.certificate_sds.empty()) {
    fail(path, "a server context needs tls_certificates or tls_certificate_sds_secret_configs");
  }
  checkUsable(out.common, path);
  out.require_client_certificate =
      proto.has_require_client_certificate() && proto.require_client_certificate().value();
  out.require_sni = proto.has_require_sni() && proto.require_sni().value();
  out.disable_stateless_session_resumption = proto.disable_stateless_session_resumption();
  out.disable_stateful_session_resumption = proto.disable_stateful_session_resumption();
  out.prefer_client_ciphers = proto.prefer_client_ciphers();
  if (proto.has_session_timeout())
    out.session_timeout = std::chrono::seconds(proto.session_timeout().seconds());
  if ((proto.has_session_ticket_keys() || proto.has_session_ticket_keys_sds_secret_config()) && warnings) {
    warnings->push_back(
        "session_ticket_keys: ignored (each context generates and rotates its own ticket keys)");
  }
  return out;
}

ClientContextConfig parseClientConfig(const tlsv3::UpstreamTlsContext& proto, SecretManager* secrets,
                                      std::vector<std::string>* warnings) {
  ClientContextConfig out;
  out.common = parseCommon(proto.common_tls_context(), secrets, false, "common_tls_context", warnings);
  checkUsable(out.common, "common_tls_context");
  if (proto.sni().size() > 255) fail("sni", "longer than 255 bytes");
  out.sni = proto.sni();
  out.auto_host_sni = proto.auto_host_sni();
  out.auto_sni_san_validation = proto.auto_sni_san_validation();
  out.max_session_keys = proto.has_max_session_keys() ? proto.max_session_keys().value() : 1;
  if (proto.allow_renegotiation() && warnings) warnings->push_back("allow_renegotiation: ignored");
  return out;
}

ServerContextConfig parseServerTransportSocket(const envoy::config::core::v3::TransportSocket& socket,
                                               SecretManager* secrets, const std::string& field_path,
                                               std::vector<std::string>* warnings) {
  auto proto = unpack<tlsv3::DownstreamTlsContext>(socket, field_path);
  try {
    return parseServerConfig(proto, secrets, warnings);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(field_path + ".typed_config." + e.what());
  }
}

ClientContextConfig parseClientTransportSocket(const envoy::config::core::v3::TransportSocket& socket,
                                               SecretManager* secrets, const std::string& field_path,
                                               std::vector<std::string>* warnings) {
  auto proto = unpack<tlsv3::UpstreamTlsContext>(socket, field_path);
  try {
    return parseClientConfig(proto, secrets, warnings);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(field_path + ".typed_config." + e.what());
  }
}

}  // namespace skiff::tls
