// The listener filter registry (by type URL, then by well-known name), original_dst, original_src and
// the filter_disabled predicate.
#include "server/listener_filters/listener_filter.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <stdexcept>

#include "envoy/extensions/filters/listener/http_inspector/v3/http_inspector.pb.h"
#include "envoy/extensions/filters/listener/original_dst/v3/original_dst.pb.h"
#include "envoy/extensions/filters/listener/original_src/v3/original_src.pb.h"
#include "envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.pb.h"
#include "server/listener_filters/http_inspector.h"
#include "server/listener_filters/tls_inspector.h"
#include "skiff/common/logging.h"
#include "skiff/config/extension_registry.h"

namespace skiff::server {

namespace {

// linux/netfilter_ipv4.h and linux/netfilter_ipv6/ip6_tables.h; both are 80.
constexpr int kSoOriginalDst = 80;
constexpr int kIp6tSoOriginalDst = 80;

class OriginalDstFilter : public ListenerFilter {
 public:
  explicit OriginalDstFilter(bool transparent) : transparent_(transparent) {}
  ListenerFilterStatus onAccept(int fd, network::ConnectionInfo& info) const override {
    // REDIRECT (NAT): conntrack knows the destination before translation.
    // The kernel fills a sockaddr_in / sockaddr_in6 but does not report its length, so ask for exactly that.
    sockaddr_storage ss{};
    const bool v6 = info.local.address().is_v6();
    socklen_t len = v6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    const int rc = v6 ? ::getsockopt(fd, SOL_IPV6, kIp6tSoOriginalDst, &ss, &len)
                      : ::getsockopt(fd, SOL_IP, kSoOriginalDst, &ss, &len);
    if (rc == 0 && ss.ss_family == (v6 ? AF_INET6 : AF_INET)) {
      asio::ip::tcp::endpoint restored;
      std::memcpy(restored.data(), &ss, len);
      restored.resize(len);
      info.local = restored;
      info.local_restored = true;
    } else if (transparent_) {
      // TPROXY: the accepted socket's local address already is the original destination.
      info.local_restored = true;
    }
    return ListenerFilterStatus::kContinue;
  }

 private:
  const bool transparent_;
};

class OriginalSrcFilter : public ListenerFilter {
 public:
  OriginalSrcFilter(bool bind_port, uint32_t mark) : source_{mark, bind_port} {}
  ListenerFilterStatus onAccept(int, network::ConnectionInfo& info) const override {
    info.original_source = source_;
    return ListenerFilterStatus::kContinue;
  }

