// Http1ServerConnection: the downstream HTTP/1.1 codec and the stream it drives through the filter chain.
#include "server/http/http1_server_connection.h"

#include <asio/post.hpp>
#include <asio/write.hpp>

#include "skiff/common/logging.h"
#include "skiff/common/random.h"
#include "skiff/http/http1_writer.h"
#include "skiff/upstream/host.h"

namespace skiff::server {

namespace {

constexpr size_t kReadChunk = 16 * 1024;
constexpr size_t kMaxPipelinedBytes = 64 * 1024;

}  // namespace

// One request/response exchange: the shared stream logic; the connection is its sink (one stream at a time).
class Http1ServerConnection::ActiveStream : public ActiveStreamBase {
 public:
  ActiveStream(Http1ServerConnection& conn, uint64_t id)
      : ActiveStreamBase(conn.worker_, *conn.config_, conn, id), conn_(conn) {}
  // The filters hear onDestroy while this (their resetStream(), the sink) still exists, even when the
  // stream goes without finish(); ~ActiveStreamBase would be too late.
  ~ActiveStream() override { fm_.destroyFilters(); }

  void resetStream() override {
    if (reset_) return;
    reset_ = true;
    conn_.config_->stats.downstream_rq_tx_reset.inc();
    // HTTP/1 has no stream reset: the connection goes.
    auto self = conn_.shared_from_this();
    asio::post(conn_.worker_.io, [self] { self->close(); });
  }

  Http1ServerConnection& conn_;
  bool reset_ = false;
};

Http1ServerConnection::Http1ServerConnection(WorkerContext& worker, network::Transport transport,
                                             ConnectionManagerConfigSharedPtr config,
                                             const ListenerStats& listener_stats,
                                             network::ConnectionInfoConstSharedPtr info)
    : worker_(worker),
      transport_(std::move(transport)),
      config_(std::move(config)),
      listener_scope_(listener_stats),
      info_(std::move(info)),
      id_(info_->id != 0 ? info_->id : WorkerContext::nextConnectionId()),
      local_address_(upstream::formatEndpoint(info_->local)),
      remote_address_(upstream::formatEndpoint(info_->remote)),
      parser_(config_->limits),
      idle_timer_(worker.io) {
  std::error_code ec;
  transport_.socket().set_option(asio::ip::tcp::no_delay(true), ec);
  worker_.connections.insert(this);
  config_->stats.downstream_cx_total.inc();
  config_->stats.downstream_cx_http1_total.inc();
  config_->stats.downstream_cx_active.inc();
  config_->stats.downstream_cx_http1_active.inc();
}

Http1ServerConnection::~Http1ServerConnection() {
  worker_.connections.erase(this);
  if (stream_) finishStream(true);
  finished_streams_.clear();
  config_->stats.downstream_cx_active.dec();
  config_->stats.downstream_cx_http1_active.dec();
  config_->stats.downstream_cx_destroy.inc();
  config_->stats.downstream_cx_length_ms.record(static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - created_)
          .count()));
}

void Http1ServerConnection::start() {
  armTimer();
  doRead();
}

// One timer serves every timeout of the connection: idle without a stream, and for the active stream its
// idle timeout (route idle_timeout, else the HCM's stream_idle_timeout) and the whole-request deadline
// (request_timeout). Activity only records a timestamp; the timer is re-armed when it fires early, so a busy
// keep-alive connection touches the timer queue almost never.
std::optional<std::chrono::steady_clock::time_point> Http1ServerConnection::nextDeadline() const {
  std::optional<std::chrono::steady_clock::time_point> deadline;
  auto consider = [&](std::chrono::steady_clock::time_point t) {
    if (!deadline || t < *deadline) deadline = t;
  };
  if (!stream_) {
    if (config_->idle_timeout.count() > 0) consider(last_activity_ + config_->idle_timeout);
    if (drain_deadline_) consider(*drain_deadline_);
    if (head_started_ && config_->request_headers_timeout.count() > 0) {
      consider(*head_started_ + config_->request_headers_timeout);
    }
    return deadline;
  }
  const auto idle = streamIdleTimeout();
  if (idle.count() > 0) consider(last_activity_ + idle);
  if (config_->request_timeout.count() > 0 && !stream_->request_complete_) {
    consider(stream_->info_.start + config_->request_timeout);
  }
  return deadline;
}

