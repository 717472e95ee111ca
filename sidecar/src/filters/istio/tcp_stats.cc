// istio.stats for TCP (the network filter in front of tcp_proxy): Istio's connection and byte counters.
// Without Istio's TCP metadata exchange the peer is unknown; principals come from the downstream TLS.
#include <google/protobuf/wrappers.pb.h>

#include <asio/steady_timer.hpp>
#include <optional>

#include "envoy/extensions/filters/network/wasm/v3/wasm.pb.h"
#include "filters/istio/istio.h"
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

class TcpStatsFilter : public net::Filter {
 public:
  TcpStatsFilter(std::shared_ptr<const TcpStatsConfig> config, IstioMetrics& metrics)
      : config_(std::move(config)), metrics_(metrics) {}
  ~TcpStatsFilter() override {
    if (state_) state_->timer.cancel();
  }
  void setCallbacks(net::FilterCallbacks& callbacks) override { callbacks_ = &callbacks; }
  net::FilterStatus onDownstreamData(std::string&, bool) override {
    open();
    return net::FilterStatus::kContinue;
  }
  net::FilterStatus onUpstreamData(std::string&, bool) override {
    open();
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

  // The first bytes (or the close) fix the labels and count the connection as opened, as Istio does once
  // it knows the peer (here: never better than at the first bytes).
  void open() {
    if (series_ != nullptr || callbacks_ == nullptr) return;
    const http::StreamInfo& info = callbacks_->streamInfo();
    RequestFacts f;
    f.reporter = config_->fixed_reporter ? config_->stats.reporter : connectionReporter(info);
    f.local = &localNode().workload;
    if (info.connection && info.connection->tls) {
      const auto& tls = *info.connection->tls;
      if (!tls.uri_san_peer.empty()) f.peer_principal = tls.uri_san_peer[0];
      if (!tls.uri_san_local.empty()) f.local_principal = tls.uri_san_local[0];
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

  // Byte deltas since the last report.
  void report() {
    const http::StreamInfo& info = callbacks_->streamInfo();
    series_->counters[2].inc(info.bytes_sent - sent_);
    series_->counters[3].inc(info.bytes_received - received_);
    sent_ = info.bytes_sent;
    received_ = info.bytes_received;
  }

  std::shared_ptr<const TcpStatsConfig> config_;
  IstioMetrics& metrics_;
  net::FilterCallbacks* callbacks_ = nullptr;
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
