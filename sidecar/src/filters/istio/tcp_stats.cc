// istio.stats for TCP (the network filter in front of tcp_proxy): Istio's connection and byte counters,
// labelled with the peer Istio's TCP metadata exchange found (tcp_exchange.h) and the TLS principals.
#include <google/protobuf/wrappers.pb.h>

#include <asio/steady_timer.hpp>
#include <optional>

#include "envoy/extensions/filters/network/wasm/v3/wasm.pb.h"
#include "filters/istio/istio.h"
#include "filters/istio/tcp_exchange.h"
#include "filters/network/network_filter.h"
#include "skiff/common/logging.h"
#include "skiff/tls/transport.h"

namespace skiff::filters::istio {
namespace {

namespace net = filters::network;

constexpr std::string_view kStatsType = "type.googleapis.com/stats.PluginConfig";
constexpr std::string_view kNetworkWasmType =
    "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm";

struct TcpStatsConfig {
  StatsConfig stats;
  bool fixed_reporter = false;  // the Wasm plugin's root id named the direction
};

// Which side of the mesh a connection is on: the listener (istiod's virtualInbound / virtualOutbound), else
// the cluster tcp_proxy picked (inbound|..., InboundPassthroughCluster*).
Reporter connectionReporter(const http::StreamInfo& info) {
  if (info.connection) {
    const std::string& l = info.connection->listener_name;
    if (l == "virtualInbound" || l.starts_with("inbound")) return Reporter::kDestination;
    if (l == "virtualOutbound" || l.starts_with("outbound")) return Reporter::kSource;
  }
  const std::string& c = info.upstream_cluster;
  return c.starts_with("inbound") || c.starts_with("InboundPassthrough") ? Reporter::kDestination
                                                                         : Reporter::kSource;
}

class TcpStatsFilter : public net::Filter, private TcpPeers::Listener {
 public:
  TcpStatsFilter(std::shared_ptr<const TcpStatsConfig> config, IstioMetrics& metrics)
      : config_(std::move(config)), metrics_(metrics) {}
  ~TcpStatsFilter() override {
    if (state_) state_->timer.cancel();
    if (peers_ && peers_->listener == this) peers_->listener = nullptr;
  }
  void setCallbacks(net::FilterCallbacks& callbacks) override { callbacks_ = &callbacks; }
  net::FilterStatus onNewConnection() override {
    // Where the exchange's results arrive; without it (no mutable StreamInfo) labels fix at the first bytes.
    if (http::StreamInfo* info = callbacks_->mutableStreamInfo()) {
      peers_ = &tcpPeers(*info);
      peers_->listener = this;
    }
    return net::FilterStatus::kContinue;
  }
  net::FilterStatus onDownstreamData(std::string&, bool) override {
    if (series_ == nullptr && peerKnown()) open();  // once open, skip the name checks
    return net::FilterStatus::kContinue;
  }
  net::FilterStatus onUpstreamData(std::string&, bool) override {
    // A server that speaks first must not fix the labels before the client's preface (Istio opens once
    // the peer is read, or at the close).
    if (series_ == nullptr && peerKnown()) open();  // once open, skip the name checks
    return net::FilterStatus::kContinue;
  }
  void onClose(std::string_view) override {
    open();
    if (state_) state_->timer.cancel();
    report();
    series_->counters[1].inc();  // closed
  }

 private:
  struct State {
    explicit State(asio::io_context& io) : timer(io) {}
    asio::steady_timer timer;
  };

  Reporter reporter() const {
    return config_->fixed_reporter ? config_->stats.reporter : connectionReporter(callbacks_->streamInfo());
  }

  // As Istio: the connection is counted as opened once the exchange for the reporter's peer is over (the
  // downstream one for the destination reporter, the upstream one for the source), or at the close.
  bool peerKnown() const {
    if (peers_ == nullptr) return true;
    if (reporter() == Reporter::kSource) return peers_->upstream_settled;
    return !peers_->downstream_expected || peers_->downstream_settled;
  }
  void onPeersChanged() override {
    if (series_ == nullptr && peerKnown()) open();  // once open, skip the name checks
  }

  // Fixes the labels and counts the connection as opened.
  void open() {
    if (series_ != nullptr || callbacks_ == nullptr) return;
    const http::StreamInfo& info = callbacks_->streamInfo();
    RequestFacts f;
    f.reporter = reporter();
    f.local = &localNode().workload;
    if (peers_) f.peer = f.reporter == Reporter::kSource ? peers_->upstream.get() : peers_->downstream.get();
    // Principals: the server side's from the downstream handshake, the client side's from the upstream one.
    const tls::TlsConnectionInfo* tls = nullptr;
    if (f.reporter == Reporter::kSource) {
      tls = info.upstream_tls.get();
    } else if (info.connection) {
      tls = info.connection->tls.get();
    }
    if (tls) {
      if (!tls->uri_san_peer.empty()) f.peer_principal = tls->uri_san_peer[0];
      if (!tls->uri_san_local.empty()) f.local_principal = tls->uri_san_local[0];
    }
    f.cluster_name = info.upstream_cluster;
    f.protocol = "tcp";
    f.response_flags = info.response_flags == 0 ? std::string_view("-") : std::string_view();
    std::string flags;
    if (info.response_flags != 0) {
      flags = http::responseFlagsShort(info.response_flags);
      f.response_flags = flags;
    }
    LabelValues all;
    buildLabels(f, all);
    std::array<std::string_view, kLabelCount - 2> values;
    size_t n = 0;
    for (size_t i = 0; i < kLabelCount; ++i) {
      if (i != kResponseCode && i != kGrpcResponseStatus) values[n++] = all[i];
    }
    series_ = &metrics_.tcp.series(values);
    series_->counters[0].inc();  // opened
    if (config_->stats.tcp_reporting_duration.count() > 0) {
      state_ = std::make_shared<State>(callbacks_->dispatcher());
      arm();
    }
  }