std::chrono::milliseconds Http1ServerConnection::streamIdleTimeout() const {
  return stream_ ? stream_->idleTimeout() : config_->stream_idle_timeout;
}

void Http1ServerConnection::armTimer() {
  const auto deadline = nextDeadline();
  if (!deadline || state_ == State::kClosed) return;
  // A wait that fires earlier re-evaluates then; only an earlier deadline needs the timer moved.
  if (timer_armed_ && timer_deadline_ <= *deadline) return;
  timer_armed_ = true;
  timer_deadline_ = *deadline;
  idle_timer_.expires_at(*deadline);
  std::weak_ptr<Http1ServerConnection> weak = weak_from_this();
  idle_timer_.async_wait([weak](std::error_code ec) {
    auto self = weak.lock();
    if (ec || !self) return;  // aborted: a re-arm or close replaced this wait
    self->timer_armed_ = false;
    self->onTimer();
  });
}

void Http1ServerConnection::onTimer() {
  if (state_ == State::kClosed) return;
  const auto now = std::chrono::steady_clock::now();
  if (!stream_) {
    if (head_started_ && config_->request_headers_timeout.count() > 0 &&
        now - *head_started_ >= config_->request_headers_timeout) {
      onRequestHeadersTimeout();
      return;
    }
    if (drain_deadline_ && now >= *drain_deadline_) {
      config_->stats.downstream_cx_drain_close.inc();
      close();
      return;
    }
    if (config_->idle_timeout.count() > 0 && now - last_activity_ >= config_->idle_timeout) {
      config_->stats.downstream_cx_idle_timeout.inc();
      close();
      return;
    }
  } else {
    ActiveStream& s = *stream_;
    if (config_->request_timeout.count() > 0 && !s.request_complete_ &&
        now - s.info_.start >= config_->request_timeout) {
      config_->stats.downstream_rq_timeout.inc();
      keep_alive_ = false;
      s.sendLocalReply(408, "request timeout", "request_overall_timeout", nullptr);
      return;
    }
    const auto idle = streamIdleTimeout();
    if (idle.count() > 0 && now - last_activity_ >= idle) {
      config_->stats.downstream_rq_idle_timeout.inc();
      s.info_.setFlag(http::ResponseFlag::kStreamIdleTimeout);
      keep_alive_ = false;
      s.sendLocalReply(408, "stream timeout", "stream_idle_timeout", nullptr);
      return;
    }
  }
  armTimer();
}

void Http1ServerConnection::doRead() {
  if (read_in_flight_ || read_paused_ || state_ == State::kClosed) return;
  if (state_ == State::kAwaitResponse && in_end_ - in_start_ > kMaxPipelinedBytes) return;
  // Compact only while no read is in flight: the kernel writes past in_end_.
  if (in_start_ == in_end_) {
    in_start_ = in_end_ = 0;
  } else if (in_start_ > kReadChunk) {
    in_.erase(0, in_start_);
    in_end_ -= in_start_;
    in_start_ = 0;
  }
  if (in_.size() < in_end_ + kReadChunk) in_.resize(in_end_ + kReadChunk);
  read_in_flight_ = true;
  auto self = shared_from_this();
  transport_.asyncReadSome(asio::buffer(in_.data() + in_end_, kReadChunk),
                           [self](std::error_code ec, size_t n) {
                             self->read_in_flight_ = false;
                             self->in_end_ += n;
                             self->onRead(ec, n);
                           });
}

void Http1ServerConnection::onRead(std::error_code ec, size_t n) {
  if (state_ == State::kClosed) return;
  if (ec) {
    // The client went away (or half-closed). Anything in flight is abandoned, as Envoy does for HTTP/1.
    if (stream_) {
      config_->stats.downstream_cx_destroy_remote_active_rq.inc();
      config_->stats.downstream_rq_rx_reset.inc();
      stream_->info_.setFlag(http::ResponseFlag::kDownstreamConnectionTermination);
    }
    config_->stats.downstream_cx_destroy_remote.inc();
    close();
    return;
  }
  config_->stats.downstream_cx_rx_bytes_total.inc(n);
  last_activity_ = std::chrono::steady_clock::now();
  processInput();
  doRead();
}