 private:
  const network::ConnectionInfo::OriginalSource source_;
};

bool isType(const envoy::config::listener::v3::ListenerFilter& proto, std::string_view type_url,
            std::initializer_list<std::string_view> names) {
  if (proto.has_typed_config()) return proto.typed_config().type_url() == type_url;
  for (auto n : names) {
    if (proto.name() == n) return true;
  }
  return false;
}

}  // namespace

ListenerFilterPredicate::ListenerFilterPredicate(
    const envoy::config::listener::v3::ListenerFilterChainMatchPredicate& proto, const std::string& path) {
  using P = envoy::config::listener::v3::ListenerFilterChainMatchPredicate;
  auto addChildren = [&](const P::MatchSet& set, const std::string& field) {
    if (set.rules_size() < 2)
      throw std::invalid_argument(path + "." + field + ".rules: at least two are required");
    for (int i = 0; i < set.rules_size(); ++i)
      children_.emplace_back(set.rules(i), path + "." + field + ".rules[" + std::to_string(i) + "]");
  };
  switch (proto.rule_case()) {
    case P::kOrMatch:
      kind_ = Kind::kOr;
      addChildren(proto.or_match(), "or_match");
      break;
    case P::kAndMatch:
      kind_ = Kind::kAnd;
      addChildren(proto.and_match(), "and_match");
      break;
    case P::kNotMatch:
      kind_ = Kind::kNot;
      children_.emplace_back(proto.not_match(), path + ".not_match");
      break;
    case P::kAnyMatch:
      kind_ = Kind::kAny;
      break;
    case P::kDestinationPortRange:
      kind_ = Kind::kPortRange;
      start_ = proto.destination_port_range().start();
      end_ = proto.destination_port_range().end();
      if (start_ > end_)
        throw std::invalid_argument(path + ".destination_port_range: start must not exceed end");
      break;
    default:
      throw std::invalid_argument(path +
                                  ": a rule is required (or_match, and_match, not_match, any_match, "
                                  "destination_port_range)");
  }
}

bool ListenerFilterPredicate::matches(const network::ConnectionInfo& info) const {
  switch (kind_) {
    case Kind::kAny:
      return true;
    case Kind::kOr:
      for (const auto& c : children_) {
        if (c.matches(info)) return true;
      }
      return false;
    case Kind::kAnd:
      for (const auto& c : children_) {
        if (!c.matches(info)) return false;
      }
      return true;
    case Kind::kNot:
      return !children_[0].matches(info);
    case Kind::kPortRange: {
      const int32_t port = info.local.port();
      return port >= start_ && port < end_;
    }
  }
  return false;
}

void registerListenerExtensions() {
  using config::Category;
  const std::string kPrefix = "type.googleapis.com/envoy.extensions.filters.";
  config::registerExtension(Category::kListenerFilter, "envoy.filters.listener.original_dst",
                            kPrefix + "listener.original_dst.v3.OriginalDst");
  config::registerExtension(Category::kListenerFilter, "envoy.filters.listener.original_src",
                            kPrefix + "listener.original_src.v3.OriginalSrc");
  config::registerExtension(Category::kListenerFilter, "envoy.filters.listener.tls_inspector",
                            kPrefix + "listener.tls_inspector.v3.TlsInspector");
  config::registerExtension(Category::kListenerFilter, "envoy.filters.listener.http_inspector",
                            kPrefix + "listener.http_inspector.v3.HttpInspector");
  config::registerExtension(Category::kNetworkFilter, "envoy.filters.network.rbac",
                            kPrefix + "network.rbac.v3.RBAC");
  config::registerExtension(Category::kNetworkFilter, "envoy.filters.network.wasm",
                            kPrefix + "network.wasm.v3.Wasm");
  config::registerExtension(Category::kNetworkFilter, "istio.stats",
                            "type.googleapis.com/stats.PluginConfig");
  config::registerExtension(Category::kNetworkFilter, "istio.metadata_exchange",
                            "type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange");
  config::registerExtension(Category::kNetworkFilter, "istio_authn",
                            "type.googleapis.com/io.istio.network.authn.Config");
}

ListenerFilterConstSharedPtr makeOriginalDstFilter(bool transparent) {
  return std::make_shared<const OriginalDstFilter>(transparent);
}

ListenerFilterEntry buildListenerFilter(const envoy::config::listener::v3::ListenerFilter& proto,
                                        const std::string& path, stats::Store& store, bool transparent) {
  ListenerFilterEntry entry;
  entry.name = proto.name();
  if (proto.has_filter_disabled()) entry.disabled.emplace(proto.filter_disabled(), path + ".filter_disabled");
  if (proto.has_config_discovery())
    throw std::invalid_argument(path + ".config_discovery: extension config discovery is not supported");
  const std::string url = proto.typed_config().type_url();
  if (isType(proto, "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst",
             {"envoy.filters.listener.original_dst", "envoy.listener.original_dst"})) {
    entry.filter = makeOriginalDstFilter(transparent);
  } else if (isType(proto,
                    "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
                    {"envoy.filters.listener.tls_inspector", "envoy.listener.tls_inspector"})) {
    envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector config;
    if (proto.has_typed_config() && !proto.typed_config().UnpackTo(&config))
      throw std::invalid_argument(path + ".typed_config: cannot decode TlsInspector");
    if (config.has_enable_ja3_fingerprinting() && config.enable_ja3_fingerprinting().value())
      SKIFF_LOG(kConfig, warn, "{}.typed_config.enable_ja3_fingerprinting: not supported; ignored", path);
    entry.filter = std::make_shared<const TlsInspector>(store);
  } else if (isType(proto,
                    "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector",
                    {"envoy.filters.listener.http_inspector", "envoy.listener.http_inspector"})) {
    entry.filter = std::make_shared<const HttpInspector>(store);
  } else if (isType(proto,
                    "type.googleapis.com/envoy.extensions.filters.listener.original_src.v3.OriginalSrc",
                    {"envoy.filters.listener.original_src", "envoy.listener.original_src"})) {
    envoy::extensions::filters::listener::original_src::v3::OriginalSrc config;
    if (proto.has_typed_config() && !proto.typed_config().UnpackTo(&config))
      throw std::invalid_argument(path + ".typed_config: cannot decode OriginalSrc");
    entry.filter = std::make_shared<const OriginalSrcFilter>(config.bind_port(), config.mark());
  } else {
    throw std::invalid_argument(path + ": listener filter '" + (url.empty() ? proto.name() : url) +
                                "' is not supported (original_dst, original_src, tls_inspector, "
                                "http_inspector are)");
  }
  return entry;
}

}  // namespace skiff::server
