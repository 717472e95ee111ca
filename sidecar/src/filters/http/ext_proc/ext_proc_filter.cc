// ExtProcFilter: the per-stream ext_proc state machine (messages out, replies applied, pause and resume).
#include "filters/http/ext_proc/ext_proc_filter.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <asio/io_context.hpp>

#include "envoy/extensions/filters/http/ext_proc/v3/ext_proc.pb.h"
#include "envoy/service/ext_proc/v3/external_processor.pb.h"
#include "filters/http/ext_proc/metadata_matcher.h"
#include "skiff/common/logging.h"
#include "skiff/router/route_table.h"

namespace skiff::filters::ext_proc {

namespace pb = envoy::service::ext_proc::v3;
using http::DataStatus;
using http::HeadersStatus;
using http::TrailersStatus;

namespace {

void toProto(const http::HeaderMap& headers, const ExtProcConfig& config,
             envoy::config::core::v3::HeaderMap* out) {
  const bool filtered = !config.allowed_headers.empty() || !config.disallowed_headers.empty();
  for (const auto& [name, value] : headers) {
    if (filtered && name[0] != ':') {
      if (!config.allowed_headers.empty() && !config.allowed_headers.matches(name)) continue;
      if (config.disallowed_headers.matches(name)) continue;
    }
    auto* h = out->add_headers();
    h->set_key(name);
    h->set_raw_value(value);
  }
}

bool validStatus(std::string_view v) {
  if (v.size() != 3) return false;
  for (char c : v) {
    if (c < '0' || c > '9') return false;
  }
  return v[0] >= '1' && v[0] <= '5';
}

}  // namespace

ExtProcFilter::ExtProcFilter(std::shared_ptr<const ExtProcConfig> config) : config_(std::move(config)) {
  const Mode& m = config_->mode;
  request_.request = true;
  request_.send_headers = m.request_headers;
  request_.body = m.request_body;
  request_.send_trailers = m.request_trailers;
  response_.request = false;
  response_.send_headers = m.response_headers;
  response_.body = m.response_body;
  response_.send_trailers = m.response_trailers;
}

ExtProcFilter::~ExtProcFilter() {
  closeStream();
}

void ExtProcFilter::onDestroy() {
  destroyed_ = true;
  if (timer_) timer_->cancel();
  closeStream();
}

void ExtProcFilter::closeStream() {
  resumeDuplexReading();
  if (stream_) {
    if (!stream_closed_) config_->stats.streams_closed.inc();
    stream_->cancel();
    stream_.reset();
  }
  stream_closed_ = true;
}

http::HeaderMap* ExtProcFilter::headersOf(bool request) {
  return request ? &decoder_->requestHeaders() : &encoder_->responseHeaders();
}

http::Buffer* ExtProcFilter::bufferOf(bool request) {
  return request ? decoder_->decodingBuffer() : encoder_->encodingBuffer();
}

// ---- per-route config ----

HeadersStatus ExtProcFilter::decodeHeaders(http::HeaderMap& headers, bool end_stream) {
  bool disabled = false;
  const google::protobuf::Any* any =
      ext::perRouteConfig(decoder_->route(), config_->filter_name, kFilterName, kPerRouteTypeUrl, &disabled);
  if (disabled) disabled_ = true;
  if (any != nullptr) {
    envoy::extensions::filters::http::ext_proc::v3::ExtProcPerRoute per_route;
    if (any->UnpackTo(&per_route)) {
      if (per_route.disabled()) {
        disabled_ = true;
      } else if (per_route.has_overrides()) {
        const auto& o = per_route.overrides();
        try {
          if (o.has_processing_mode()) applyModeOverride(Mode::fromProto(o.processing_mode(), "overrides"));
          if (o.has_grpc_service()) {
            service_override_ = grpc::ServiceConfig::fromProto(o.grpc_service(), "overrides.grpc_service");
          }
          if (o.has_metadata_options()) metadata_override_ = MetadataOptions::fromProto(o.metadata_options());
        } catch (const std::invalid_argument& e) {
          SKIFF_LOG(kHttp, debug, "ext_proc: ignoring per-route overrides: {}", e.what());
        }
        if (!o.grpc_initial_metadata().empty()) {
          if (!service_override_) service_override_ = config_->service;
          for (const auto& h : o.grpc_initial_metadata()) {
            service_override_->initial_metadata.emplace_back(h.key(),
                                                             ext::headerValue(h.value(), h.raw_value()));
          }
        }
      }
    }
  }
  if (disabled_) {
    request_.done = response_.done = true;
    return HeadersStatus::kContinue;
  }
  return onHeaders(request_, headers, end_stream);
}

DataStatus ExtProcFilter::decodeData(http::Buffer& data, bool end_stream) {
  return onData(request_, data, end_stream);
}

TrailersStatus ExtProcFilter::decodeTrailers(http::HeaderMap& trailers) {
  return onTrailers(request_, trailers);
}

HeadersStatus ExtProcFilter::encodeHeaders(http::HeaderMap& headers, bool end_stream) {
  if (local_reply_ || disabled_) return HeadersStatus::kContinue;
  return onHeaders(response_, headers, end_stream);
}

DataStatus ExtProcFilter::encodeData(http::Buffer& data, bool end_stream) {
  if (local_reply_) return DataStatus::kContinue;
  return onData(response_, data, end_stream);
}

TrailersStatus ExtProcFilter::encodeTrailers(http::HeaderMap& trailers) {
  if (local_reply_) return TrailersStatus::kContinue;
  return onTrailers(response_, trailers);
}

// ---- the direction state machine ----

HeadersStatus ExtProcFilter::onHeaders(Direction& d, http::HeaderMap& headers, bool end_stream) {
  d.started = true;
  d.end_seen = end_stream;
  d.body_expected = !end_stream;
  if (d.done || stream_closed_) {
    d.released = true;
    return HeadersStatus::kContinue;
  }
  // Chunk-by-chunk body changes make the original length meaningless (Envoy drops it too).
  if (d.body_expected &&
      (d.body == BodyMode::kStreamed || d.body == BodyMode::kBufferedPartial ||
       d.body == BodyMode::kFullDuplexStreamed || (d.body == BodyMode::kBuffered && !d.send_headers))) {
    if (headers.remove(http::headers::kContentLength) > 0 && d.request) {
      headers.set(http::headers::kTransferEncoding, "chunked");
    }
  }
  if (!d.send_headers) {
    d.released = true;
    return HeadersStatus::kContinue;
  }
  pb::ProcessingRequest req;
  auto* h = d.request ? req.mutable_request_headers() : req.mutable_response_headers();
  toProto(headers, *config_, h->mutable_headers());
  h->set_end_of_stream(end_stream);
  addAttributes(req, d.request);
  if (!send(req)) {
    if (send_failed_ && !config_->failure_mode_allow) {
      // No stream to the processor (unknown cluster, no host): its failure arrives from the event loop,
      // and fail-closed means nothing goes upstream meanwhile. The message timeout bounds the wait.
      d.headers_pending = true;
      d.stopped = true;
      armTimer(config_->message_timeout);
      return HeadersStatus::kStop;
    }
    d.released = true;
    return HeadersStatus::kContinue;
  }
  d.headers_pending = true;
  d.stopped = true;
  return HeadersStatus::kStop;
}

DataStatus ExtProcFilter::onData(Direction& d, http::Buffer& data, bool end_stream) {
  if (end_stream) d.end_seen = true;
  if (d.done || stream_closed_ || local_reply_)
    return d.stopped ? DataStatus::kStopAndBuffer : DataStatus::kContinue;
  switch (d.body) {
    case BodyMode::kNone:
      return d.stopped ? DataStatus::kStopAndBuffer : DataStatus::kContinue;
    case BodyMode::kFullDuplexStreamed:
      return onDuplexData(d, data, end_stream);
    case BodyMode::kStreamed: {
      // Back-pressure (Envoy's): once more than the buffer limit is held awaiting replies, the filter
      // manager pauses the peer that sends this body until the processor catches up and the held chunks
      // go on: the request side stops reading the downstream, the response side makes the router stop
      // reading the upstream. Below the limit a watermarking hold is plain buffering.
      const DataStatus hold = DataStatus::kStopAndWatermark;
      if (d.headers_pending) {
        d.unsent_bytes += data.size();
        d.unsent_end = d.unsent_end || end_stream;
        return hold;
      }
      if (!sendBody(d, data, end_stream))
        return d.stopped ? DataStatus::kStopAndBuffer : DataStatus::kContinue;
      d.chunk_sizes.push_back(data.size());
      d.stopped = true;
      return hold;
    }
    case BodyMode::kBuffered:
    case BodyMode::kBufferedPartial: {
      if (d.partial_over) return d.stopped ? DataStatus::kStopAndBuffer : DataStatus::kContinue;
      d.stopped = true;
      if (d.headers_pending || d.body_sent) return DataStatus::kStopAndBuffer;
      const http::Buffer* held = bufferOf(d.request);
      const size_t total = (held ? held->size() : 0) + data.size();
      const bool partial_full = d.body == BodyMode::kBufferedPartial && total >= decoder_->bufferLimit();
      if (end_stream || partial_full) {
        std::string body = held ? *held : std::string();
        body += data;
        d.body_sent = true;
        sendBody(d, std::move(body), end_stream);
        if (stream_closed_) {
          d.stopped = false;
          return DataStatus::kContinue;
        }
      }
      return DataStatus::kStopAndBuffer;
    }
  }
  return DataStatus::kContinue;
}

TrailersStatus ExtProcFilter::onTrailers(Direction& d, http::HeaderMap& trailers) {
  d.trailers = &trailers;
  d.end_seen = true;
  if (d.done || stream_closed_ || local_reply_)
    return d.stopped ? TrailersStatus::kStop : TrailersStatus::kContinue;
  if (d.body == BodyMode::kFullDuplexStreamed && d.duplex_started) {
    // The processor's body decides when the stream ends: the trailers wait for its end_of_stream (or
    // are dropped if it already ended the body), and go to the processor first if the mode says so.
    if (d.send_trailers && !d.trailers_sent && !d.duplex_eos) {
      d.trailers_sent = true;
      pb::ProcessingRequest req;
      auto* t = d.request ? req.mutable_request_trailers() : req.mutable_response_trailers();
      toProto(trailers, *config_, t->mutable_trailers());
      if (send(req)) d.trailers_pending = true;
    }
    d.stopped = true;
    return TrailersStatus::kStop;
  }
  advance(d);
  return d.stopped ? TrailersStatus::kStop : TrailersStatus::kContinue;
}

bool ExtProcFilter::sendBody(Direction& d, std::string body, bool end_stream) {
  pb::ProcessingRequest req;
  auto* b = d.request ? req.mutable_request_body() : req.mutable_response_body();
  b->set_body(std::move(body));
  b->set_end_of_stream(end_stream);
  if (!send(req)) return false;
  ++d.body_in_flight;
  return true;
}

// Sends what is due in `d`; when nothing is outstanding, lets iteration go on. Called inside a filter
// callback (trailers) it only clears `stopped`: the caller returns kContinue and the chain moves on.
void ExtProcFilter::advance(Direction& d) {
  if (awaiting(d)) return;
  if (!d.done && !stream_closed_) {
    const bool buffered = d.body == BodyMode::kBuffered || d.body == BodyMode::kBufferedPartial;
    if (buffered && !d.partial_over && !d.body_sent && d.body_expected) {
      if (!d.end_seen && d.trailers == nullptr) return;  // wait for the rest of the body
      const http::Buffer* held = bufferOf(d.request);
      d.body_sent = true;
      d.stopped = true;
      sendBody(d, held ? *held : std::string(), d.trailers == nullptr);
      if (awaiting(d)) return;
    }
    if (d.body == BodyMode::kStreamed && (d.unsent_bytes > 0 || d.unsent_end)) {
      const http::Buffer* held = bufferOf(d.request);
      const size_t n = held ? std::min(d.unsent_bytes, held->size()) : 0;
      std::string chunk = n > 0 ? held->substr(held->size() - n) : std::string();
      const size_t size = chunk.size();
      d.unsent_bytes = 0;
      const bool end = d.unsent_end && d.trailers == nullptr;
      d.unsent_end = false;
      if (sendBody(d, std::move(chunk), end)) {
        d.chunk_sizes.push_back(size);
        d.stopped = true;
        return;
      }
    }
    if (d.trailers != nullptr && d.send_trailers && !d.trailers_sent) {
      d.trailers_sent = true;
      pb::ProcessingRequest req;
      auto* t = d.request ? req.mutable_request_trailers() : req.mutable_response_trailers();
      toProto(*d.trailers, *config_, t->mutable_trailers());
      if (send(req)) {
        d.trailers_pending = true;
        d.stopped = true;
        return;
      }
    }
    if (d.body == BodyMode::kFullDuplexStreamed && d.duplex_started) {
      flushDuplex(d);
      return;
    }
  }
  d.stopped = false;
  d.released = d.started;
  d.processed_bytes = 0;
  d.chunk_sizes.clear();
}

void ExtProcFilter::resume(Direction& d) {
  const bool was_stopped = d.stopped;
  advance(d);
  if (!was_stopped || d.stopped || destroyed_) return;
  if (d.request) {
    decoder_->continueDecoding();
  } else {
    encoder_->continueEncoding();
  }
}

// ---- the gRPC stream ----

bool ExtProcFilter::send(pb::ProcessingRequest& request, bool expect_reply) {
  if (stream_closed_) return false;
  const MetadataOptions& mo = metadataOptions();
  if (!mo.forward_untyped.empty() || !mo.forward_typed.empty()) {
    if (const auto& md = decoder_->streamInfo().dynamic_metadata; md) {
      for (const auto& ns : mo.forward_untyped) {
        if (auto it = md->filter_metadata().find(ns); it != md->filter_metadata().end()) {
          (*request.mutable_metadata_context()->mutable_filter_metadata())[ns] = it->second;
        }
      }
      for (const auto& ns : mo.forward_typed) {
        if (auto it = md->typed_filter_metadata().find(ns); it != md->typed_filter_metadata().end()) {
          (*request.mutable_metadata_context()->mutable_typed_filter_metadata())[ns] = it->second;
        }
      }
    }
  }
  if (!stream_) {
    const grpc::ServiceConfig& service = service_override_ ? *service_override_ : config_->service;
    auto& client = grpc::AsyncClient::forWorker(decoder_->dispatcher(), decoder_->clusterManager());
    stream_ = client.stream(service, kProcessMethod, *this);
    config_->stats.streams_started.inc();
    if (config_->observability_mode) request.set_observability_mode(true);
  }
  if (!stream_->sendMessage(request)) {
    send_failed_ = true;
    return false;
  }
  config_->stats.stream_msgs_sent.inc();
  if (config_->observability_mode) return false;  // nothing to wait for
  if (expect_reply) armTimer(config_->message_timeout);
  return true;
}

// ---- full duplex streaming ----

DataStatus ExtProcFilter::onDuplexData(Direction& d, http::Buffer& data, bool end_stream) {
  if (d.duplex_eos) {
    data.clear();  // the processor already ended the body: the rest is dropped
    return DataStatus::kStopAndBuffer;
  }
  if (data.empty() && !end_stream) return DataStatus::kStopAndBuffer;
  pb::ProcessingRequest req;
  auto* b = d.request ? req.mutable_request_body() : req.mutable_response_body();
  b->set_body(data);
  b->set_end_of_stream(end_stream);
  if (!send(req, false)) return d.stopped ? DataStatus::kStopAndBuffer : DataStatus::kContinue;
  // The processor's streamed_response chunks replace these bytes.
  data.clear();
  d.duplex_started = true;
  d.stopped = true;
  // Back-pressure: the chunk left the filter chain, so nothing upstream of us sees it held; once half the
  // buffer limit waits in the gRPC send queue, downstream reading pauses until it drains to a quarter.
  const size_t limit = decoder_->bufferLimit();
  // (Re-asserted on every chunk: the router may have resumed reading for its own reasons.)
  if (d.request && stream_ && stream_->queuedBytes() >= limit / 2) {
    decoder_->pauseDownstreamReading(true);
    if (!duplex_paused_) stream_->notifyWhenQueuedBelow(limit / 4);
    duplex_paused_ = true;
  }
  return DataStatus::kStopAndBuffer;
}

void ExtProcFilter::onSendQueueLow() {
  if (destroyed_) return;
  resumeDuplexReading();
}

void ExtProcFilter::resumeDuplexReading() {
  if (!duplex_paused_) return;
  duplex_paused_ = false;
  if (!destroyed_) decoder_->pauseDownstreamReading(false);
}

void ExtProcFilter::onDuplexChunk(Direction& d, const std::string& chunk, bool end_of_stream) {
  if (d.duplex_eos || d.done) {
    config_->stats.spurious_msgs_received.inc();
    return;
  }
  d.duplex_eos = end_of_stream;
  http::Buffer* held = d.request ? decoder_->addDecodingBuffer() : encoder_->addEncodingBuffer();
  if (held != nullptr) {
    // Chunks pile up here only while a headers/trailers reply is outstanding; a processor that keeps
    // streaming meanwhile must not grow the proxy without bound.
    if (held->size() + chunk.size() > decoder_->bufferLimit()) {
      fail("ext_proc_error_buffer_limit_exceeded", false);
      return;
    }
    held->append(chunk);
  }
  flushDuplex(d);
}

bool ExtProcFilter::flushDuplex(Direction& d) {
  // Held while the header reply (or, at the end, the trailers reply) is outstanding.
  if (d.headers_pending || (d.duplex_eos && d.trailers_pending)) {
    d.stopped = true;
    return false;
  }
  http::Buffer* held = bufferOf(d.request);
  if ((held == nullptr || held->empty()) && !d.duplex_eos) {
    d.stopped = true;
    return false;
  }
  http::Buffer out;
  if (held != nullptr) out.swap(*held);
  d.stopped = false;
  d.released = true;
  if (d.request) {
    decoder_->injectDecodedData(out, d.duplex_eos);
  } else {
    encoder_->injectEncodedData(out, d.duplex_eos);
  }
  return true;
}

void ExtProcFilter::applyDynamicMetadata(const pb::ProcessingResponse& response) {
  const auto& receive = metadataOptions().receive_untyped;
  if (receive.empty()) return;
  for (const auto& [ns, value] : response.dynamic_metadata().fields()) {
    if (value.kind_case() != google::protobuf::Value::kStructValue) continue;
    if (std::find(receive.begin(), receive.end(), ns) == receive.end()) continue;
    ext::mergeDynamicMetadata(decoder_->streamInfo(), ns, value.struct_value());
  }
}

void ExtProcFilter::armTimer(std::chrono::milliseconds timeout) {
  if (!timer_) timer_ = std::make_unique<asio::steady_timer>(decoder_->dispatcher());
  current_timeout_ = timeout;
  timer_->expires_after(timeout);
  std::weak_ptr<bool> alive = alive_;
  timer_->async_wait([this, alive](std::error_code ec) {
    auto a = alive.lock();
    if (ec || !a) return;
    onTimeout();
  });
}

void ExtProcFilter::onTimeout() {
  if (stream_closed_ || local_reply_) return;
  if (!awaiting(request_) && !awaiting(response_)) return;
  fail("ext_proc_error_per-message_timeout_exceeded", true);
}

void ExtProcFilter::onReceiveMessage(std::string message) {
  if (destroyed_ || stream_closed_ || local_reply_) return;
  config_->stats.stream_msgs_received.inc();
  pb::ProcessingResponse response;
  if (!response.ParseFromString(message)) {
    fail("ext_proc_error_invalid_message", false);
    return;
  }
  handleResponse(response);
}

void ExtProcFilter::onRemoteClose(const grpc::Status& status) {
  if (destroyed_) return;
  const bool was_closed = stream_closed_;
  stream_closed_ = true;
  stream_.reset();
  resumeDuplexReading();
  if (was_closed || local_reply_) return;
  config_->stats.streams_closed.inc();
  if (status.ok()) {
    // The processor is done with this stream: the rest goes on without it.
    finishProcessing();
    return;
  }
  SKIFF_LOG(kHttp, debug, "ext_proc: stream to {} failed: {} {}", config_->service.describe(), status.code,
            status.message);
  fail("ext_proc_error_gRPC_error_" + std::to_string(status.code), false);
}

void ExtProcFilter::fail(std::string_view details, bool timeout) {
  if (timeout) {
    config_->stats.message_timeouts.inc();
  } else {
    config_->stats.streams_failed.inc();
  }
  if (timer_) timer_->cancel();
  closeStream();
  if (config_->failure_mode_allow) {
    config_->stats.failure_mode_allowed.inc();
    finishProcessing();
    return;
  }
  local_reply_ = true;
  if (response_.released) {
    decoder_->resetStream();
    return;
  }
  decoder_->sendLocalReply(timeout ? 504 : 500, "", details);
}

void ExtProcFilter::finishProcessing() {
  if (timer_) timer_->cancel();
  for (Direction* d : {&request_, &response_}) {
    d->done = true;
    d->headers_pending = d->trailers_pending = false;
    d->body_in_flight = 0;
    d->unsent_bytes = 0;
    d->unsent_end = false;
  }
  resume(request_);
  if (!destroyed_) resume(response_);
}

void ExtProcFilter::applyModeOverride(const Mode& m) {
  // Only directions that have not started yet change; a running one keeps its mode.
  if (!request_.started) {
    request_.send_headers = m.request_headers;
    request_.body = m.request_body;
  }
  if (!request_.trailers) request_.send_trailers = m.request_trailers;
  if (!response_.started) {
    response_.send_headers = m.response_headers;
    response_.body = m.response_body;
  }
  if (!response_.trailers) response_.send_trailers = m.response_trailers;
}

void ExtProcFilter::addAttributes(pb::ProcessingRequest& request, bool request_side) {
  const auto& names = request_side ? config_->request_attributes : config_->response_attributes;
  if (names.empty()) return;
  google::protobuf::Struct& attrs = (*request.mutable_attributes())[std::string(kFilterName)];
  const http::HeaderMap& rq = decoder_->requestHeaders();
  const http::StreamInfo& info = decoder_->streamInfo();
  for (const auto& name : names) {
    std::string value;
    if (name == "request.path") {
      value = rq.getOr(http::headers::kPath);
    } else if (name == "request.url_path") {
      value = rq.getOr(http::headers::kPath);
      value = value.substr(0, value.find('?'));
    } else if (name == "request.host") {
      value = rq.getOr(http::headers::kAuthority);
    } else if (name == "request.method") {
      value = rq.getOr(http::headers::kMethod);
    } else if (name == "request.scheme") {
      value = rq.getOr(http::headers::kScheme);
    } else if (name == "request.id") {
      value = rq.getOr(http::headers::kRequestId);
    } else if (name == "request.protocol") {
      value = std::string(info.protocol);
    } else if (name == "source.address") {
      value = info.downstream_remote_address;
    } else if (name == "destination.address") {
      value = info.downstream_local_address;
    } else if (name == "response.code" && !request_side) {
      const std::string code(encoder_->responseHeaders().getOr(http::headers::kStatus, "0"));
      (*attrs.mutable_fields())[name].set_number_value(std::strtod(code.c_str(), nullptr));
      continue;
    } else {
      continue;  // unknown or not cheap: left out
    }
    (*attrs.mutable_fields())[name].set_string_value(std::move(value));
  }
}

// ---- replies ----

void ExtProcFilter::handleResponse(const pb::ProcessingResponse& response) {
  if (response.has_dynamic_metadata()) applyDynamicMetadata(response);
  if (response.has_override_message_timeout()) {
    const int64_t ms =
        google::protobuf::util::TimeUtil::DurationToMilliseconds(response.override_message_timeout());
    if (config_->max_message_timeout.count() > 0 && ms >= 1 && ms <= config_->max_message_timeout.count() &&
        !timeout_overridden_ && (awaiting(request_) || awaiting(response_))) {
      config_->stats.override_message_timeout_received.inc();
      timeout_overridden_ = true;
      armTimer(std::chrono::milliseconds(ms));
    } else {
      config_->stats.override_message_timeout_ignored.inc();
    }
    return;
  }
  using R = pb::ProcessingResponse;
  Direction* d = nullptr;
  bool ok = true;
  switch (response.response_case()) {
    case R::kRequestHeaders:
    case R::kResponseHeaders: {
      d = &dir(response.response_case() == R::kRequestHeaders);
      if (!d->headers_pending) {
        d = nullptr;
        break;
      }
      d->headers_pending = false;
      timeout_overridden_ = false;
      if (response.has_mode_override() && config_->allow_mode_override) {
        try {
          Mode m = Mode::fromProto(response.mode_override(), "mode_override");
          bool allowed = config_->allowed_override_modes.empty();
          for (const auto& a : config_->allowed_override_modes) {
            allowed = allowed ||
                      (a.request_body == m.request_body && a.response_body == m.response_body &&
                       a.response_headers == m.response_headers && a.request_trailers == m.request_trailers &&
                       a.response_trailers == m.response_trailers);
          }
          if (allowed) {
            // The running direction keeps its headers; later parts follow the new mode.
            const bool req = d->request;
            applyModeOverride(m);
            if (req) {
              request_.body = m.request_body;
              request_.send_trailers = m.request_trailers;
            } else {
              response_.body = m.response_body;
              response_.send_trailers = m.response_trailers;
            }
          }
        } catch (const std::invalid_argument&) {
          // an unsupported body mode: keep the current one
        }
      }
      const auto& hr = d->request ? response.request_headers() : response.response_headers();
      ok = applyCommon(*d, hr.response(), true, 0, 0, false);
      break;
    }
    case R::kRequestBody:
    case R::kResponseBody: {
      d = &dir(response.response_case() == R::kRequestBody);
      if (d->body == BodyMode::kFullDuplexStreamed && d->duplex_started) {
        const auto& br = d->request ? response.request_body() : response.response_body();
        const auto& m = br.response().body_mutation();
        if (m.mutation_case() == pb::BodyMutation::kStreamedResponse) {
          onDuplexChunk(*d, m.streamed_response().body(), m.streamed_response().end_of_stream());
        } else if (m.mutation_case() == pb::BodyMutation::kBody) {
          onDuplexChunk(*d, m.body(), false);
        }
        if (!destroyed_) maybeCloseSend();
        return;
      }
      if (d->body_in_flight == 0) {
        d = nullptr;
        break;
      }
      --d->body_in_flight;
      timeout_overridden_ = false;
      const auto& br = d->request ? response.request_body() : response.response_body();
      if (d->body == BodyMode::kStreamed && !d->chunk_sizes.empty()) {
        const size_t len = d->chunk_sizes.front();
        d->chunk_sizes.pop_front();
        ok = applyCommon(*d, br.response(), false, d->processed_bytes, len, false);
      } else {
        ok = applyCommon(*d, br.response(), false, 0, 0, true);
        if (d->body == BodyMode::kBufferedPartial && !d->end_seen) d->partial_over = true;
      }
      break;
    }
    case R::kRequestTrailers:
    case R::kResponseTrailers: {
      d = &dir(response.response_case() == R::kRequestTrailers);
      if (!d->trailers_pending) {
        d = nullptr;
        break;
      }
      d->trailers_pending = false;
      timeout_overridden_ = false;
      const auto& tr = d->request ? response.request_trailers() : response.response_trailers();
      if (tr.has_header_mutation() && d->trailers != nullptr) {
        ok = applyHeaderMutation(*d->trailers, tr.header_mutation(), false);
      }
      break;
    }
    case R::kImmediateResponse:
      if (config_->disable_immediate_response) {
        fail("ext_proc_error_immediate_response_disabled", false);
      } else {
        immediateResponse(response.immediate_response());
      }
      return;
    case R::RESPONSE_NOT_SET:
      break;
  }
  if (d == nullptr) {
    config_->stats.spurious_msgs_received.inc();
    fail("ext_proc_error_spurious_message", false);
    return;
  }
  if (!ok) {
    fail("ext_proc_error_rejected_header_mutation", false);
    return;
  }
  if (awaiting(request_) || awaiting(response_)) {
    armTimer(config_->message_timeout);
  } else if (timer_) {
    timer_->cancel();
  }
  resume(*d);
  if (!destroyed_) maybeCloseSend();
}

// Once nothing more can be sent, half-close so the processor ends the stream cleanly (instead of a cancel
// when the HTTP stream goes away).
void ExtProcFilter::maybeCloseSend() {
  if (!stream_ || stream_closed_ || send_closed_) return;
  auto finished = [this](const Direction& d) {
    return d.done || (d.started && d.end_seen && !awaiting(d) && !d.stopped &&
                      (d.trailers == nullptr || !d.send_trailers || d.trailers_sent));
  };
  const bool response_silent = !response_.started && !response_.send_headers &&
                               response_.body == BodyMode::kNone && !response_.send_trailers;
  if (finished(request_) && (finished(response_) || response_silent)) {
    send_closed_ = true;
    stream_->closeSend();
  }
}

bool ExtProcFilter::applyCommon(Direction& d, const pb::CommonResponse& common, bool headers_reply,
                                size_t chunk_offset, size_t chunk_len, bool buffered_reply) {
  http::HeaderMap* headers = headersOf(d.request);
  // Headers can change while they are still held here: in their own reply, or in a buffered body reply.
  const bool headers_held = headers_reply || (buffered_reply && d.stopped && d.send_headers);
  if (common.has_header_mutation()) {
    if (headers_held || (buffered_reply && !d.send_headers)) {
      if (!applyHeaderMutation(*headers, common.header_mutation(), d.request)) return false;
    }
  }
  if (headers_reply && d.request && !config_->disable_clear_route_cache) {
    const bool clear =
        config_->route_cache_action == 1 || (config_->route_cache_action == 0 && common.clear_route_cache());
    if (clear) decoder_->clearRouteCache();
  } else if (common.clear_route_cache()) {
    config_->stats.clear_route_cache_ignored.inc();
  }
  const bool replace = common.status() == pb::CommonResponse::CONTINUE_AND_REPLACE;
  if (headers_reply && !replace) return true;
  if (!common.has_body_mutation() && !replace) return true;
  http::Buffer* buffer = bufferOf(d.request);
  const auto& m = common.body_mutation();
  if (headers_reply || buffered_reply) {
    // The whole (held) body is replaced.
    std::string body;
    if (m.mutation_case() == pb::BodyMutation::kBody) body = m.body();
    if (m.mutation_case() != pb::BodyMutation::MUTATION_NOT_SET || replace) {
      const bool added = buffer == nullptr && !body.empty() && headers_held;
      if (added) {
        // A body where there was none (a GET turned into a POST): the held headers go on without
        // end_stream, followed by it.
        buffer = d.request ? decoder_->addDecodingBuffer() : encoder_->addEncodingBuffer();
      }
      if (buffer != nullptr) {
        *buffer = std::move(body);
      } else if (!body.empty()) {
        SKIFF_LOG(kHttp, debug, "ext_proc: cannot add a body once the headers went on");
      }
      if (headers_held && (added || headers->get(http::headers::kContentLength) != nullptr) &&
          headers->get(http::headers::kTransferEncoding) == nullptr) {
        headers->set(http::headers::kContentLength, std::to_string(buffer ? buffer->size() : 0));
      }
    }
    if (replace && headers_reply) d.done = true;  // no more messages for this direction
    return true;
  }
  // STREAMED: this chunk only.
  if (buffer != nullptr && chunk_offset + chunk_len <= buffer->size()) {
    if (m.mutation_case() == pb::BodyMutation::kBody) {
      buffer->replace(chunk_offset, chunk_len, m.body());
      chunk_len = m.body().size();
    } else if (m.mutation_case() == pb::BodyMutation::kClearBody && m.clear_body()) {
      buffer->erase(chunk_offset, chunk_len);
      chunk_len = 0;
    }
  }
  d.processed_bytes = chunk_offset + chunk_len;
  return true;
}

bool ExtProcFilter::applyHeaderMutation(http::HeaderMap& headers, const pb::HeaderMutation& m,
                                        bool request_headers) {
  using Result = ext::MutationChecker::Result;
  for (const auto& name_raw : m.remove_headers()) {
    std::string name = name_raw;
    http::toLowerInPlace(name);
    Result r = config_->checker.checkRemove(name);
    if (r == Result::kAllow) {
      headers.remove(name);
      continue;
    }
    config_->stats.rejected_header_mutations.inc();
    if (r == Result::kError) return false;
  }
  for (const auto& opt : m.set_headers()) {
    std::string name = opt.header().key();
    http::toLowerInPlace(name);
    const std::string value = ext::headerValue(opt.header().value(), opt.header().raw_value());
    Result r = config_->checker.checkSet(name, value);
    if (r == Result::kAllow && name == http::headers::kStatus && !validStatus(value)) r = Result::kIgnore;
    if (r != Result::kAllow) {
      config_->stats.rejected_header_mutations.inc();
      if (r == Result::kError) return false;
      continue;
    }
    if (value.empty() && !opt.keep_empty_value()) {
      headers.remove(name);
      continue;
    }
    using Opt = envoy::config::core::v3::HeaderValueOption;
    Opt::HeaderAppendAction action = opt.append_action();
    if (opt.has_append())
      action = opt.append().value() ? Opt::APPEND_IF_EXISTS_OR_ADD : Opt::OVERWRITE_IF_EXISTS_OR_ADD;
    // Pseudo-headers hold one value.
    if (name[0] == ':' && action == Opt::APPEND_IF_EXISTS_OR_ADD) action = Opt::OVERWRITE_IF_EXISTS_OR_ADD;
    switch (action) {
      case Opt::ADD_IF_ABSENT:
        headers.setIfAbsent(name, value);
        break;
      case Opt::OVERWRITE_IF_EXISTS_OR_ADD:
        headers.set(name, value);
        break;
      case Opt::OVERWRITE_IF_EXISTS:
        if (headers.get(name) != nullptr) headers.set(name, value);
        break;
      default:
        headers.add(name, value);
    }
  }
  (void)request_headers;
  return true;
}

void ExtProcFilter::immediateResponse(const pb::ImmediateResponse& ir) {
  uint32_t status = static_cast<uint32_t>(ir.status().code());
  if (status < 200 || status > 599) status = 200;  // Envoy's default when the code is unset or invalid
  local_reply_ = true;
  if (timer_) timer_->cancel();
  closeStream();
  if (response_.released) {
    decoder_->resetStream();
    return;
  }
  const std::string details = ir.details().empty() ? "ext_proc_immediate_response" : ir.details();
  auto checker = &config_->checker;
  auto stats = &config_->stats;
  decoder_->sendLocalReply(status, ir.body(), details, [&ir, checker, stats](http::HeaderMap& h) {
    for (const auto& opt : ir.headers().set_headers()) {
      std::string name = opt.header().key();
      http::toLowerInPlace(name);
      const std::string value = ext::headerValue(opt.header().value(), opt.header().raw_value());
      if (checker->checkSet(name, value) != ext::MutationChecker::Result::kAllow || name[0] == ':') {
        stats->rejected_header_mutations.inc();
        continue;
      }
      if (opt.has_append() && opt.append().value()) {
        h.add(name, value);
      } else {
        h.set(name, value);
      }
    }
    for (const auto& name : ir.headers().remove_headers()) {
      if (!name.empty() && name[0] != ':') h.remove(name);
    }
    if (ir.has_grpc_status()) h.set("grpc-status", std::to_string(ir.grpc_status().status()));
  });
}

}  // namespace skiff::filters::ext_proc