void Http1ServerConnection::processInput() {
  auto self = shared_from_this();  // callbacks below may drop the last other reference
  while (state_ != State::kClosed && !read_paused_) {
    if (state_ == State::kHead) {
      if (!processHead()) break;
    } else if (state_ == State::kBody) {
      if (!processBody()) break;
    } else {
      break;
    }
  }
}

bool Http1ServerConnection::processHead() {
  if (!head_started_) {
    // Empty lines before a request line are allowed (RFC 9112 2.2; a client may send a stray CRLF after
    // a body): drop them here, so that they do not start the request's headers timer on an idle connection.
    while (in_end_ - in_start_ >= 2 && in_[in_start_] == '\r' && in_[in_start_ + 1] == '\n') in_start_ += 2;
    if (in_end_ - in_start_ == 1 && in_[in_start_] == '\r') return false;  // maybe the next CRLF
  }
  if (in_start_ == in_end_) return false;
  if (!head_started_) {
    // The first byte of a request: request_headers_timeout runs from here to the end of its headers.
    // Also the "a head is under way" mark; the clock is read only when a timeout will use it.
    head_started_ = config_->request_headers_timeout.count() > 0 ? std::chrono::steady_clock::now()
                                                                 : std::chrono::steady_clock::time_point{};
    if (config_->request_headers_timeout.count() > 0) armTimer();
  }
  size_t consumed = 0;
  const auto st = parser_.feed(pending(), &consumed);
  if (st == http1::RequestParser::Status::kNeedMore) return false;
  if (st == http1::RequestParser::Status::kError) {
    protocolError(parser_.error());
    return false;
  }
  in_start_ += consumed;
  if (parser_.versionMinor() == 0 && !config_->accept_http_10) {
    // As Envoy's codec: HTTP/1.0 (and 0.9) gets 426 unless http_protocol_options.accept_http_10 is set.
    parser_.reset();
    protocolError(http1::ParseError{426, "low_version"});
    return false;
  }
  newStream();
  return state_ != State::kClosed;
}

bool Http1ServerConnection::processBody() {
  std::string_view avail = pending();
  if (avail.empty()) return false;
  size_t consumed = 0;
  http::Buffer chunk;
  const auto st = body_->decode(avail, &consumed, chunk);
  in_start_ += consumed;
  if (st == http1::BodyDecoder::Status::kError) {
    protocolError(body_->error());
    return false;
  }
  const bool done = st == http1::BodyDecoder::Status::kDone;
  if (stream_) {
    stream_->info_.bytes_received += chunk.size();
    if (done) {
      state_ = State::kAwaitResponse;
      stream_->request_complete_ = true;
      stream_->info_.last_downstream_rx = stream_->info_.elapsed();
      if (!body_->trailers().empty()) {
        if (!chunk.empty()) stream_->fm_.decodeData(chunk, false);
        if (stream_) stream_->fm_.decodeTrailers(std::make_unique<http::HeaderMap>(body_->trailers()));
      } else {
        stream_->fm_.decodeData(chunk, true);
      }
    } else if (!chunk.empty()) {
      stream_->fm_.decodeData(chunk, false);
    }
  } else if (done) {
    // The response went out before the body finished; the body was read to keep the connection in sync.
    state_ = State::kHead;
  }
  return done || consumed > 0;
}

