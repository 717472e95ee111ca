// TLS settings of the ADS channel: files, inline PEM and static secrets turned into gRPC SSL credentials.
#include "server/xds/control_plane_tls.h"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "envoy/extensions/transport_sockets/tls/v3/tls.pb.h"

namespace skiff::server {

namespace {

using envoy::config::core::v3::DataSource;
using envoy::extensions::transport_sockets::tls::v3::CommonTlsContext;
using envoy::extensions::transport_sockets::tls::v3::SdsSecretConfig;
using envoy::extensions::transport_sockets::tls::v3::Secret;
using envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext;

std::string read(const DataSource& source, const std::string& path) {
  switch (source.specifier_case()) {
    case DataSource::kFilename: {
      std::ifstream in(source.filename(), std::ios::binary);
      if (!in) throw std::invalid_argument(path + ".filename: cannot read '" + source.filename() + "'");
      std::ostringstream out;
      out << in.rdbuf();
      return out.str();
    }
    case DataSource::kInlineBytes:
      return source.inline_bytes();
    case DataSource::kInlineString:
      return source.inline_string();
    case DataSource::kEnvironmentVariable: {
      const char* value = std::getenv(source.environment_variable().c_str());
      if (value == nullptr) {
        throw std::invalid_argument(path + ".environment_variable: '" + source.environment_variable() +
                                    "' is not set");
      }
      return value;
    }
    default:
      return "";
  }
}

// A secret the channel can use before any xDS: a bootstrap static secret (no sds_config, or ads naming a
// static one would be circular).
const Secret& staticSecret(const envoy::config::bootstrap::v3::Bootstrap& bootstrap,
                           const SdsSecretConfig& sds, const std::string& path) {
  if (sds.has_sds_config()) {
    throw std::invalid_argument(path +
                                ".sds_config: the control-plane channel cannot take secrets from SDS; "
                                "use files or a static secret");
  }
  for (const auto& secret : bootstrap.static_resources().secrets()) {
    if (secret.name() == sds.name()) return secret;
  }
  throw std::invalid_argument(path + ".name: no static secret '" + sds.name() + "'");
}

ControlPlaneTls fromCommon(const envoy::config::bootstrap::v3::Bootstrap& bootstrap,
                           const CommonTlsContext& c, const std::string& path) {
  ControlPlaneTls out;
  if (c.tls_certificates_size() > 0) {
    const auto& cert = c.tls_certificates(0);
    out.cert_chain = read(cert.certificate_chain(), path + ".tls_certificates[0].certificate_chain");
    out.private_key = read(cert.private_key(), path + ".tls_certificates[0].private_key");
  } else if (c.tls_certificate_sds_secret_configs_size() > 0) {
    const std::string p = path + ".tls_certificate_sds_secret_configs[0]";
    const auto& secret = staticSecret(bootstrap, c.tls_certificate_sds_secret_configs(0), p);
    out.cert_chain = read(secret.tls_certificate().certificate_chain(), p + ".certificate_chain");
    out.private_key = read(secret.tls_certificate().private_key(), p + ".private_key");
  }
  if (c.has_validation_context()) {
    out.root_certs = read(c.validation_context().trusted_ca(), path + ".validation_context.trusted_ca");
  } else if (c.has_combined_validation_context()) {
    out.root_certs = read(c.combined_validation_context().default_validation_context().trusted_ca(),
                          path + ".combined_validation_context.default_validation_context.trusted_ca");
  } else if (c.has_validation_context_sds_secret_config()) {
    const std::string p = path + ".validation_context_sds_secret_config";
    const auto& secret = staticSecret(bootstrap, c.validation_context_sds_secret_config(), p);
    out.root_certs = read(secret.validation_context().trusted_ca(), p + ".trusted_ca");
  }
  if (out.cert_chain.empty() != out.private_key.empty()) {
    throw std::invalid_argument(path + ".tls_certificates: needs both certificate_chain and private_key");
  }
  return out;
}

}  // namespace

std::optional<ControlPlaneTls> controlPlaneTls(const envoy::config::bootstrap::v3::Bootstrap& bootstrap) {
  const auto& ads = bootstrap.dynamic_resources().ads_config();
  if (ads.grpc_services_size() == 0) return std::nullopt;
  const auto& service = ads.grpc_services(0);
  const std::string p = "dynamic_resources.ads_config.grpc_services[0]";
  if (service.has_google_grpc()) {
    const auto& creds = service.google_grpc().channel_credentials();
    const std::string cp = p + ".google_grpc.channel_credentials";
    if (creds.has_google_default() || creds.has_local_credentials()) {
      throw std::invalid_argument(cp + ": only ssl_credentials (or none) are supported");
    }
    if (!creds.has_ssl_credentials()) return std::nullopt;
    const auto& ssl = creds.ssl_credentials();
    ControlPlaneTls out;
    out.root_certs = read(ssl.root_certs(), cp + ".ssl_credentials.root_certs");
    out.private_key = read(ssl.private_key(), cp + ".ssl_credentials.private_key");
    out.cert_chain = read(ssl.cert_chain(), cp + ".ssl_credentials.cert_chain");
    if (out.cert_chain.empty() != out.private_key.empty()) {
      throw std::invalid_argument(cp + ".ssl_credentials: needs both cert_chain and private_key");
    }
    return out;
  }
  if (!service.has_envoy_grpc()) return std::nullopt;
  for (int i = 0; i < bootstrap.static_resources().clusters_size(); ++i) {
    const auto& cluster = bootstrap.static_resources().clusters(i);
    if (cluster.name() != service.envoy_grpc().cluster_name()) continue;
    if (!cluster.has_transport_socket() ||
        cluster.transport_socket().name() == "envoy.transport_sockets.raw_buffer")
      return std::nullopt;
    const std::string tp = "static_resources.clusters[" + std::to_string(i) + "].transport_socket";
    UpstreamTlsContext tls;
    if (!cluster.transport_socket().has_typed_config() ||
        !cluster.transport_socket().typed_config().UnpackTo(&tls)) {
      throw std::invalid_argument(tp + ": the control-plane channel supports only an UpstreamTlsContext");
    }
    ControlPlaneTls out =
        fromCommon(bootstrap, tls.common_tls_context(), tp + ".typed_config.common_tls_context");
    out.sni = tls.sni();
    return out;
  }
  return std::nullopt;
}

}  // namespace skiff::server
