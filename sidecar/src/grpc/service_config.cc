// ServiceConfig: an Envoy GrpcService checked and flattened once at config time.
#include <google/protobuf/util/time_util.h>

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

#include "envoy/config/core/v3/grpc_service.pb.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls.pb.h"
#include "skiff/grpc/async_client.h"
#include "skiff/tls/context_config.h"

namespace skiff::grpc {
namespace {

// "1.5s" as gRPC's service config wants durations.
std::string seconds(int64_t ms) {
  return fmt::format("{}.{:03d}s", ms / 1000, ms % 1000);
}

std::string retryServiceConfig(const envoy::config::core::v3::RetryPolicy& policy, const std::string& path) {
  using google::protobuf::util::TimeUtil;
  const uint32_t retries = policy.has_num_retries() ? policy.num_retries().value() : 1;
  if (retries == 0) return "";
  int64_t base = 1000, max = 0;
  if (policy.has_retry_back_off()) {
    const auto& b = policy.retry_back_off();
    if (!b.has_base_interval())
      throw std::invalid_argument(path + ".retry_policy.retry_back_off.base_interval is required");
    base = TimeUtil::DurationToMilliseconds(b.base_interval());
    if (base <= 0)
      throw std::invalid_argument(path + ".retry_policy.retry_back_off.base_interval must be > 0");
    if (b.has_max_interval()) max = TimeUtil::DurationToMilliseconds(b.max_interval());
    if (b.has_max_interval() && max < base) {
      throw std::invalid_argument(path +
                                  ".retry_policy.retry_back_off: max_interval must be >= base_interval");
    }
  }
  if (max == 0) max = base * 10;
  // gRPC caps attempts at 5 (4 retries).
  const uint32_t attempts = std::min<uint32_t>(retries + 1, 5);
  return fmt::format(
      R"({{"methodConfig":[{{"name":[{{}}],"retryPolicy":{{"maxAttempts":{},"initialBackoff":"{}",)"
      R"("maxBackoff":"{}","backoffMultiplier":2,"retryableStatusCodes":["UNAVAILABLE"]}}}}]}})",
      attempts, seconds(base), seconds(max));
}

// Through the TLS library's own parsing, so files, inline PEM and environment variables read (and fail)
// exactly as for transport sockets.
std::shared_ptr<const ServiceConfig::SslPem> sslPem(
    const envoy::config::core::v3::GrpcService::GoogleGrpc::SslCredentials& ssl, const std::string& path) {
  namespace tlsv3 = envoy::extensions::transport_sockets::tls::v3;
  auto out = std::make_shared<ServiceConfig::SslPem>();
  if (ssl.has_root_certs()) {
    tlsv3::CertificateValidationContext v;
    *v.mutable_trusted_ca() = ssl.root_certs();
    auto parsed = tls::parseValidationContext(v, path);
    if (parsed.trusted_ca) out->root_certs = parsed.trusted_ca->data;
  }
  if (ssl.has_cert_chain() || ssl.has_private_key()) {
    tlsv3::TlsCertificate c;
    *c.mutable_certificate_chain() = ssl.cert_chain();
    *c.mutable_private_key() = ssl.private_key();
    auto parsed = tls::parseTlsCertificate(c, path);
    out->cert_chain = parsed.chain.data;
    out->private_key = parsed.key.data;
  }
  return out;
}

}  // namespace

ServiceConfig ServiceConfig::fromProto(const envoy::config::core::v3::GrpcService& proto,
                                       const std::string& path) {
  using Proto = envoy::config::core::v3::GrpcService;
  ServiceConfig out;
  switch (proto.target_specifier_case()) {
    case Proto::kEnvoyGrpc:
      out.cluster = proto.envoy_grpc().cluster_name();
      if (out.cluster.empty()) throw std::invalid_argument(path + ".envoy_grpc.cluster_name is required");
      out.authority = proto.envoy_grpc().authority().empty() ? out.cluster : proto.envoy_grpc().authority();
      break;
    case Proto::kGoogleGrpc: {
      const auto& g = proto.google_grpc();
      out.target = g.target_uri();
      if (out.target.empty()) throw std::invalid_argument(path + ".google_grpc.target_uri is required");
      if (g.has_channel_credentials() && g.channel_credentials().has_ssl_credentials()) {
        out.google_ssl = sslPem(g.channel_credentials().ssl_credentials(),
                                path + ".google_grpc.channel_credentials.ssl_credentials");
      } else if (g.has_channel_credentials() &&
                 g.channel_credentials().credential_specifier_case() !=
                     Proto::GoogleGrpc::ChannelCredentials::CREDENTIAL_SPECIFIER_NOT_SET) {
        throw std::invalid_argument(path +
                                    ".google_grpc.channel_credentials: only ssl_credentials (or none) are "
                                    "supported");
      }
      break;
    }
    case Proto::TARGET_SPECIFIER_NOT_SET:
      throw std::invalid_argument(path + ": one of envoy_grpc or google_grpc is required");
  }
  if (proto.has_timeout()) {
    const int64_t ms = google::protobuf::util::TimeUtil::DurationToMilliseconds(proto.timeout());
    if (ms < 0) throw std::invalid_argument(path + ".timeout must not be negative");
    out.timeout = std::chrono::milliseconds(ms);
  }
  if (proto.has_retry_policy()) out.retry_service_config = retryServiceConfig(proto.retry_policy(), path);
  for (const auto& h : proto.initial_metadata()) {
    std::string key = h.key();
    for (auto& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (key.empty() || key[0] == ':') {
      throw std::invalid_argument(path + ".initial_metadata: invalid key '" + h.key() + "'");
    }
    out.initial_metadata.emplace_back(std::move(key), h.raw_value().empty() ? h.value() : h.raw_value());
  }
  return out;
}

std::string ServiceConfig::describe() const {
  return cluster.empty() ? "target '" + target + "'" : "cluster '" + cluster + "'";
}

}  // namespace skiff::grpc