void Http1ServerConnection::newStream() {
  const HcmStats& stats = config_->stats;
  stats.downstream_rq_total.inc();
  stats.downstream_rq_http1_total.inc();
  stats.downstream_rq_active.inc();
  ++requests_;

  stream_ = std::make_unique<ActiveStream>(*this, random64());
  ActiveStream& s = *stream_;
  version_minor_ = parser_.versionMinor();
  keep_alive_ = parser_.keepAlive() && !worker_.draining && !drain_requested_;
  if (config_->max_requests_per_connection != 0 && requests_ >= config_->max_requests_per_connection) {
    stats.downstream_cx_max_requests_reached.inc();
    keep_alive_ = false;
  }

  auto headers = std::make_unique<http::HeaderMap>(std::move(parser_.headers()));
  s.head_request_ = headers->getOr(http::headers::kMethod) == "HEAD";
  if (version_minor_ == 0 && !config_->default_host_for_http_10.empty() &&
      headers->getOr(http::headers::kAuthority).empty()) {
    headers->set(http::headers::kAuthority, config_->default_host_for_http_10);
  }
  const auto framing = parser_.framing();
  const bool expect_continue = parser_.expectContinue();
  const bool end_stream = framing == http1::Framing::kNone;
  if (!end_stream)
    body_ = std::make_unique<http1::BodyDecoder>(framing, parser_.contentLength(), config_->limits);
  parser_.reset();
  head_started_.reset();
  state_ = end_stream ? State::kAwaitResponse : State::kBody;
  s.request_complete_ = end_stream;
  if (end_stream) s.info_.last_downstream_rx = s.info_.elapsed();

  if (expect_continue && !config_->proxy_100_continue) {
    // Envoy answers 100-continue itself and does not forward the expectation.
    headers->remove(http::headers::kExpect);
    if (version_minor_ == 1) write("HTTP/1.1 100 Continue\r\n\r\n");
  }
  s.begin(StreamOrigin{id_, info_, local_address_, remote_address_},
          version_minor_ == 0 ? "HTTP/1.0" : "HTTP/1.1", *headers);
  s.fm_.setBackpressureHooks(
      [this] { return backedUp(); },
      [this](std::function<void()> cb) { writable_callbacks_.push_back(std::move(cb)); },
      [this](bool paused) { setReadPaused(paused); });
  s.fm_.decodeHeaders(std::move(headers), end_stream);
  armTimer();
}

// Envoy's request header handling for a proxy hop: forwarding headers, request id, hop-by-hop removal.
void Http1ServerConnection::protocolError(const http1::ParseError& error) {
  config_->stats.downstream_cx_protocol_error.inc();
  keep_alive_ = false;
  if (stream_ && stream_->fm_.responseStarted()) {
    close();
    return;
  }
  const uint32_t status = error.status == 0 ? 400 : static_cast<uint32_t>(error.status);
  if (!stream_) {
    // No stream yet: answer directly, log it the way Envoy logs codec errors (DPE), and close.
    config_->stats.downstream_rq_total.inc();
    if (status == 431) config_->stats.downstream_rq_too_large.inc();
    replyWithoutStream(status, http1::reasonPhrase(static_cast<int>(status)), error.detail,
                       http::ResponseFlag::kDownstreamProtocolError);
    return;
  }
  stream_->info_.setFlag(http::ResponseFlag::kDownstreamProtocolError);
  state_ = State::kAwaitResponse;
  stream_->sendLocalReply(status, http1::reasonPhrase(static_cast<int>(status)), error.detail, nullptr);
}

// The request's headers did not arrive in time: there is no filter chain yet, so the codec answers 408.
void Http1ServerConnection::onRequestHeadersTimeout() {
  const HcmStats& stats = config_->stats;
  stats.downstream_rq_header_timeout.inc();
  stats.downstream_rq_total.inc();
  stats.downstream_rq_http1_total.inc();
  stats.downstream_rq_completed.inc();
  keep_alive_ = false;
  replyWithoutStream(408, "request header timeout", "request_header_timeout", std::nullopt);
}

// A response written straight to the connection (its request never got a stream), access-logged; then close.
void Http1ServerConnection::replyWithoutStream(uint32_t status, std::string_view body,
                                               std::string_view details,
                                               std::optional<http::ResponseFlag> flag) {
  head_started_.reset();
  http::StreamInfo info;
  info.connection_id = id_;
  info.connection = info_;
  info.requested_server_name = info_->server_name;
  info.downstream_local_address = local_address_;
  info.downstream_remote_address = remote_address_;
  info.downstream_direct_remote_address = remote_address_;
  info.response_code = status;
  info.response_code_details = std::string(details);
  if (flag) info.setFlag(*flag);
  config_->stats.chargeResponseCode(status);
  http::HeaderMap h;
  h.add(http::headers::kStatus, std::to_string(status));
  h.add(http::headers::kContentLength, std::to_string(body.size()));
  h.add(http::headers::kContentType, "text/plain");
  h.add(http::headers::kConnection, "close");
  if (config_->server_header != ConnectionManagerConfig::ServerHeader::kPassThrough) {
    h.add(http::headers::kServer, config_->server_name);  // as every other local reply
  }
  std::string bytes;
  http1::writeResponseHead(h, bytes);
  bytes.append(body);
  info.bytes_sent = body.size();
  write(bytes);
  config_->access_logs->log(worker_.index, info);
  state_ = State::kAwaitResponse;
  closeAfterFlush();
}

