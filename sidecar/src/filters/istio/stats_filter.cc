// istio.stats for HTTP: Istio's standard request metrics, recorded once per stream when it ends.
#include <charconv>
#include <mutex>
#include <unordered_map>

#include "filters/istio/istio.h"
#include "skiff/tls/transport.h"

namespace skiff::filters::istio {
namespace {

std::vector<stats::LabelledMetrics::Metric> httpMetrics() {
  using M = stats::LabelledMetrics::Metric;
  return {M{"istio_requests_total", stats::StatType::kCounter},
          M{"istio_request_duration_milliseconds", stats::StatType::kHistogram,
            stats::Histogram::Unit::kMilliseconds},
          M{"istio_request_bytes", stats::StatType::kHistogram, stats::Histogram::Unit::kBytes},
          M{"istio_response_bytes", stats::StatType::kHistogram, stats::Histogram::Unit::kBytes}};
}

std::vector<stats::LabelledMetrics::Metric> tcpMetrics() {
  using M = stats::LabelledMetrics::Metric;
  return {M{"istio_tcp_connections_opened_total", stats::StatType::kCounter},
          M{"istio_tcp_connections_closed_total", stats::StatType::kCounter},
          M{"istio_tcp_sent_bytes_total", stats::StatType::kCounter},
          M{"istio_tcp_received_bytes_total", stats::StatType::kCounter}};
}

std::vector<std::string> labelList(bool tcp) {
  std::vector<std::string> out;
  for (size_t i = 0; i < kLabelCount; ++i) {
    if (tcp && (i == kResponseCode || i == kGrpcResponseStatus)) continue;
    out.emplace_back(labelNames()[i]);
  }
  return out;
}

// Short response flags per flag set, made once per worker.
std::string_view flagsString(uint32_t flags) {
  if (flags == 0) return "-";
  thread_local std::unordered_map<uint32_t, std::string> cache;
  auto it = cache.find(flags);
  if (it == cache.end()) {
    if (cache.size() > 256) cache.clear();
    it = cache.emplace(flags, http::responseFlagsShort(flags)).first;
  }
  return it->second;
}

class StatsFilter : public http::StreamFilter {
 public:
  explicit StatsFilter(const StatsRecorder& recorder) : recorder_(recorder) {}
  void setDecoderFilterCallbacks(http::DecoderFilterCallbacks& cb) override { callbacks_ = &cb; }
  void setEncoderFilterCallbacks(http::EncoderFilterCallbacks&) override {}
  http::HeadersStatus decodeHeaders(http::HeaderMap& headers, bool) override {
    const std::string* ct = headers.get(http::headers::kContentType);
    grpc_ = ct != nullptr && ct->starts_with("application/grpc");
    return http::HeadersStatus::kContinue;
  }
  http::HeadersStatus encodeHeaders(http::HeaderMap&, bool) override {
    return http::HeadersStatus::kContinue;
  }
  void onDestroy() override {
    if (callbacks_ == nullptr || done_) return;
    done_ = true;
    const http::StreamInfo& info = callbacks_->streamInfo();
    recorder_.recordHttp(info, streamPeer(info), grpc_);
  }

 private:
  const StatsRecorder& recorder_;
  http::DecoderFilterCallbacks* callbacks_ = nullptr;
  bool grpc_ = false;
  bool done_ = false;
};

class StatsFilterFactory : public http::FilterFactory {
 public:
  StatsFilterFactory(StatsConfig config, stats::Store& store) : recorder_(std::move(config), store) {}
  void createFilters(http::FilterChainBuilder& builder) const override {
    builder.addStreamFilter(std::make_unique<StatsFilter>(recorder_));
  }
  bool wantsBody() const override { return false; }

