// ConnectionManagerConfig: validates an HttpConnectionManager proto once and resolves everything a stream
// needs.
#include "server/http/connection_manager_config.h"

#include <google/protobuf/util/time_util.h>

#include <stdexcept>

#include "envoy/extensions/access_loggers/file/v3/file.pb.h"
#include "envoy/extensions/access_loggers/stream/v3/stream.pb.h"
#include "skiff/common/logging.h"
#include "skiff/config/data_source.h"
#include "skiff/config/typed_struct.h"

namespace skiff::server {

namespace {

using google::protobuf::util::TimeUtil;

std::chrono::milliseconds toMs(const google::protobuf::Duration& d) {
  return std::chrono::milliseconds(TimeUtil::DurationToMilliseconds(d));
}

// Text of a SubstitutionFormatString, or the JSON fields; empty `text` and `json` = Envoy's default format.
std::shared_ptr<const accesslog::Formatter> formatterFor(
    const envoy::config::core::v3::SubstitutionFormatString& fmt, const std::string& path) {
  std::string error;
  std::unique_ptr<accesslog::Formatter> formatter;
  if (fmt.has_json_format()) {
    std::vector<std::pair<std::string, std::string>> fields;
    for (const auto& [key, value] : fmt.json_format().fields())
      fields.emplace_back(key, value.string_value());
    formatter = accesslog::Formatter::parseJson(fields, &error);
  } else {
    std::string text = fmt.text_format();
    if (text.empty() && fmt.has_text_format_source()) {
      text = skiff::config::readDataSource(fmt.text_format_source(), path + ".text_format_source");
    }
    if (text.empty()) text = std::string(accesslog::Formatter::defaultFormat());
    formatter = accesslog::Formatter::parse(text, &error);
  }
  if (!formatter) throw std::invalid_argument(path + ": " + error);
  return formatter;
}

}  // namespace

HcmStats::HcmStats(stats::Store& store, const std::string& p)
    : downstream_cx_total(store.counter(p + "downstream_cx_total")),
      downstream_cx_http1_total(store.counter(p + "downstream_cx_http1_total")),
      downstream_cx_destroy(store.counter(p + "downstream_cx_destroy")),
      downstream_cx_destroy_remote(store.counter(p + "downstream_cx_destroy_remote")),
      downstream_cx_destroy_local(store.counter(p + "downstream_cx_destroy_local")),
      downstream_cx_destroy_active_rq(store.counter(p + "downstream_cx_destroy_active_rq")),
      downstream_cx_destroy_local_active_rq(store.counter(p + "downstream_cx_destroy_local_active_rq")),
      downstream_cx_destroy_remote_active_rq(store.counter(p + "downstream_cx_destroy_remote_active_rq")),
      downstream_cx_protocol_error(store.counter(p + "downstream_cx_protocol_error")),
      downstream_cx_rx_bytes_total(store.counter(p + "downstream_cx_rx_bytes_total")),
      downstream_cx_tx_bytes_total(store.counter(p + "downstream_cx_tx_bytes_total")),
      downstream_cx_drain_close(store.counter(p + "downstream_cx_drain_close")),
      downstream_cx_idle_timeout(store.counter(p + "downstream_cx_idle_timeout")),
      downstream_cx_max_requests_reached(store.counter(p + "downstream_cx_max_requests_reached")),
      downstream_rq_total(store.counter(p + "downstream_rq_total")),
      downstream_rq_http1_total(store.counter(p + "downstream_rq_http1_total")),
      downstream_rq_completed(store.counter(p + "downstream_rq_completed")),
      downstream_rq_1xx(store.counter(p + "downstream_rq_1xx")),
      downstream_rq_2xx(store.counter(p + "downstream_rq_2xx")),
      downstream_rq_3xx(store.counter(p + "downstream_rq_3xx")),
      downstream_rq_4xx(store.counter(p + "downstream_rq_4xx")),
      downstream_rq_5xx(store.counter(p + "downstream_rq_5xx")),
      downstream_rq_rx_reset(store.counter(p + "downstream_rq_rx_reset")),
      downstream_rq_tx_reset(store.counter(p + "downstream_rq_tx_reset")),
      downstream_rq_too_large(store.counter(p + "downstream_rq_too_large")),
      downstream_rq_timeout(store.counter(p + "downstream_rq_timeout")),
      downstream_rq_idle_timeout(store.counter(p + "downstream_rq_idle_timeout")),
      downstream_rq_non_relative_path(store.counter(p + "downstream_rq_non_relative_path")),
      downstream_rq_response_before_rq_complete(
          store.counter(p + "downstream_rq_response_before_rq_complete")),
      downstream_rq_header_timeout(store.counter(p + "downstream_rq_header_timeout")),
      downstream_flow_control_paused_reading_total(
          store.counter(p + "downstream_flow_control_paused_reading_total")),
      downstream_flow_control_resumed_reading_total(
          store.counter(p + "downstream_flow_control_resumed_reading_total")),
      rs_too_large(store.counter(p + "rs_too_large")),
      downstream_cx_http2_total(store.counter(p + "downstream_cx_http2_total")),
      downstream_rq_http2_total(store.counter(p + "downstream_rq_http2_total")),
      downstream_rq_max_duration_reached(store.counter(p + "downstream_rq_max_duration_reached")),
      downstream_cx_max_duration_reached(store.counter(p + "downstream_cx_max_duration_reached")),
      downstream_cx_http2_active(store.gauge(p + "downstream_cx_http2_active")),
      downstream_cx_active(store.gauge(p + "downstream_cx_active")),
      downstream_cx_http1_active(store.gauge(p + "downstream_cx_http1_active")),
      downstream_rq_active(store.gauge(p + "downstream_rq_active")),
      downstream_cx_length_ms(store.histogram(p + "downstream_cx_length_ms")),
      downstream_rq_time(store.histogram(p + "downstream_rq_time")) {}

void HcmStats::chargeResponseCode(uint32_t code) const {
  switch (code / 100) {
    case 1:
      downstream_rq_1xx.inc();
      break;
    case 2:
      downstream_rq_2xx.inc();
      break;
    case 3:
      downstream_rq_3xx.inc();
      break;
    case 4:
      downstream_rq_4xx.inc();
      break;
    case 5:
      downstream_rq_5xx.inc();
      break;
    default:
      break;
  }
}

std::vector<AccessLogConfig> buildAccessLogs(
    const google::protobuf::RepeatedPtrField<envoy::config::accesslog::v3::AccessLog>& logs,
    const std::string& path) {
  std::vector<AccessLogConfig> out;
  for (int i = 0; i < logs.size(); ++i) {
    const auto& log = logs[i];
    const std::string log_path = path + "[" + std::to_string(i) + "]";
    const auto& any = log.typed_config();
    AccessLogConfig config;
    std::string error;
    if (any.Is<envoy::extensions::access_loggers::file::v3::FileAccessLog>()) {
      envoy::extensions::access_loggers::file::v3::FileAccessLog file;
      any.UnpackTo(&file);
      if (file.path().empty()) throw std::invalid_argument(log_path + ".typed_config.path: must be set");
      config.file = accesslog::LogFile::open(file.path(), &error);
      if (!config.file) throw std::invalid_argument(log_path + ".typed_config.path: " + error);
      if (file.has_log_format()) {
        config.formatter = formatterFor(file.log_format(), log_path + ".typed_config.log_format");
      } else if (file.has_json_format()) {
        envoy::config::core::v3::SubstitutionFormatString fmt;
        *fmt.mutable_json_format() = file.json_format();
        config.formatter = formatterFor(fmt, log_path + ".typed_config.json_format");
      } else {
        envoy::config::core::v3::SubstitutionFormatString fmt;
        fmt.set_text_format(file.format());
        config.formatter = formatterFor(fmt, log_path + ".typed_config.format");
      }
    } else if (any.Is<envoy::extensions::access_loggers::stream::v3::StdoutAccessLog>()) {
      envoy::extensions::access_loggers::stream::v3::StdoutAccessLog stdout_log;
      any.UnpackTo(&stdout_log);
      config.file = accesslog::LogFile::standardOutput();
      config.formatter = formatterFor(stdout_log.log_format(), log_path + ".typed_config.log_format");
    } else if (any.Is<envoy::extensions::access_loggers::stream::v3::StderrAccessLog>()) {
      envoy::extensions::access_loggers::stream::v3::StderrAccessLog stderr_log;
      any.UnpackTo(&stderr_log);
      config.file = accesslog::LogFile::standardError();
      config.formatter = formatterFor(stderr_log.log_format(), log_path + ".typed_config.log_format");
    } else {
      throw std::invalid_argument(log_path + ".typed_config: unsupported access logger '" + any.type_url() +
                                  "'");
    }
    if (log.has_filter()) {
      const auto& f = log.filter();
      if (f.has_status_code_filter()) {
        const auto& cmp = f.status_code_filter().comparison();
        config.filter = accesslog::statusCodeFilter(static_cast<accesslog::Comparison>(cmp.op()),
                                                    cmp.value().default_value());
      } else if (f.has_duration_filter()) {
        const auto& cmp = f.duration_filter().comparison();
        config.filter = accesslog::durationFilter(static_cast<accesslog::Comparison>(cmp.op()),
                                                  cmp.value().default_value());
      } else if (f.has_response_flag_filter()) {
        std::vector<std::string> flags(f.response_flag_filter().flags().begin(),
                                       f.response_flag_filter().flags().end());
        config.filter = accesslog::responseFlagFilter(flags, &error);
        if (!config.filter) throw std::invalid_argument(log_path + ".filter.response_flag_filter: " + error);
      } else {
        SKIFF_LOG(kConfig, warn,
                  "{}.filter: this access log filter kind is not supported; logging everything", log_path);
      }
    }
    out.push_back(std::move(config));
  }
  return out;
}

WorkerAccessLogs::WorkerAccessLogs(const std::vector<AccessLogConfig>& configs, uint32_t workers) {
  if (configs.empty()) return;
  per_worker_.resize(workers);
  for (auto& logs : per_worker_) {
    for (const auto& c : configs) {
      logs.push_back(
          std::make_unique<accesslog::AccessLog>(c.formatter, accesslog::makeSink(c.file), c.filter));
    }
  }
}

void WorkerAccessLogs::log(uint32_t worker, const http::StreamInfo& info) {
  if (worker >= per_worker_.size()) return;
  for (auto& l : per_worker_[worker]) l->log(info);
}

void WorkerAccessLogs::flush(uint32_t worker) {
  if (worker >= per_worker_.size()) return;
  for (auto& l : per_worker_[worker]) l->flush();
}

ConnectionManagerConfig::ConnectionManagerConfig(const Proto& proto, const std::string& path,
                                                 stats::Store& store, uint32_t workers,
                                                 uint32_t buffer_limit_bytes)
    : stat_prefix(proto.stat_prefix()),
      stats(store, "http." + proto.stat_prefix() + "."),
      buffer_limit(buffer_limit_bytes) {
  if (proto.stat_prefix().empty()) throw std::invalid_argument(path + ".stat_prefix: must be set");
  if (proto.codec_type() == Proto::HTTP3) {
    throw std::invalid_argument(path + ".codec_type: HTTP3 is not supported");
  }
  if (proto.codec_type() == Proto::HTTP1) codec_type = CodecType::kHttp1;
  if (proto.codec_type() == Proto::HTTP2) codec_type = CodecType::kHttp2;
  http2_stats = std::make_shared<const http2::Http2Stats>(store, "http2.");
  if (proto.has_http2_protocol_options())
    http2_settings = http2::Settings::fromProto(proto.http2_protocol_options());

  if (proto.has_route_config()) {
    try {
      route_table = router::RouteTable::create(proto.route_config());
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(path + ".route_config." + e.what());
    }
  } else if (proto.has_rds()) {
    rds = RouteConfigProviderManager::instance().getOrCreate(proto.rds(), proto.stat_prefix(), store, workers,
                                                             path + ".rds");
  } else {
    throw std::invalid_argument(path + ": one of route_config or rds must be set");
  }

  const filters::FactoryContext context{store, "http." + proto.stat_prefix() + "."};
  for (int i = 0; i < proto.http_filters_size(); ++i) {
    const auto& f = proto.http_filters(i);
    const std::string fpath = path + ".http_filters[" + std::to_string(i) + "]";
    if (f.disabled()) continue;
    // A TypedStruct (istiod wraps its Wasm filters so) stands for the type it names.
    google::protobuf::Any unwrapped;
    const google::protobuf::Any& typed_config =
        config::unwrapTypedStruct(f.typed_config(), &unwrapped) ? unwrapped : f.typed_config();
    const auto* reg = filters::findHttpFilter(
        typed_config.type_url().empty() ? std::string_view() : std::string_view(typed_config.type_url()),
        f.name());
    if (reg == nullptr) {
      if (f.is_optional()) {
        SKIFF_LOG(kConfig, warn, "{}: optional filter '{}' is not available; skipped", fpath, f.name());
        continue;
      }
      throw std::invalid_argument(
          fpath + ": unknown HTTP filter '" +
          (f.typed_config().type_url().empty() ? f.name() : config::wrappedTypeUrl(f.typed_config())) + "'");
    }
    if (reg->terminal && i + 1 != proto.http_filters_size()) {
      throw std::invalid_argument(fpath + ": terminal filter '" + reg->name +
                                  "' must be the last in the chain");
    }
    if (!reg->terminal && i + 1 == proto.http_filters_size()) {
      throw std::invalid_argument(fpath + ": the last HTTP filter must be a terminal filter (the router)");
    }
    try {
      filters::FactoryContext filter_context = context;
      filter_context.filter_name = f.name();
      filter_factories.push_back(reg->create(typed_config, filter_context));
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(fpath + ".typed_config: " + e.what());
    }
  }
  if (proto.http_filters_size() == 0) {
    // Envoy accepts an HCM without http_filters (the native-backend seed has none) and still routes;
    // the router is the only filter such a chain can mean.
    const auto* router = filters::findHttpFilter({}, "envoy.filters.http.router");
    if (router != nullptr) filter_factories.push_back(router->create(google::protobuf::Any(), context));
  }
  if (filter_factories.empty()) {
    throw std::invalid_argument(
        path + ".http_filters: the chain needs a terminal filter (envoy.filters.http.router)");
  }

  access_logs =
      std::make_unique<WorkerAccessLogs>(buildAccessLogs(proto.access_log(), path + ".access_log"), workers);

  if (!proto.server_name().empty()) server_name = proto.server_name();
  server_header = static_cast<ServerHeader>(proto.server_header_transformation());
  use_remote_address = proto.has_use_remote_address() && proto.use_remote_address().value();
  xff_num_trusted_hops = proto.xff_num_trusted_hops();
  skip_xff_append = proto.skip_xff_append();
  generate_request_id = !proto.has_generate_request_id() || proto.generate_request_id().value();
  preserve_external_request_id = proto.preserve_external_request_id();
  always_set_request_id_in_response = proto.always_set_request_id_in_response();
  proxy_100_continue = proto.proxy_100_continue();
  accept_http_10 = proto.http_protocol_options().accept_http_10();
  default_host_for_http_10 = proto.http_protocol_options().default_host_for_http_10();

  if (proto.has_common_http_protocol_options()) {
    const auto& o = proto.common_http_protocol_options();
    if (o.has_idle_timeout()) idle_timeout = toMs(o.idle_timeout());
    if (o.has_max_connection_duration()) max_connection_duration = toMs(o.max_connection_duration());
    if (o.has_max_stream_duration()) max_stream_duration = toMs(o.max_stream_duration());
    if (o.has_max_headers_count()) limits.max_headers = o.max_headers_count().value();
    if (o.has_max_requests_per_connection())
      max_requests_per_connection = o.max_requests_per_connection().value();
  }
  if (proto.has_max_request_headers_kb()) {
    limits.max_header_bytes = proto.max_request_headers_kb().value() * 1024;
    http2_settings.max_header_list_size = limits.max_header_bytes;
  }
  http2_settings.max_headers_count = limits.max_headers;
  if (proto.has_stream_idle_timeout()) stream_idle_timeout = toMs(proto.stream_idle_timeout());
  if (proto.has_request_timeout()) request_timeout = toMs(proto.request_timeout());
  if (proto.has_request_headers_timeout()) request_headers_timeout = toMs(proto.request_headers_timeout());
  if (proto.has_drain_timeout()) drain_timeout = toMs(proto.drain_timeout());
}

}  // namespace skiff::server