void Http1ServerConnection::writeHeaders(http::HeaderMap& headers, bool end_stream) {
  ActiveStream& s = *stream_;
  const uint32_t status = s.decorateResponseHeaders(headers);
  for (std::string_view hop :
       {http::headers::kConnection, http::headers::kKeepAlive, http::headers::kProxyConnection,
        http::headers::kTransferEncoding, http::headers::kUpgrade}) {
    headers.remove(hop);
  }
  // A response that goes out before the request finished leaves the connection out of sync: close it.
  if (!s.request_complete_) {
    config_->stats.downstream_rq_response_before_rq_complete.inc();
    keep_alive_ = false;
  }
  if ((worker_.draining || drain_requested_) && keep_alive_) {
    keep_alive_ = false;
    config_->stats.downstream_cx_drain_close.inc();
  }

  chunked_response_ = false;
  close_delimited_response_ = false;
  const bool bodyless_status = status < 200 || status == 204 || status == 304;
  if (end_stream) {
    if (!bodyless_status && !s.head_request_ && headers.get(http::headers::kContentLength) == nullptr) {
      headers.add(http::headers::kContentLength, "0");
    }
  } else if (headers.get(http::headers::kContentLength) == nullptr && !bodyless_status && !s.head_request_) {
    if (version_minor_ == 1) {
      chunked_response_ = true;
      headers.add(http::headers::kTransferEncoding, "chunked");
    } else {
      close_delimited_response_ = true;
      keep_alive_ = false;
    }
  }
  if (!keep_alive_) {
    headers.add(http::headers::kConnection, "close");
  } else if (version_minor_ == 0) {
    headers.add(http::headers::kConnection, "keep-alive");
  }
  if (state_ == State::kClosed) return;
  http1::writeResponseHead(headers, out_, version_minor_, s.info_.http1_reason_phrase);
  scheduleFlush();
  if (end_stream) onResponseComplete();
}

void Http1ServerConnection::writeData(http::Buffer& data, bool end_stream) {
  if (!stream_) return;
  stream_->info_.bytes_sent += data.size();
  if (!stream_->head_request_) {
    if (state_ == State::kClosed) return;
    if (chunked_response_) {
      http1::writeChunk(data, out_);
      if (end_stream) http1::writeLastChunk(nullptr, out_);
    } else {
      out_.append(data);
    }
    scheduleFlush();
  }
  if (end_stream) onResponseComplete();
}

void Http1ServerConnection::writeTrailers(http::HeaderMap& trailers) {
  if (!stream_) return;
  if (chunked_response_ && !stream_->head_request_ && state_ != State::kClosed) {
    http1::writeLastChunk(&trailers, out_);
    scheduleFlush();
  }
  onResponseComplete();
}

void Http1ServerConnection::onResponseComplete() {
  if (!stream_) return;
  stream_->info_.last_downstream_tx = stream_->info_.elapsed();
  finishStream(false);
  if (!keep_alive_ || state_ == State::kClosed) {
    closeAfterFlush();
    return;
  }
  if (state_ == State::kBody) {
    // Body still arriving (the response went out early): keep decoding it, without a stream, then close.
    keep_alive_ = false;
    closeAfterFlush();
    return;
  }
  state_ = State::kHead;
  armTimer();
  // Pipelined requests wait in the buffer; handle them after this callback chain unwinds.
  if (!process_scheduled_) {
    process_scheduled_ = true;
    auto self = shared_from_this();
    asio::post(worker_.io, [self] {
      self->process_scheduled_ = false;
      self->finished_streams_.clear();
      self->processInput();
      self->doRead();
    });
  }
}

