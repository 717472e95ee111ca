// TLS settings of the ADS channel: files, inline PEM and static secrets turned into gRPC credentials that
// re-read rotated certificate files.
#include "server/xds/control_plane_tls.h"

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "envoy/extensions/transport_sockets/tls/v3/tls.pb.h"
#include "skiff/config/data_source.h"

namespace skiff::server {

namespace {

using envoy::config::core::v3::DataSource;
using envoy::extensions::transport_sockets::tls::v3::CommonTlsContext;
using envoy::extensions::transport_sockets::tls::v3::SdsSecretConfig;
using envoy::extensions::transport_sockets::tls::v3::Secret;
using envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext;

std::string read(const DataSource& source, const std::string& path) {
  return skiff::config::readDataSource(source, path);
}

// The PEM and, when it is a file, its path.
void readPart(const DataSource& source, const std::string& path, std::string* pem, std::string* file) {
  *pem = read(source, path);
  *file = source.specifier_case() == DataSource::kFilename ? source.filename() : std::string();
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
    readPart(cert.certificate_chain(), path + ".tls_certificates[0].certificate_chain", &out.cert_chain,
             &out.cert_chain_file);
    readPart(cert.private_key(), path + ".tls_certificates[0].private_key", &out.private_key,
             &out.private_key_file);
  } else if (c.tls_certificate_sds_secret_configs_size() > 0) {
    const std::string p = path + ".tls_certificate_sds_secret_configs[0]";
    const auto& secret = staticSecret(bootstrap, c.tls_certificate_sds_secret_configs(0), p);
    readPart(secret.tls_certificate().certificate_chain(), p + ".certificate_chain", &out.cert_chain,
             &out.cert_chain_file);
    readPart(secret.tls_certificate().private_key(), p + ".private_key", &out.private_key,
             &out.private_key_file);
  }
  if (c.has_validation_context()) {
    readPart(c.validation_context().trusted_ca(), path + ".validation_context.trusted_ca", &out.root_certs,
             &out.root_certs_file);
  } else if (c.has_combined_validation_context()) {
    readPart(c.combined_validation_context().default_validation_context().trusted_ca(),
             path + ".combined_validation_context.default_validation_context.trusted_ca", &out.root_certs,
             &out.root_certs_file);
  } else if (c.has_validation_context_sds_secret_config()) {
    const std::string p = path + ".validation_context_sds_secret_config";
    const auto& secret = staticSecret(bootstrap, c.validation_context_sds_secret_config(), p);
    readPart(secret.validation_context().trusted_ca(), p + ".trusted_ca", &out.root_certs,
             &out.root_certs_file);
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
    readPart(ssl.root_certs(), cp + ".ssl_credentials.root_certs", &out.root_certs, &out.root_certs_file);
    readPart(ssl.private_key(), cp + ".ssl_credentials.private_key", &out.private_key, &out.private_key_file);
    readPart(ssl.cert_chain(), cp + ".ssl_credentials.cert_chain", &out.cert_chain, &out.cert_chain_file);
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

bool ControlPlaneTls::filesOnly() const {
  const bool any = !root_certs_file.empty() || !cert_chain_file.empty();
  return any && root_certs.empty() == root_certs_file.empty() &&
         cert_chain.empty() == cert_chain_file.empty() && private_key.empty() == private_key_file.empty();
}

std::shared_ptr<grpc::ChannelCredentials> controlPlaneCredentials(const ControlPlaneTls& tls,
                                                                  unsigned refresh_seconds) {
  if (!tls.filesOnly()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = tls.root_certs;
    ssl.pem_private_key = tls.private_key;
    ssl.pem_cert_chain = tls.cert_chain;
    auto credentials = grpc::SslCredentials(ssl);
    if (!credentials) throw std::invalid_argument("control-plane TLS credentials could not be built");
    return credentials;
  }
  namespace gx = grpc::experimental;
  // gRPC re-reads the files on its own thread and hands new handshakes what they hold then. gRPC 1.51
  // only retries a read during which the key file's mtime changed; it does not check that key and chain
  // match, so a rotation must swap both at once (as a Kubernetes secret volume's ..data symlink does).
  const unsigned refresh = std::max(refresh_seconds, 1u);
  const bool identity = !tls.cert_chain_file.empty();
  const bool roots = !tls.root_certs_file.empty();
  std::shared_ptr<gx::CertificateProviderInterface> provider;
  if (identity && roots) {
    provider = std::make_shared<gx::FileWatcherCertificateProvider>(tls.private_key_file, tls.cert_chain_file,
                                                                    tls.root_certs_file, refresh);
  } else if (identity) {
    provider = std::make_shared<gx::FileWatcherCertificateProvider>(tls.private_key_file, tls.cert_chain_file,
                                                                    refresh);
  } else {
    provider = std::make_shared<gx::FileWatcherCertificateProvider>(tls.root_certs_file, refresh);
  }
  gx::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(std::move(provider));
  if (roots) options.watch_root_certs();  // else gRPC's default roots, as SslCredentials would use
  if (identity) options.watch_identity_key_cert_pairs();
  // The server certificate must name the target (or the ssl_target_name_override the channel sets).
  options.set_verify_server_certs(true);
  options.set_certificate_verifier(std::make_shared<gx::HostNameCertificateVerifier>());
  auto credentials = gx::TlsCredentials(options);
  // Null would make the ADS client fall back to a plaintext channel: refuse instead.
  if (!credentials) throw std::invalid_argument("control-plane TLS credentials could not be built");
  return credentials;
}

}  // namespace skiff::server
