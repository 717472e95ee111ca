// Istio's telemetry extensions built into Skiff: istio.stats (HTTP), istio.metadata_exchange (HTTP) and
// the Wasm null-VM forms naming them (envoy.wasm.stats, envoy.wasm.metadata_exchange). See README.md.
#pragma once

#include <array>
#include <memory>
#include <string_view>

#include "filters/istio/stats_config.h"
#include "skiff/config/typed_struct.h"
#include "skiff/http/filter.h"
#include "skiff/http/stream_info.h"
#include "skiff/stats/labelled.h"

namespace skiff::filters::istio {

// Registers istio.stats, istio.metadata_exchange, and wraps the Wasm filter's registration so null-VM
// configs naming Istio's built-ins map to them (anything else still goes to the Wasm filter). Call after
// the Wasm filter is registered. Also registers the network (TCP) istio.stats the same way.
void registerIstioFilters();
void registerIstioNetworkFilters();
// The network istio.metadata_exchange (Istio's TCP exchange, tcp_exchange.h); part of the above.
void registerIstioTcpExchange();

// The process-wide metric families of one store: Istio's HTTP metrics (25 labels) and TCP metrics (the
// same minus response_code and grpc_response_status).
struct IstioMetrics {
  stats::LabelledMetrics http;
  stats::LabelledMetrics tcp;
  explicit IstioMetrics(stats::Store& store);
  static IstioMetrics& forStore(stats::Store& store);
};

// Per-stream hand-off from istio.metadata_exchange to istio.stats, kept in the stream's StreamInfo (so
// concurrent streams never share or lose it).
void setStreamPeer(http::StreamInfo& info, WorkloadInfoConstSharedPtr peer);
const WorkloadInfo* streamPeer(const http::StreamInfo& info);  // null: no peer; valid while `info` is

// Records one finished HTTP stream (what istio.stats does at stream end); exposed for tests and benches.
class StatsRecorder {
 public:
  StatsRecorder(StatsConfig config, stats::Store& store);
  void recordHttp(const http::StreamInfo& info, const WorkloadInfo* peer, bool grpc) const;
  const StatsConfig& config() const { return config_; }

 private:
  void resolve(const MetricOverride& o, const WorkloadInfo* peer, std::string_view host,
               LabelValues& v) const;
  StatsConfig config_;
  IstioMetrics& metrics_;
};

// istiod 1.10 wraps its Wasm filters in a TypedStruct over xDS; the HCM and these filters unwrap it.
using config::unwrapTypedStruct;

http::FilterFactorySharedPtr makeStatsFilterFactory(StatsConfig config, stats::Store& store);
http::FilterFactorySharedPtr makeMetadataExchangeFactory(Reporter direction);

}  // namespace skiff::filters::istio