// Logs, charges stats and retires the stream; deletion waits until the current callback chain unwinds.
void Http1ServerConnection::finishStream(bool reset) {
  std::unique_ptr<ActiveStream> s = std::move(stream_);
  if (!s) return;
  if (reset) {
    if (!s->info_.hasFlag(http::ResponseFlag::kDownstreamConnectionTermination)) {
      s->info_.setFlag(http::ResponseFlag::kLocalReset);
    }
    config_->stats.downstream_cx_destroy_active_rq.inc();
  }
  s->finish(!reset);
  finished_streams_.push_back(std::move(s));
  if (read_paused_) {
    // The pause belonged to the stream that just ended. The hold is let go after this callback chain
    // unwinds, so `this` outlives the caller's remaining work.
    read_paused_ = false;
    if (auto hold = std::move(paused_hold_)) asio::post(worker_.io, [hold] {});
  }
}

void Http1ServerConnection::setReadPaused(bool paused) {
  if (read_paused_ == paused) return;
  read_paused_ = paused;
  if (paused) {
    config_->stats.downstream_flow_control_paused_reading_total.inc();
    // A pending read is what normally keeps the connection alive; while none is allowed, it holds itself
    // (released on resume, or when the stream that paused it ends).
    paused_hold_ = shared_from_this();
    return;
  }
  config_->stats.downstream_flow_control_resumed_reading_total.inc();
  auto self = shared_from_this();
  paused_hold_.reset();
  asio::post(worker_.io, [self] {
    self->processInput();
    self->doRead();
  });
}

void Http1ServerConnection::write(std::string_view bytes) {
  if (state_ == State::kClosed) return;
  out_.append(bytes);
  scheduleFlush();
}

// Everything written while handling one event goes out in one write(2): a response head and the body
// chunk that arrived with it cost one syscall, not two.
void Http1ServerConnection::scheduleFlush() {
  if (flush_scheduled_ || write_in_flight_) return;
  flush_scheduled_ = true;
  auto self = shared_from_this();
  asio::post(worker_.io, [self] {
    self->flush_scheduled_ = false;
    self->flush();
  });
}

void Http1ServerConnection::flush() {
  if (write_in_flight_ || out_.empty() || state_ == State::kClosed) return;
  write_in_flight_ = true;
  writing_.swap(out_);
  out_.clear();
  config_->stats.downstream_cx_tx_bytes_total.inc(writing_.size());
  auto self = shared_from_this();
  transport_.asyncWrite(asio::buffer(writing_), [self](std::error_code ec, size_t) {
    self->write_in_flight_ = false;
    self->writing_.clear();
    if (ec) {
      self->close();
      return;
    }
    self->last_activity_ = std::chrono::steady_clock::now();
    if (!self->writable_callbacks_.empty() && !self->backedUp()) {
      auto callbacks = std::move(self->writable_callbacks_);
      self->writable_callbacks_.clear();
      for (auto& cb : callbacks) cb();
    }
    if (!self->out_.empty()) {
      self->flush();
    } else if (self->close_after_flush_) {
      self->transport_.shutdownWrite();
      self->close();
    }
  });
}

void Http1ServerConnection::closeAfterFlush() {
  close_after_flush_ = true;
  if (!write_in_flight_ && out_.empty()) {
    transport_.shutdownWrite();
    close();
  }
}

void Http1ServerConnection::drain() {
  if (state_ == State::kClosed) return;
  drain_requested_ = true;  // also when only this connection's listener drains (LDS update/removal)
  // Busy: the response in flight (or the next one) carries "connection: close".
  if (stream_ || state_ != State::kHead || in_start_ != in_end_) return;
  if (worker_.draining) {
    // Server shutdown: the listeners are closed, so an idle connection has nothing more to bring.
    config_->stats.downstream_cx_drain_close.inc();
    close();
    return;
  }
  // A listener drain (its config was replaced or removed): as Envoy, an idle connection stays open for the
  // HCM's drain_timeout, so a request already on its way (or a fresh connection's first one) is answered
  // with "connection: close" instead of being reset. Called again on every drain tick: arm once.
  if (!drain_deadline_) {
    drain_deadline_ = std::chrono::steady_clock::now() + config_->drain_timeout;
    armTimer();
  }
}

void Http1ServerConnection::close() {
  if (state_ == State::kClosed) return;
  state_ = State::kClosed;
  auto self = shared_from_this();
  if (stream_) finishStream(true);
  idle_timer_.cancel();
  transport_.close();
  writable_callbacks_.clear();
  config_->stats.downstream_cx_destroy_local.inc();
}

}  // namespace skiff::server
