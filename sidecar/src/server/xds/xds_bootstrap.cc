// XdsManager's bootstrap-side helpers: the ADS target, the allow-list of unknown (Istio-private) HTTP
// filters, and the listener normalisation applied to every LDS resource before it is built.
#include "server/xds/xds_manager.h"

#include <google/protobuf/util/message_differencer.h>
#include <google/protobuf/util/time_util.h>
#include <grpcpp/security/credentials.h>

#include <malloc.h>

#include <algorithm>
#include <asio/post.hpp>
#include <stdexcept>
#include <utility>

#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "envoy/extensions/transport_sockets/tls/v3/secret.pb.h"
#include "server/xds/control_plane_tls.h"
#include "server/xds/nack_message.h"
#include "server/xds/route_config_provider.h"
#include "server/xds/secret_refs.h"
#include "server/xds/version_hash.h"
#include "skiff/common/logging.h"
#include "skiff/config/typed_struct.h"
#include "skiff/envoy_filter/runtime.h"
#include "skiff/filters/http_filter_registry.h"
#include "skiff/tls/secret_provider.h"
#include "skiff/xds/node.h"

namespace skiff::server {

using envoy::config::bootstrap::v3::Bootstrap;
using envoy::config::cluster::v3::Cluster;

std::string XdsManager::adsTarget(const Bootstrap& bootstrap) {
  const auto& ads = bootstrap.dynamic_resources().ads_config();
  const std::string p = "dynamic_resources.ads_config.grpc_services";
  if (ads.grpc_services_size() == 0) throw std::invalid_argument(p + ": must name one gRPC service");
  if (ads.grpc_services_size() > 1) {
    SKIFF_LOG(kConfig, warn, "{}: only the first of {} gRPC services is used", p, ads.grpc_services_size());
  }
  const auto& service = ads.grpc_services(0);
  std::string error;
  auto resolve = [&](const std::string& name) -> std::optional<std::string> {
    const Cluster* found = nullptr;
    for (const auto& c : bootstrap.static_resources().clusters()) {
      if (c.name() == name) found = &c;
    }
    const std::string where = p + "[0].envoy_grpc.cluster_name";
    if (found == nullptr) {
      error = where + ": '" + name + "' is not a static cluster";
      return std::nullopt;
    }
    for (const auto& locality : found->load_assignment().endpoints()) {
      for (const auto& ep : locality.lb_endpoints()) {
        const auto& address = ep.endpoint().address();
        if (address.has_pipe()) return "unix:" + address.pipe().path();
        if (address.has_socket_address()) {
          const auto& sa = address.socket_address();
          const bool v6 = sa.address().find(':') != std::string::npos;
          return (v6 ? "[" + sa.address() + "]" : sa.address()) + ":" + std::to_string(sa.port_value());
        }
      }
    }
    error = where + ": cluster '" + name + "' has no endpoint address";
    return std::nullopt;
  };
  auto target = xds::targetOf(service, resolve);
  if (!target) {
    if (error.empty()) error = p + "[0]: needs envoy_grpc.cluster_name or google_grpc.target_uri";
    throw std::invalid_argument(error);
  }
  return *target;
}

std::set<std::string> XdsManager::allowedUnknownExtensions(const Bootstrap& bootstrap) {
  std::set<std::string> out;
  for (const auto& layer : bootstrap.layered_runtime().layers()) {
    const auto& fields = layer.static_layer().fields();
    auto it = fields.find("skiff.allow_unknown_extensions");
    if (it == fields.end()) continue;
    std::string list = it->second.string_value();
    size_t start = 0;
    while (start <= list.size()) {
      size_t end = list.find(',', start);
      if (end == std::string::npos) end = list.size();
      std::string name = list.substr(start, end - start);
      name.erase(0, name.find_first_not_of(" \t"));
      name.erase(name.find_last_not_of(" \t") + 1);
      if (!name.empty()) out.insert(name);
      start = end + 1;
    }
  }
  return out;
}

envoy::config::listener::v3::Listener XdsManager::normalizeListener(envoy::config::listener::v3::Listener l) {
  // Envoy still honours the v2-era deprecated_v1.bind_to_port (Istio 1.10 sets it on outbound listeners).
  if (!l.has_bind_to_port() && l.has_deprecated_v1() && l.deprecated_v1().has_bind_to_port()) {
    *l.mutable_bind_to_port() = l.deprecated_v1().bind_to_port();
  }
  if (allowed_unknown_.empty()) return l;
  auto strip = [&](envoy::config::listener::v3::FilterChain& chain) {
    for (auto& filter : *chain.mutable_filters()) {
      envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager hcm;
      if (!filter.has_typed_config() || !filter.typed_config().UnpackTo(&hcm)) continue;
      auto* filters = hcm.mutable_http_filters();
      const int before = filters->size();
      for (int i = filters->size() - 1; i >= 0; --i) {
        const auto& f = filters->Get(i);
        if (!allowed_unknown_.count(f.name())) continue;
        google::protobuf::Any unwrapped;
        const std::string& type = config::unwrapTypedStruct(f.typed_config(), &unwrapped)
                                      ? unwrapped.type_url()
                                      : f.typed_config().type_url();
        if (filters::findHttpFilter(type.empty() ? std::string_view() : std::string_view(type), f.name()))
          continue;
        if (skipped_logged_.insert({f.name(), l.name()}).second) {
          SKIFF_LOG(kConfig, warn,
                    "listener '{}': HTTP filter '{}' is not supported; skipped (allowed by runtime key "
                    "skiff.allow_unknown_extensions)",
                    l.name(), f.name());
        }
        filters->DeleteSubrange(i, 1);
      }
      if (filters->size() != before) filter.mutable_typed_config()->PackFrom(hcm);
    }
  };
  for (auto& chain : *l.mutable_filter_chains()) strip(chain);
  if (l.has_default_filter_chain()) strip(*l.mutable_default_filter_chain());
  return l;
}

}  // namespace skiff::server
