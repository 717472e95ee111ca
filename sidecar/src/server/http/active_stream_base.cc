// ActiveStreamBase: the stream logic shared by the HTTP/1 and HTTP/2 downstream connections.
#include "server/http/active_stream_base.h"

#include <cstdlib>

#include "server/http/forwarding_headers.h"
#include "skiff/router/route_table.h"
#include "skiff/tls/xfcc.h"

namespace skiff::server {

ActiveStreamBase::ActiveStreamBase(WorkerContext& worker, const ConnectionManagerConfig& config,
                                   FilterManagerSink& sink, uint64_t id)
    : worker_(worker), config_(config), id_(id), fm_(*this, sink, config.buffer_limit) {}

const router::RouteEntry* ActiveStreamBase::route() {
  if (!route_cached_) {
    route_cached_ = true;
    // The stream keeps the table it first routed with (RDS may publish a new one meanwhile).
    if (!route_table_) route_table_ = config_.routeTable(worker_.index);
    if (fm_.requestHeaders() != nullptr && route_table_) {
      // One value per stream (its id, as Envoy uses the stream id) for every match, so a runtime_fraction
      // does not re-roll when the route cache is cleared.
      route_ = route_table_->route(*fm_.requestHeaders(), id_);
      // Envoy takes the timeouts when a route is resolved and keeps them while the cache is cleared or the
      // next route sets none.
      if (route_ != nullptr) {
        if (route_->idle_timeout) route_idle_timeout_ = route_->idle_timeout;
        if (route_->max_stream_duration) route_max_stream_duration_ = route_->max_stream_duration;
      }
    }
  }
  return route_;
}

void ActiveStreamBase::sendLocalReply(uint32_t status, std::string_view body, std::string_view details,
                                      const std::function<void(http::HeaderMap&)>& modify) {
  info_.response_code_details = std::string(details);
  if (fm_.responseStarted()) {
    // Too late for a new response: the client sees the stream (HTTP/1: the connection) end.
    resetStream();
    return;
  }
  auto headers = std::make_unique<http::HeaderMap>();
  headers->add(http::headers::kStatus, std::to_string(status));
  if (!body.empty()) {
    headers->add(http::headers::kContentLength, std::to_string(body.size()));
    headers->add(http::headers::kContentType, "text/plain");
  }
  if (modify) modify(*headers);
  const bool has_body = !body.empty() && !head_request_;
  fm_.encodeHeaders(std::move(headers), !has_body);
  if (has_body) {
    http::Buffer data(body);
    fm_.encodeData(data, true);
  }
}

void ActiveStreamBase::sendTimeoutReply(std::string_view body, std::string_view details) {
  const http::HeaderMap* request = fm_.requestHeaders();
  if (request != nullptr && request->getOr(http::headers::kContentType).rfind("application/grpc", 0) == 0 &&
      !fm_.responseStarted()) {
    sendLocalReply(200, {}, details, [body](http::HeaderMap& h) {
      h.set(http::headers::kContentType, "application/grpc");
      h.set("grpc-status", "2");  // UNKNOWN: Envoy's mapping of 408
      h.set("grpc-message", body);
    });
    return;
  }
  sendLocalReply(408, body, details, nullptr);
}

void ActiveStreamBase::begin(const StreamOrigin& origin, std::string_view protocol,
                             http::HeaderMap& headers) {
  info_.connection_id = origin.connection_id;
  info_.connection = origin.info;
  info_.requested_server_name = origin.info->server_name;  // SNI (tls_inspector or TLS termination)
  info_.downstream_local_address = origin.local_address;
  info_.downstream_direct_remote_address = origin.remote_address;
  info_.protocol = protocol;
  info_.downstream_remote_address = applyForwardingHeaders(
      headers, config_, origin.info->remote, origin.remote_address, origin.info->tls != nullptr);
  // A plaintext client cannot spoof x-forwarded-client-cert.
  tls::mutateXfcc(headers, origin.info->tls.get(), config_.xfcc);
  info_.request_headers = &headers;
  for (const auto& factory : config_.filter_factories) factory->createFilters(fm_);
}

uint32_t ActiveStreamBase::decorateResponseHeaders(http::HeaderMap& headers) {
  const std::string* status_text = headers.get(http::headers::kStatus);
  const uint32_t status = status_text ? static_cast<uint32_t>(std::atoi(status_text->c_str())) : 500;
  info_.response_code = status;
  switch (config_.server_header) {
    case ConnectionManagerConfig::ServerHeader::kOverwrite:
      headers.set(http::headers::kServer, config_.server_name);
      break;
    case ConnectionManagerConfig::ServerHeader::kAppendIfAbsent:
      headers.setIfAbsent(http::headers::kServer, config_.server_name);
      break;
    case ConnectionManagerConfig::ServerHeader::kPassThrough:
      break;
  }
  if (config_.always_set_request_id_in_response && fm_.requestHeaders() != nullptr) {
    if (const std::string* id = fm_.requestHeaders()->get(http::headers::kRequestId)) {
      headers.set(http::headers::kRequestId, *id);
    }
  }
  return status;
}

std::chrono::milliseconds ActiveStreamBase::idleTimeout() const {
  return route_idle_timeout_ ? *route_idle_timeout_ : config_.stream_idle_timeout;
}

std::chrono::milliseconds ActiveStreamBase::maxStreamDuration() const {
  return route_max_stream_duration_ ? *route_max_stream_duration_ : config_.max_stream_duration;
}

void ActiveStreamBase::finish(bool completed) {
  const HcmStats& stats = config_.stats;
  stats.downstream_rq_active.dec();
  if (completed) {
    stats.downstream_rq_completed.inc();
    stats.chargeResponseCode(info_.response_code);
  }
  stats.downstream_rq_time.record(
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(info_.elapsed()).count()));
  fm_.destroyFilters();
  config_.access_logs->log(worker_.index, info_);
}

}  // namespace skiff::server