  void arm() {
    state_->timer.expires_after(config_->stats.tcp_reporting_duration);
    state_->timer.async_wait([this, weak = std::weak_ptr<State>(state_)](std::error_code ec) {
      if (ec || weak.expired()) return;
      report();
      arm();
    });
  }

  // Byte deltas since the last report, without the exchange's preface bytes.
  void report() {
    const http::StreamInfo& info = callbacks_->streamInfo();
    const uint64_t preface_out = peers_ ? peers_->downstream_preface_out : 0;
    const uint64_t preface_in = peers_ ? peers_->downstream_preface_in : 0;
    add(series_->counters[2], info.bytes_sent, preface_out, sent_);
    add(series_->counters[3], info.bytes_received, preface_in, received_);
  }
  // The preface may be counted as exchanged before its bytes moved: never let the total go back.
  static void add(const stats::Counter& counter, uint64_t bytes, uint64_t preface, uint64_t& reported) {
    const uint64_t total = bytes > preface ? bytes - preface : 0;
    if (total <= reported) return;
    counter.inc(total - reported);
    reported = total;
  }

  std::shared_ptr<const TcpStatsConfig> config_;
  IstioMetrics& metrics_;
  net::FilterCallbacks* callbacks_ = nullptr;
  TcpPeers* peers_ = nullptr;  // owned by the connection's StreamInfo, which outlives the filters
  const stats::LabelledMetrics::Series* series_ = nullptr;
  std::shared_ptr<State> state_;
  uint64_t sent_ = 0, received_ = 0;
};

class TcpStatsFactory : public net::FilterFactory {
 public:
  TcpStatsFactory(std::shared_ptr<const TcpStatsConfig> config, stats::Store& store)
      : config_(std::move(config)), metrics_(IstioMetrics::forStore(store)) {}
  std::unique_ptr<net::Filter> createFilter() const override {
    return std::make_unique<TcpStatsFilter>(config_, metrics_);
  }

 private:
  std::shared_ptr<const TcpStatsConfig> config_;
  IstioMetrics& metrics_;
};

net::FilterFactorySharedPtr buildTcp(const ::stats::PluginConfig& proto, std::optional<Reporter> reporter,
                                     stats::Store& store, const std::string& path) {
  bindExchangeStats(store);
  auto config = std::make_shared<TcpStatsConfig>();
  std::vector<std::string> warnings;
  config->stats = parseStatsConfig(proto, reporter.value_or(Reporter::kSource), &warnings);
  config->fixed_reporter = reporter.has_value() || config->stats.reporter == Reporter::kWaypoint;
  for (const auto& w : warnings) SKIFF_LOG(kConfig, warn, "{}: istio.stats: {}", path, w);
  if (config->stats.has_overrides) {
    SKIFF_LOG(kConfig, warn, "{}: istio.stats: metric overrides apply to HTTP metrics only; TCP ignores them",
              path);
  }
  return std::make_shared<TcpStatsFactory>(std::move(config), store);
}

net::FilterFactorySharedPtr createTcp(const google::protobuf::Any& in, stats::Store& store,
                                      const std::string& path) {
  google::protobuf::Any any = in;
  unwrapTypedStruct(in, &any);
  ::stats::PluginConfig proto;
  if (!any.type_url().empty() && !any.UnpackTo(&proto)) {
    throw std::invalid_argument(path + ".typed_config: istio.stats: cannot decode stats.PluginConfig");
  }
  return buildTcp(proto, std::nullopt, store, path);
}

// The Wasm null-VM envoy.wasm.stats of Istio 1.x; null for any other network Wasm config.
net::FilterFactorySharedPtr createTcpNullVm(const google::protobuf::Any& in, stats::Store& store,
                                            const std::string& path) {
  google::protobuf::Any any = in;
  unwrapTypedStruct(in, &any);
  envoy::extensions::filters::network::wasm::v3::Wasm wasm;
  if (!any.Is<envoy::extensions::filters::network::wasm::v3::Wasm>() || !any.UnpackTo(&wasm)) return nullptr;
  const auto& plugin = wasm.config();
  if (plugin.vm_config().runtime() != "envoy.wasm.runtime.null" ||
      plugin.vm_config().code().local().inline_string() != "envoy.wasm.stats") {
    return nullptr;
  }
  std::optional<Reporter> reporter;
  if (plugin.root_id().find("inbound") != std::string::npos) reporter = Reporter::kDestination;
  if (plugin.root_id().find("outbound") != std::string::npos) reporter = Reporter::kSource;
  std::string json;
  google::protobuf::StringValue s;
  if (plugin.configuration().UnpackTo(&s)) json = s.value();
  return buildTcp(pluginConfigFromJson(json), reporter, store, path);
}

}  // namespace

void registerIstioNetworkFilters() {
  registerIstioTcpExchange();
  net::registerNetworkFilter(net::FilterRegistration{"istio.stats", std::string(kStatsType), createTcp});
  const net::FilterRegistration* wasm = net::findNetworkFilter(kNetworkWasmType, {});
  if (wasm == nullptr) return;
  net::FilterRegistration wrapped = *wasm;
  wrapped.create = [inner = wasm->create](const google::protobuf::Any& any, stats::Store& store,
                                          const std::string& path) -> net::FilterFactorySharedPtr {
    if (auto factory = createTcpNullVm(any, store, path)) return factory;
    return inner ? inner(any, store, path) : nullptr;
  };
  net::registerNetworkFilter(std::move(wrapped));
}

}  // namespace skiff::filters::istio
