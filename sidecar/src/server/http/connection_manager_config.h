// The immutable configuration of one http_connection_manager: routes, filters, stats, access logs, limits.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "server/xds/route_config_provider.h"
#include "skiff/accesslog/access_log.h"
#include "skiff/filters/http_filter_registry.h"
#include "skiff/http/http1_parser.h"
#include "skiff/http/http2_codec.h"
#include "skiff/router/route_table.h"
#include "skiff/stats/stats.h"
#include "skiff/tls/xfcc.h"

namespace skiff::server {

// http.<stat_prefix>.* (Envoy's HTTP connection manager statistics).
struct HcmStats {
  HcmStats(stats::Store& store, const std::string& prefix);
  stats::Counter downstream_cx_total, downstream_cx_http1_total, downstream_cx_destroy,
      downstream_cx_destroy_remote, downstream_cx_destroy_local, downstream_cx_destroy_active_rq,
      downstream_cx_destroy_local_active_rq, downstream_cx_destroy_remote_active_rq,
      downstream_cx_protocol_error, downstream_cx_rx_bytes_total, downstream_cx_tx_bytes_total,
      downstream_cx_drain_close, downstream_cx_idle_timeout, downstream_cx_max_requests_reached,
      downstream_rq_total, downstream_rq_http1_total, downstream_rq_completed, downstream_rq_1xx,
      downstream_rq_2xx, downstream_rq_3xx, downstream_rq_4xx, downstream_rq_5xx, downstream_rq_rx_reset,
      downstream_rq_tx_reset, downstream_rq_too_large, downstream_rq_timeout, downstream_rq_idle_timeout,
      downstream_rq_non_relative_path, downstream_rq_response_before_rq_complete,
      downstream_rq_header_timeout, downstream_flow_control_paused_reading_total,
      downstream_flow_control_resumed_reading_total, rs_too_large;
  stats::Counter downstream_cx_http2_total, downstream_rq_http2_total;  // HTTP/2 (http2_server_connection)
  stats::Counter downstream_rq_max_duration_reached, downstream_cx_max_duration_reached;
  stats::Gauge downstream_cx_http2_active;
  stats::Gauge downstream_cx_active, downstream_cx_http1_active, downstream_rq_active;
  stats::Histogram downstream_cx_length_ms, downstream_rq_time;
  void chargeResponseCode(uint32_t code) const;
};

struct AccessLogConfig {
  std::shared_ptr<const accesslog::Formatter> formatter;
  std::shared_ptr<accesslog::LogFile> file;
  accesslog::AccessLogFilterConstSharedPtr filter;
};

// Turns an Envoy AccessLog list into configs; throws std::invalid_argument naming `path`.
std::vector<AccessLogConfig> buildAccessLogs(
    const google::protobuf::RepeatedPtrField<envoy::config::accesslog::v3::AccessLog>& logs,
    const std::string& path);

// One access log instance per worker (sinks buffer per worker and are never shared).
class WorkerAccessLogs {
 public:
  WorkerAccessLogs(const std::vector<AccessLogConfig>& configs, uint32_t workers);
  void log(uint32_t worker, const http::StreamInfo& info);
  void flush(uint32_t worker);
  bool empty() const { return per_worker_.empty() || per_worker_[0].empty(); }

 private:
  std::vector<std::vector<std::unique_ptr<accesslog::AccessLog>>> per_worker_;
};

struct ConnectionManagerConfig {
  using Proto = envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
  enum class ServerHeader { kOverwrite, kAppendIfAbsent, kPassThrough };

  // Validates and builds; throws std::invalid_argument with the field path on a bad config.
  ConnectionManagerConfig(const Proto& proto, const std::string& path, stats::Store& store, uint32_t workers,
                          uint32_t buffer_limit);

  std::string stat_prefix;
  HcmStats stats;
  std::shared_ptr<const router::RouteTable> route_table;  // route_config (static)
  RouteConfigProviderSharedPtr rds;                       // rds: the table comes from RDS
  // The table a new stream on worker `worker` routes with (nullptr before the first RDS config).
  std::shared_ptr<const router::RouteTable> routeTable(uint32_t worker) const {
    return rds ? rds->current(worker) : route_table;
  }
  std::vector<http::FilterFactorySharedPtr> filter_factories;
  std::unique_ptr<WorkerAccessLogs> access_logs;

  // forward_client_cert_details / set_current_client_cert_details (set by buildFilterChain).
  tls::XfccConfig xfcc;

  std::string server_name = "skiff";
  ServerHeader server_header = ServerHeader::kOverwrite;
  bool use_remote_address = false;
  uint32_t xff_num_trusted_hops = 0;
  bool skip_xff_append = false;
  bool generate_request_id = true;
  bool preserve_external_request_id = false;
  bool always_set_request_id_in_response = false;
  bool proxy_100_continue = false;
  bool accept_http_10 = false;           // http_protocol_options.accept_http_10
  std::string default_host_for_http_10;  // http_protocol_options.default_host_for_http_10

  std::chrono::milliseconds idle_timeout{3600 * 1000};        // connection without streams
  std::chrono::milliseconds stream_idle_timeout{300 * 1000};  // no activity on a stream
  std::chrono::milliseconds request_timeout{0};               // whole request must arrive within
  std::chrono::milliseconds request_headers_timeout{0};
  std::chrono::milliseconds drain_timeout{5000};
  std::chrono::milliseconds max_connection_duration{0};
  std::chrono::milliseconds max_stream_duration{0};  // common_http_protocol_options (a route may override)
  uint32_t max_requests_per_connection = 0;
  http1::Limits limits;
  uint32_t buffer_limit;
  // codec_type and http2_protocol_options (see server/http/http_codec_selection.h).
  enum class CodecType { kAuto, kHttp1, kHttp2 };
  CodecType codec_type = CodecType::kAuto;
  http2::Settings http2_settings;
  std::shared_ptr<const http2::Http2Stats> http2_stats;  // http2.* (root scope, as Envoy's downstream)
};

using ConnectionManagerConfigSharedPtr = std::shared_ptr<const ConnectionManagerConfig>;

}  // namespace skiff::server
