// UpstreamTransportFactory: a cluster's transport_socket and transport_socket_matches as TLS contexts, and
// the per-endpoint choice between them.
#include "skiff/upstream/transport_socket.h"

#include <cctype>
#include <stdexcept>

#include "skiff/common/logging.h"
#include "skiff/tls/context_config.h"
#include "skiff/tls/secret_provider.h"
#include "skiff/upstream/host.h"
#if __has_include("envoy/extensions/upstreams/http/v3/http_protocol_options.pb.h")
#include "envoy/extensions/upstreams/http/v3/http_protocol_options.pb.h"
#define SKIFF_TS_HAVE_HTTP_OPTIONS 1
#endif

namespace skiff::upstream {
namespace {

constexpr std::string_view kMatchMetadataKey = "envoy.transport_socket_match";
constexpr std::string_view kRawBufferName = "envoy.transport_sockets.raw_buffer";

bool isRawBuffer(const envoy::config::core::v3::TransportSocket& socket) {
  if (socket.has_typed_config()) return socket.typed_config().type_url().ends_with(".RawBuffer");
  return socket.name() == kRawBufferName || socket.name().empty();
}

// Null for raw_buffer; a client context otherwise.
tls::TlsContextSharedPtr makeContext(const envoy::config::core::v3::TransportSocket& socket,
                                     stats::Store& store, const std::string& stat_prefix,
                                     const std::string& path, const std::string& cluster) {
  if (isRawBuffer(socket)) return nullptr;
  if (socket.name() != tls::kTlsTransportSocketName &&
      !socket.typed_config().type_url().ends_with(".UpstreamTlsContext")) {
    throw std::invalid_argument(path + ".name: transport socket '" + socket.name() + "' is not supported");
  }
  std::vector<std::string> warnings;
  auto config = tls::parseClientTransportSocket(socket, &tls::processSecretManager(), path, &warnings);
  for (const auto& w : warnings) SKIFF_LOG(kUpstream, warn, "cluster '{}': {}: {}", cluster, path, w);
  try {
    return tls::TlsContext::makeClient(std::move(config), store, stat_prefix + "ssl.");
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(path + ".typed_config." + e.what());
  }
}

}  // namespace

UpstreamTransportFactory::UpstreamTransportFactory(const envoy::config::cluster::v3::Cluster& cluster,
                                                   stats::Store& store, const std::string& stat_prefix) {
  if (cluster.has_transport_socket()) {
    default_.context =
        makeContext(cluster.transport_socket(), store, stat_prefix, "transport_socket", cluster.name());
  }
  any_tls_ = default_.context != nullptr;
  for (int i = 0; i < cluster.transport_socket_matches_size(); ++i) {
    const auto& m = cluster.transport_socket_matches(i);
    const std::string path = "transport_socket_matches[" + std::to_string(i) + "]";
    Match match;
    match.transport.name = m.name();
    match.transport.index = static_cast<uint32_t>(i + 1);
    match.transport.context =
        makeContext(m.transport_socket(), store, stat_prefix, path + ".transport_socket", cluster.name());
    for (const auto& [key, value] : m.match().fields()) {
      if (value.kind_case() != google::protobuf::Value::kStringValue) {
        SKIFF_LOG(kUpstream, warn, "cluster '{}': {}.match.{}: only string values are matched; never matches",
                  cluster.name(), path, key);
        match.unmatchable = true;
        continue;
      }
      match.fields.emplace_back(key, value.string_value());
    }
    any_tls_ = any_tls_ || match.transport.context != nullptr;
    matches_.push_back(std::move(match));
  }
  const envoy::config::core::v3::UpstreamHttpProtocolOptions* options = nullptr;
  if (cluster.has_upstream_http_protocol_options()) options = &cluster.upstream_http_protocol_options();
#ifdef SKIFF_TS_HAVE_HTTP_OPTIONS
  envoy::extensions::upstreams::http::v3::HttpProtocolOptions typed;
  const auto& ext = cluster.typed_extension_protocol_options();
  if (auto it = ext.find("envoy.extensions.upstreams.http.v3.HttpProtocolOptions");
      it != ext.end() && it->second.UnpackTo(&typed) && typed.has_upstream_http_protocol_options()) {
    setAutoSni(typed.upstream_http_protocol_options());
    options = nullptr;
  }
#endif
  if (options != nullptr) setAutoSni(*options);
}

void UpstreamTransportFactory::setAutoSni(
    const envoy::config::core::v3::UpstreamHttpProtocolOptions& options) {
  auto_sni_ = options.auto_sni();
  auto_san_validation_ = options.auto_san_validation();
  auto_sni_header_ =
      options.override_auto_sni_header().empty() ? ":authority" : options.override_auto_sni_header();
  for (char& c : auto_sni_header_) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (auto_sni_header_ == "host") auto_sni_header_ = ":authority";  // HTTP/1 Host is kept as :authority
}

namespace {

// The "envoy.transport_socket_match" labels of `metadata`, null when it has none.
const google::protobuf::Struct* matchLabels(const envoy::config::core::v3::Metadata& metadata) {
  const auto& filter = metadata.filter_metadata();
  if (filter.empty()) return nullptr;
  // select() runs per request: the map wants a std::string key, so build it once.
  static const std::string& key = *new std::string(kMatchMetadataKey);
  auto it = filter.find(key);
  return it == filter.end() ? nullptr : &it->second;
}

}  // namespace

bool UpstreamTransportFactory::matches(const Match& m, const google::protobuf::Struct* labels) {
  if (m.unmatchable) return false;
  for (const auto& [key, value] : m.fields) {
    if (labels == nullptr) return false;  // an empty criterion matches even without labels (Envoy)
    auto f = labels->fields().find(key);
    if (f == labels->fields().end() || f->second.kind_case() != google::protobuf::Value::kStringValue ||
        f->second.string_value() != value) {
      return false;
    }
  }
  return true;
}

const UpstreamTransport& UpstreamTransportFactory::select(const Host& host) const {
  if (matches_.empty()) return default_;
  // Envoy's order: every match against the endpoint's labels, then every match against its locality's.
  const google::protobuf::Struct* labels = matchLabels(host.metadata);
  for (const auto& m : matches_) {
    if (matches(m, labels)) return m.transport;
  }
  // Without locality labels the second pass could only match what matched without labels in the first.
  const google::protobuf::Struct* locality_labels =
      host.locality ? matchLabels(host.locality->metadata) : nullptr;
  if (locality_labels != nullptr) {
    for (const auto& m : matches_) {
      if (matches(m, locality_labels)) return m.transport;
    }
  }
  return default_;
}

namespace {

// A host (":authority" value or DNS name) as an SNI: no port, never an IP literal ("" then).
std::string sniName(std::string_view authority) {
  std::string name(authority);
  if (!name.empty() && name.front() == '[') return {};  // [v6]:port
  if (auto colon = name.rfind(':'); colon != std::string::npos && name.find(':') == colon) name.resize(colon);
  if (!name.empty() && name.back() == '.') name.pop_back();  // absolute form: "example.com."
  std::error_code ec;
  asio::ip::make_address(name, ec);
  if (!ec) return {};
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

}  // namespace

std::string UpstreamTransportFactory::requestSni(std::string_view authority) const {
  return auto_sni_ ? sniName(authority) : std::string();
}

tls::HandshakeOptions UpstreamTransportFactory::handshakeOptions(const Host& host,
                                                                 const std::string& sni_override) const {
  tls::HandshakeOptions options;
  if (auto_sni_) {
    std::string name = sniName(sni_override.empty() ? std::string_view(host.hostname) : sni_override);
    if (!name.empty()) {
      options.sni = name;
      if (auto_san_validation_) options.extra_dns_san_matches.push_back(std::move(name));
    }
  }
  return options;
}

std::shared_ptr<const UpstreamTransportFactory> makeUpstreamTransportFactory(
    const envoy::config::cluster::v3::Cluster& cluster, stats::Store& store, const std::string& stat_prefix) {
  if (!cluster.has_transport_socket() && cluster.transport_socket_matches_size() == 0) return nullptr;
  auto factory = std::make_shared<const UpstreamTransportFactory>(cluster, store, stat_prefix);
  if (!factory->anyTls()) return nullptr;
  return factory;
}

}  // namespace skiff::upstream
