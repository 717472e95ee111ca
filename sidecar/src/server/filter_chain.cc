// Filter chain building (terminal network filter, skipped telemetry filters) and the match table.
#include "server/filter_chain.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <set>
#include <stdexcept>

#include "skiff/common/logging.h"
#include "skiff/tls/context_config.h"
#include "skiff/tls/secret_provider.h"
#include "skiff/tls/xfcc.h"
#include "udpa/type/v1/typed_struct.pb.h"
#include "xds/type/v3/typed_struct.pb.h"

namespace skiff::server {

namespace {

constexpr std::string_view kHcmType =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
constexpr std::string_view kTcpProxyType =
    "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";
constexpr std::string_view kRbacType = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC";

// Istio's telemetry/peer-metadata filters: they never change what reaches the upstream, so a chain
// without them behaves the same apart from Istio's own metrics.
// The type a filter config names: its Any's type, or for a TypedStruct (what the loader makes of types
// this build has no proto for) the type inside; empty without typed_config.
std::string effectiveType(const envoy::config::listener::v3::Filter& f) {
  if (!f.has_typed_config()) return "";
  const auto& any = f.typed_config();
  udpa::type::v1::TypedStruct udpa;
  if (any.Is<udpa::type::v1::TypedStruct>() && any.UnpackTo(&udpa)) return udpa.type_url();
  xds::type::v3::TypedStruct xds;
  if (any.Is<xds::type::v3::TypedStruct>() && any.UnpackTo(&xds)) return xds.type_url();
  return any.type_url();
}

// Istio's telemetry/peer-metadata filters: they never change what reaches the upstream, so a chain
// without them behaves the same apart from Istio's own metrics.
bool isTelemetryOnly(const envoy::config::listener::v3::Filter& f) {
  static const std::set<std::string_view> kNames = {"istio.stats", "istio.metadata_exchange", "istio_authn",
                                                    "envoy.filters.network.wasm"};
  static const std::set<std::string_view> kTypes = {
      "type.googleapis.com/stats.PluginConfig",
      "type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange",
      "type.googleapis.com/io.istio.network.authn.Config",
      "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm"};
  return kNames.count(f.name()) > 0 || kTypes.count(effectiveType(f)) > 0;
}

bool isType(const envoy::config::listener::v3::Filter& f, std::string_view type, std::string_view name) {
  if (f.has_typed_config()) return effectiveType(f) == type;
  return f.name() == name;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// TLS termination (envoy.transport_sockets.tls with a DownstreamTlsContext); raw_buffer is plaintext.
void buildTransportSocket(const envoy::config::listener::v3::FilterChain& proto, const std::string& path,
                          stats::Store& store, const std::string& listener_stat_prefix,
                          FilterChainConfig& chain) {
  const auto& socket = proto.transport_socket();
  const std::string spath = path + ".transport_socket";
  const bool raw = socket.has_typed_config() ? socket.typed_config().type_url().ends_with(".RawBuffer")
                                             : socket.name() == "envoy.transport_sockets.raw_buffer";
  if (raw) return;
  if (socket.name() != tls::kTlsTransportSocketName &&
      !socket.typed_config().type_url().ends_with(".DownstreamTlsContext")) {
    throw std::invalid_argument(spath + ".name: transport socket '" + socket.name() + "' is not supported");
  }
  std::vector<std::string> warnings;
  auto config = tls::parseServerTransportSocket(socket, &tls::processSecretManager(), spath, &warnings);
  for (const auto& w : warnings) SKIFF_LOG(kConfig, warn, "{}: {}", spath, w);
  try {
    chain.tls = tls::TlsContext::makeServer(std::move(config), store, listener_stat_prefix + "ssl.");
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(spath + ".typed_config." + e.what());
  }
  if (proto.has_transport_socket_connect_timeout()) {
    const auto& d = proto.transport_socket_connect_timeout();
    if (d.seconds() < 0 || d.nanos() < 0)
      throw std::invalid_argument(path + ".transport_socket_connect_timeout: must not be negative");
    chain.handshake_timeout = std::chrono::milliseconds(d.seconds() * 1000 + d.nanos() / 1000000);
  }
  chain.handshake_timeouts.emplace(
      store.counter(listener_stat_prefix + "downstream_cx_transport_socket_connect_timeout"));
}

}  // namespace

void FilterChainConfig::flushAccessLogs(uint32_t worker) const {
  if (hcm && hcm->access_logs) hcm->access_logs->flush(worker);
#ifdef SKIFF_HAVE_TCP_PROXY
  if (tcp_proxy) tcp_proxy->flushAccessLogs(worker);
#endif
}

FilterChainConfigConstSharedPtr buildFilterChain(const envoy::config::listener::v3::FilterChain& proto,
                                                 const std::string& path, stats::Store& store,
                                                 uint32_t workers, uint32_t buffer_limit,
                                                 const std::string& listener_stat_prefix) {
  auto chain = std::make_shared<FilterChainConfig>();
  chain->name = proto.name();
  if (proto.filters_size() == 0) throw std::invalid_argument(path + ".filters: at least one is required");
  if (proto.has_transport_socket()) buildTransportSocket(proto, path, store, listener_stat_prefix, *chain);
  const int last = proto.filters_size() - 1;
  for (int i = 0; i < proto.filters_size(); ++i) {
    const auto& f = proto.filters(i);
    const std::string fpath = path + ".filters[" + std::to_string(i) + "]";
    const std::string what = f.has_typed_config() ? effectiveType(f) : f.name();
    if (f.has_config_discovery())
      throw std::invalid_argument(fpath + ".config_discovery: extension config discovery is not supported");
    const bool hcm = isType(f, kHcmType, "envoy.filters.network.http_connection_manager");
    const bool tcp = isType(f, kTcpProxyType, "envoy.filters.network.tcp_proxy");
    if (hcm || tcp) {
      if (i != last)
        throw std::invalid_argument(fpath + ": '" + f.name() + "' is a terminal filter and must be last");
      if (hcm) {
        ConnectionManagerConfig::Proto config;
        if (!f.typed_config().UnpackTo(&config))
          throw std::invalid_argument(fpath + ".typed_config: cannot decode HttpConnectionManager");
        auto hcm_config = std::make_shared<ConnectionManagerConfig>(config, fpath + ".typed_config", store,
                                                                    workers, buffer_limit);
        hcm_config->xfcc = tls::XfccConfig::fromProto(config);
        chain->hcm = std::move(hcm_config);
      } else {
#ifdef SKIFF_HAVE_TCP_PROXY
        envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy config;
        if (!f.typed_config().UnpackTo(&config))
          throw std::invalid_argument(fpath + ".typed_config: cannot decode TcpProxy");
        chain->tcp_proxy = std::make_shared<const TcpProxyConfig>(config, fpath + ".typed_config", store);
#else
        throw std::invalid_argument(fpath +
                                    ": envoy.filters.network.tcp_proxy is not built into this binary");
#endif
      }
      continue;
    }
    if (i == last) {
      throw std::invalid_argument(fpath +
                                  ": the last network filter must be terminal "
                                  "(http_connection_manager or tcp_proxy), not '" +
                                  what + "'");
    }
    // Registered network filters (the Wasm one); a null factory means "not run here" (skipped as before).
    if (const auto* reg =
            filters::network::findNetworkFilter(f.has_typed_config() ? effectiveType(f) : "", f.name())) {
      if (auto factory = reg->create(f.typed_config(), store, fpath)) {
        chain->network_filters.push_back(std::move(factory));
        continue;
      }
    }
    if (isTelemetryOnly(f)) {
      SKIFF_LOG(kConfig, warn, "{}: network filter '{}' is not supported; skipped (telemetry only)", fpath,
                f.name());
      continue;
    }
    if (isType(f, kRbacType, "envoy.filters.network.rbac")) {
      // An authorization filter we cannot enforce: fail closed rather than let everything through.
      chain->unusable = "network filter envoy.filters.network.rbac is not supported yet";
      SKIFF_LOG(kConfig, warn,
                "{}: envoy.filters.network.rbac is not supported yet; connections this chain "
                "wins are closed",
                fpath);
      continue;
    }
    throw std::invalid_argument(fpath + ": network filter '" + what + "' is not supported");
  }
  if (chain->hcm) {  // filters made for tcp_proxy only are not run in front of an HCM
    for (const auto& f : chain->network_filters) {
      if (!f->runsBeforeHcm()) {
        SKIFF_LOG(kConfig, debug, "{}: a network filter before http_connection_manager is not run there",
                  path);
      }
    }
  }
  return chain;
}

FilterChainMatcher::FilterChainMatcher(
    const std::vector<const envoy::config::listener::v3::FilterChainMatch*>& matches,
    const std::vector<std::string>& paths) {
  std::set<std::string> seen;
  for (size_t i = 0; i < matches.size(); ++i) {
    static const envoy::config::listener::v3::FilterChainMatch kEmpty;
    const auto& m = matches[i] ? *matches[i] : kEmpty;
    const std::string& path = paths[i];
    auto cidrs = [&](const auto& ranges, const char* field) {
      std::vector<Cidr> out;
      for (int r = 0; r < ranges.size(); ++r) {
        const std::string rpath = path + "." + field + "[" + std::to_string(r) + "]";
        std::error_code ec;
        Cidr c{asio::ip::make_address(ranges[r].address_prefix(), ec), 0};
        if (ec)
          throw std::invalid_argument(rpath + ".address_prefix: '" + ranges[r].address_prefix() +
                                      "' is not an IP address");
        const uint32_t max = c.prefix.is_v4() ? 32 : 128;
        c.len = ranges[r].has_prefix_len() ? ranges[r].prefix_len().value() : max;
        if (c.len > max)
          throw std::invalid_argument(rpath + ".prefix_len: " + std::to_string(c.len) + " exceeds " +
                                      std::to_string(max));
        out.push_back(c);
      }
      return out;
    };
    Chain c;
    c.destination = cidrs(m.prefix_ranges(), "prefix_ranges");
    c.direct_source = cidrs(m.direct_source_prefix_ranges(), "direct_source_prefix_ranges");
    c.source = cidrs(m.source_prefix_ranges(), "source_prefix_ranges");
    for (int s = 0; s < m.server_names_size(); ++s) {
      std::string name = lower(m.server_names(s));
      if (name.rfind("*.", 0) == 0) {
        c.wildcard_suffixes.push_back(name.substr(1));
      } else if (name.empty() || name.find('*') != std::string::npos) {
        throw std::invalid_argument(path + ".server_names[" + std::to_string(s) + "]: '" + m.server_names(s) +
                                    "' is not a host name or a '*.' wildcard");
      } else {
        c.exact_names.push_back(std::move(name));
      }
    }
    c.transport_protocol = m.transport_protocol();
    c.application_protocols.assign(m.application_protocols().begin(), m.application_protocols().end());
    c.source_type = static_cast<int>(m.source_type());
    c.source_ports.assign(m.source_ports().begin(), m.source_ports().end());
    if (!m.address_suffix().empty() || m.has_suffix_len())
      SKIFF_LOG(kConfig, warn, "{}.address_suffix/suffix_len: not implemented (as in Envoy); ignored", path);
    if (m.has_destination_port() &&
        (m.destination_port().value() == 0 || m.destination_port().value() > 65535))
      throw std::invalid_argument(path + ".destination_port: must be 1..65535");

    // Two chains with the same criteria would make the winner arbitrary; Envoy rejects that too.
    auto sorted = [](auto v) {
      std::sort(v.begin(), v.end());
      std::string s;
      for (const auto& x : v) {
        if constexpr (std::is_same_v<std::decay_t<decltype(x)>, uint32_t>)
          s += std::to_string(x);
        else
          s += x;
        s += ",";
      }
      return s + "|";
    };
    auto cidr_strings = [](const std::vector<Cidr>& v) {
      std::vector<std::string> s;
      s.reserve(v.size());
      for (const auto& x : v) s.push_back(x.prefix.to_string() + "/" + std::to_string(x.len));
      return s;
    };
    const std::string key =
        (m.has_destination_port() ? std::to_string(m.destination_port().value()) : "*") + "|" +
        sorted(cidr_strings(c.destination)) + sorted(c.exact_names) + sorted(c.wildcard_suffixes) +
        c.transport_protocol + "|" + sorted(c.application_protocols) + sorted(cidr_strings(c.direct_source)) +
        std::to_string(c.source_type) + "|" + sorted(cidr_strings(c.source)) + sorted(c.source_ports);
    if (!seen.insert(key).second)
      throw std::invalid_argument(path + ": another filter chain has the same filter_chain_match");

    const auto index = static_cast<uint32_t>(chains_.size());
    if (m.has_destination_port()) {
      by_port_[m.destination_port().value()].push_back(index);
    } else {
      any_port_.push_back(index);
    }
    chains_.push_back(std::move(c));
  }
}

int FilterChainMatcher::cidrScore(const std::vector<Cidr>& ranges, const asio::ip::address& address) {
  if (ranges.empty()) return 0;
  int best = -1;
  for (const auto& r : ranges) {
    if (r.prefix.is_v4() != address.is_v4()) continue;
    bool in;
    if (address.is_v4()) {
      const uint32_t mask = r.len == 0 ? 0 : ~uint32_t{0} << (32 - r.len);
      in = (address.to_v4().to_uint() & mask) == (r.prefix.to_v4().to_uint() & mask);
    } else {
      const auto a = address.to_v6().to_bytes();
      const auto p = r.prefix.to_v6().to_bytes();
      in = true;
      for (uint32_t bit = 0; bit < r.len && in; bit += 8) {
        const uint32_t take = std::min<uint32_t>(8, r.len - bit);
        const auto mask = static_cast<uint8_t>(0xff << (8 - take));
        in = (a[bit / 8] & mask) == (p[bit / 8] & mask);
      }
    }
    if (in) best = std::max(best, static_cast<int>(r.len) + 1);
  }
  return best;
}

int FilterChainMatcher::score(const Chain& c, int stage, const network::ConnectionInfo& info) const {
  switch (stage) {
    case 0:
      return cidrScore(c.destination, info.local.address());
    case 1: {
      if (c.exact_names.empty() && c.wildcard_suffixes.empty()) return 0;
      if (info.server_name.empty()) return -1;
      for (const auto& n : c.exact_names) {
        if (n == info.server_name) return 1 << 20;
      }
      int best = -1;
      for (const auto& s : c.wildcard_suffixes) {
        // "*.example.com" needs at least one label before ".example.com".
        if (info.server_name.size() > s.size() && info.server_name.ends_with(s))
          best = std::max(best, static_cast<int>(s.size()));
      }
      return best;
    }
    case 2:
      if (c.transport_protocol.empty()) return 0;
      return c.transport_protocol == info.transport_protocol ? 1 : -1;
    case 3: {
      // Envoy walks the client's list in order: a chain listing an earlier protocol is more specific.
      if (c.application_protocols.empty()) return 0;
      const auto& client = info.application_protocols;
      for (size_t i = 0; i < client.size(); ++i) {
        if (std::find(c.application_protocols.begin(), c.application_protocols.end(), client[i]) !=
            c.application_protocols.end())
          return static_cast<int>(client.size() - i);
      }
      return -1;
    }
    case 4:
      return cidrScore(c.direct_source, info.remote.address());
    case 5: {
      if (c.source_type == 0) return 0;
      const auto& remote = info.remote.address();
      const bool local = remote.is_loopback() || remote == info.local.address();
      return (c.source_type == 1) == local ? 1 : -1;
    }
    case 6:
      return cidrScore(c.source, info.remote.address());
    case 7:
      if (c.source_ports.empty()) return 0;
      return std::find(c.source_ports.begin(), c.source_ports.end(), info.remote.port()) !=
                     c.source_ports.end()
                 ? 1
                 : -1;
  }
  return -1;
}

std::optional<size_t> FilterChainMatcher::match(const network::ConnectionInfo& info) const {
  const std::vector<uint32_t>* candidates = &any_port_;
  if (!by_port_.empty()) {
    auto it = by_port_.find(info.local.port());
    if (it != by_port_.end()) candidates = &it->second;
  }
  // Each stage scores the chains left once and keeps those with the best score. The survivors live
  // on the stack unless a port has unusually many chains.
  constexpr size_t kInline = 64;
  std::array<uint32_t, kInline> inline_alive;
  std::array<int, kInline> inline_scores;
  std::vector<uint32_t> heap_alive;
  std::vector<int> heap_scores;
  uint32_t* alive = inline_alive.data();
  int* scores = inline_scores.data();
  if (candidates->size() > kInline) {
    heap_alive.resize(candidates->size());
    heap_scores.resize(candidates->size());
    alive = heap_alive.data();
    scores = heap_scores.data();
  }
  size_t count = candidates->size();
  std::copy(candidates->begin(), candidates->end(), alive);
  for (int stage = 0; stage < kStages && count > 0; ++stage) {
    int best = -1;
    for (size_t i = 0; i < count; ++i) {
      scores[i] = score(chains_[alive[i]], stage, info);
      best = std::max(best, scores[i]);
    }
    if (best < 0) return std::nullopt;
    size_t kept = 0;
    for (size_t i = 0; i < count; ++i) {
      if (scores[i] == best) alive[kept++] = alive[i];
    }
    count = kept;
  }
  if (count == 0) return std::nullopt;
  return alive[0];
}

}  // namespace skiff::server
