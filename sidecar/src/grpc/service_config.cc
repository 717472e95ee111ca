// ServiceConfig: an Envoy GrpcService checked and flattened once at config time.
#include <google/protobuf/util/time_util.h>

#include <stdexcept>

#include "envoy/config/core/v3/grpc_service.pb.h"
#include "skiff/grpc/async_client.h"

namespace skiff::grpc {

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
      if (g.has_channel_credentials() &&
          g.channel_credentials().credential_specifier_case() !=
              Proto::GoogleGrpc::ChannelCredentials::CREDENTIAL_SPECIFIER_NOT_SET) {
        throw std::invalid_argument(
            path + ".google_grpc.channel_credentials: only plaintext channels are supported");
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