 private:
  StatsRecorder recorder_;
};

}  // namespace

IstioMetrics::IstioMetrics(stats::Store& store)
    : http(store, "istiocustom", httpMetrics(), labelList(false)),
      tcp(store, "istiocustom", tcpMetrics(), labelList(true)) {}

IstioMetrics& IstioMetrics::forStore(stats::Store& store) {
  static std::mutex mu;
  // By handle id, which a store never shares with an earlier one (addresses can be reused).
  static auto* all = new std::unordered_map<uint32_t, std::unique_ptr<IstioMetrics>>();
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = (*all)[store.handleId()];
  if (!slot) slot = std::make_unique<IstioMetrics>(store);
  return *slot;
}

void setStreamPeer(http::StreamInfo& info, WorkloadInfoConstSharedPtr peer) {
  info.istio_peer = std::move(peer);
}

const WorkloadInfo* streamPeer(const http::StreamInfo& info) {
  // Only setStreamPeer writes istio_peer, always with a WorkloadInfo.
  return static_cast<const WorkloadInfo*>(info.istio_peer.get());
}

StatsRecorder::StatsRecorder(StatsConfig config, stats::Store& store)
    : config_(std::move(config)), metrics_(IstioMetrics::forStore(store)) {}

void StatsRecorder::resolve(const MetricOverride& o, const WorkloadInfo* peer, std::string_view host,
                            LabelValues& v) const {
  for (const auto& [label, source] : o.dimensions) {
    using K = ValueSource::Kind;
    // downstream_peer is the inbound peer, upstream_peer the outbound one.
    const bool matches = source.upstream_peer == (config_.reporter == Reporter::kSource);
    const WorkloadInfo* p = matches ? peer : nullptr;
    std::string_view value;
    switch (source.kind) {
      case K::kLiteral:
        value = source.literal;
        break;
      case K::kHost:
        value = host;
        break;
      case K::kPeerClusterId:
        value = p ? std::string_view(p->cluster_id) : std::string_view();
        break;
      case K::kPeerNamespace:
        value = p ? std::string_view(p->namespace_name) : std::string_view();
        break;
      case K::kPeerWorkload:
        value = p ? std::string_view(p->workload_name) : std::string_view();
        break;
      case K::kPeerApp:
        value = p ? std::string_view(p->app) : std::string_view();
        break;
      case K::kPeerVersion:
        value = p ? std::string_view(p->version) : std::string_view();
        break;
    }
    v[label] = value.empty() ? std::string_view("unknown") : value;
  }
  for (size_t label : o.remove) v[label] = {};
}

void StatsRecorder::recordHttp(const http::StreamInfo& info, const WorkloadInfo* peer, bool grpc) const {
  RequestFacts f;
  f.reporter = config_.reporter;
  f.local = &localNode().workload;
  f.peer = peer;
  // Principals: the server side's from the downstream handshake, the client side's from the upstream one.
  const tls::TlsConnectionInfo* tls = config_.reporter == Reporter::kSource ? info.upstream_tls.get()
                                      : info.connection                     ? info.connection->tls.get()
                                                                            : nullptr;
  if (tls) {
    if (!tls->uri_san_peer.empty()) f.peer_principal = tls->uri_san_peer[0];
    if (!tls->uri_san_local.empty()) f.local_principal = tls->uri_san_local[0];
  }
  std::string_view host;
  if (info.request_headers != nullptr) {
    host = info.request_headers->getOr(http::headers::kAuthority);
    if (host.empty()) host = info.request_headers->getOr(http::headers::kHost);
  }
  if (!config_.disable_host_header_fallback) f.host = host;
  f.cluster_name = info.upstream_cluster;
  f.route_name = info.route_name;
  f.protocol = grpc ? "grpc" : "http";
  char code[12];
  auto [end, ec] = std::to_chars(code, code + sizeof(code), info.response_code);
  f.response_code = std::string_view(code, ec == std::errc() ? end - code : 0);
  if (grpc) {
    const std::string* status = nullptr;
    if (info.response_trailers != nullptr) status = info.response_trailers->get("grpc-status");
    if (status == nullptr && info.response_headers != nullptr)
      status = info.response_headers->get("grpc-status");
    if (status != nullptr) f.grpc_response_status = *status;
  }
  f.response_flags = flagsString(info.response_flags);

  LabelValues values;
  buildLabels(f, values);

  const auto duration = info.last_downstream_tx ? *info.last_downstream_tx : info.elapsed();
  const auto ms =
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(duration).count());
  // Istio meters wire bytes; Skiff counts body bytes plus the header block's name and value bytes.
  const uint64_t request_bytes =
      info.bytes_received + (info.request_headers ? info.request_headers->byteSize() : 0);
  const uint64_t response_bytes =
      info.bytes_sent + (info.response_headers ? info.response_headers->byteSize() : 0);

  if (!config_.has_overrides) {
    const auto& s = metrics_.http.series(values);
    s.counters[0].inc();
    s.histograms[1].record(ms);
    s.histograms[2].record(request_bytes);
    s.histograms[3].record(response_bytes);
    return;
  }
  for (size_t m = kRequestsTotal; m <= kResponseBytes; ++m) {
    const MetricOverride& o = config_.overrides[m];
    if (o.drop) continue;
    LabelValues v = values;
    resolve(o, peer, host, v);
    const auto& s = metrics_.http.series(v, 1u << m);  // this metric only: the others may differ
    switch (m) {
      case kRequestsTotal:
        s.counters[0].inc();
        break;
      case kRequestDuration:
        s.histograms[1].record(ms);
        break;
      case kRequestBytes:
        s.histograms[2].record(request_bytes);
        break;
      default:
        s.histograms[3].record(response_bytes);
    }
  }
}

http::FilterFactorySharedPtr makeStatsFilterFactory(StatsConfig config, stats::Store& store) {
  return std::make_shared<StatsFilterFactory>(std::move(config), store);
}

}  // namespace skiff::filters::istio
