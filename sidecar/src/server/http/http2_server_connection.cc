// Http2ServerConnection: the downstream HTTP/2 connection, its streams and their filter chains.
#include "server/http/http2_server_connection.h"

#include <asio/post.hpp>

#include "skiff/common/logging.h"
#include "skiff/common/random.h"
#include "skiff/upstream/host.h"

namespace skiff::server {

namespace {
constexpr size_t kReadChunk = 16 * 1024;
}

// One HTTP/2 stream: the shared stream logic, and the sink that turns the chain's output into frames.
// FilterManagerSink comes first among the bases: the base's FilterManager is handed this stream as its sink.
class Http2ServerConnection::ActiveStream : public FilterManagerSink, public ActiveStreamBase {
 public:
  ActiveStream(Http2ServerConnection& conn, int32_t stream_id)
      : ActiveStreamBase(conn.worker_, *conn.config_, *this, random64()),
        conn_(conn),
        stream_id_(stream_id) {}
  // The filters hear onDestroy while this (their resetStream(), the sink) still exists, even when the
  // stream goes without finish(); ~ActiveStreamBase would be too late.
  ~ActiveStream() override { fm_.destroyFilters(); }

  void resetStream() override {
    if (reset_ || finished_) return;
    reset_ = true;
    conn_.config_->stats.downstream_rq_tx_reset.inc();
    info_.setFlag(http::ResponseFlag::kLocalReset);
    conn_.codec_.resetStream(stream_id_, http2::kInternalError);
    conn_.scheduleFlush();
  }

  // FilterManagerSink
  void writeHeaders(http::HeaderMap& headers, bool end_stream) override {
    decorateResponseHeaders(headers);
    if (reset_) return;
    last_activity_ = std::chrono::steady_clock::now();
    const bool end = end_stream || head_request_;
    conn_.codec_.submitResponse(stream_id_, headers, end);
    if (end) response_sent_ = true;
    conn_.scheduleFlush();
    if (end) onResponseComplete();
  }

  void writeData(http::Buffer& data, bool end_stream) override {
    info_.bytes_sent += data.size();
    if (reset_ || response_sent_) return;
    last_activity_ = std::chrono::steady_clock::now();
    conn_.codec_.sendData(stream_id_, data, end_stream);
    conn_.scheduleFlush();
    if (end_stream) {
      response_sent_ = true;
      onResponseComplete();
    }
  }

  void writeTrailers(http::HeaderMap& trailers) override {
    if (reset_ || response_sent_) return;
    response_sent_ = true;
    conn_.codec_.sendTrailers(stream_id_, trailers);
    conn_.scheduleFlush();
    onResponseComplete();
  }

  void onResponseComplete() {
    info_.last_downstream_tx = info_.elapsed();
    // The response is done before the request: tell the client to stop sending (RFC 9113 8.1).
    if (!request_complete_) {
      conn_.config_->stats.downstream_rq_response_before_rq_complete.inc();
      conn_.codec_.resetStreamAfterEnd(stream_id_, http2::kNoError);
    }
  }

  bool backedUp() const {
    return conn_.codec_.streamPendingSendBytes(stream_id_) + conn_.out_.size() > conn_.config_->buffer_limit;
  }

  Http2ServerConnection& conn_;
  const int32_t stream_id_;
  bool response_sent_ = false;
  bool reset_ = false;
  bool finished_ = false;
  bool timed_out_ = false;  // a timeout answered or reset it: no more deadlines
  std::chrono::steady_clock::time_point last_activity_ = std::chrono::steady_clock::now();
  std::vector<std::function<void()>> writable_callbacks_;
};

Http2ServerConnection::Http2ServerConnection(WorkerContext& worker, network::Transport transport,
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
      codec_(http2::Codec::Role::kServer, config_->http2_settings, *this, config_->http2_stats.get()),
      timer_(worker.io) {
  std::error_code ec;
  transport_.socket().set_option(asio::ip::tcp::no_delay(true), ec);
  worker_.connections.insert(this);
  const HcmStats& s = config_->stats;
  s.downstream_cx_total.inc();
  s.downstream_cx_http2_total.inc();
  s.downstream_cx_active.inc();
  s.downstream_cx_http2_active.inc();
}

Http2ServerConnection::~Http2ServerConnection() {
  worker_.connections.erase(this);
  const HcmStats& s = config_->stats;
  s.downstream_cx_active.dec();
  s.downstream_cx_http2_active.dec();
  s.downstream_cx_destroy.inc();
  s.downstream_cx_length_ms.record(static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - created_)
          .count()));
}

void Http2ServerConnection::start() {
  scheduleFlush();  // our SETTINGS
  if (config_->idle_timeout.count() > 0) armTimer(last_activity_ + config_->idle_timeout);
  if (config_->max_connection_duration.count() > 0) armTimer(created_ + config_->max_connection_duration);
  doRead();
}

Http2ServerConnection::ActiveStream* Http2ServerConnection::find(int32_t id) {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second.get();
}

bool Http2ServerConnection::onNewStream(int32_t stream_id) {
  // After GOAWAY nghttp2 ignores new streams itself; while shutting down refuse them.
  if (draining_ || worker_.draining) return false;
  header_stream_id_ = stream_id;
  header_started_ = Clock::now();
  return true;
}

void Http2ServerConnection::onHeaders(int32_t stream_id, std::unique_ptr<http::HeaderMap> headers,
                                      bool end_stream) {
  if (header_stream_id_ == stream_id) header_stream_id_ = 0;
  const HcmStats& stats = config_->stats;
  stats.downstream_rq_total.inc();
  stats.downstream_rq_http2_total.inc();
  stats.downstream_rq_active.inc();
  auto owned = std::make_unique<ActiveStream>(*this, stream_id);
  ActiveStream& s = *owned;
  streams_.emplace(stream_id, std::move(owned));
  s.request_complete_ = end_stream;
  if (end_stream) s.info_.last_downstream_rx = s.info_.elapsed();

  // HTTP/2 carries the authority in :authority; a Host header alone is accepted (RFC 9113 8.3.1).
  if (headers->getOr(http::headers::kAuthority).empty()) {
    if (const std::string* host = headers->get(http::headers::kHost)) {
      const std::string value = *host;
      headers->remove(http::headers::kHost);
      headers->remove(http::headers::kAuthority);
      auto& e = headers->mutableEntries();
      size_t pos = 0;
      while (pos < e.size() && !e[pos].first.empty() && e[pos].first[0] == ':') ++pos;
      e.insert(e.begin() + static_cast<std::ptrdiff_t>(pos), {std::string(http::headers::kAuthority), value});
    }
  }
  s.head_request_ = headers->getOr(http::headers::kMethod) == "HEAD";
  // A body without content-length: an HTTP/1.1 upstream needs it chunked (the h2 codec drops the header).
  if (!end_stream && headers->get(http::headers::kContentLength) == nullptr) {
    headers->set(http::headers::kTransferEncoding, "chunked");
  }
  s.begin(StreamOrigin{id_, info_, local_address_, remote_address_}, "HTTP/2", *headers);
  ActiveStream* sp = &s;
  s.fm_.setBackpressureHooks(
      [sp] { return sp->backedUp(); },
      [sp](std::function<void()> cb) { sp->writable_callbacks_.push_back(std::move(cb)); },
      [this, stream_id](bool paused) {
        codec_.readDisable(stream_id, paused);
        if (!paused) scheduleFlush();  // the window update
      });
  // Envoy's max_requests_per_connection on HTTP/2: this stream is served, later ones go elsewhere (GOAWAY).
  if (config_->max_requests_per_connection != 0 && ++requests_ >= config_->max_requests_per_connection &&
      !goaway_sent_) {
    stats.downstream_cx_max_requests_reached.inc();
    draining_ = true;
    goaway_sent_ = true;
    codec_.goAway(http2::kNoError, false);
    scheduleFlush();
  }
  s.fm_.decodeHeaders(std::move(headers), end_stream);
  // The route (picked while decoding) may set its own idle timeout and max stream duration.
  if (ActiveStream* p = find(stream_id)) {
    if (auto deadline = streamDeadline(*p)) armTimer(*deadline);
  }
}

void Http2ServerConnection::onData(int32_t stream_id, http::Buffer& data, bool end_stream) {
  ActiveStream* s = find(stream_id);
  if (s == nullptr || s->finished_) return;
  s->last_activity_ = Clock::now();
  s->info_.bytes_received += data.size();
  if (end_stream) {
    s->request_complete_ = true;
    s->info_.last_downstream_rx = s->info_.elapsed();
  }
  s->fm_.decodeData(data, end_stream);
}

void Http2ServerConnection::onTrailers(int32_t stream_id, std::unique_ptr<http::HeaderMap> trailers) {
  ActiveStream* s = find(stream_id);
  if (s == nullptr || s->finished_) return;
  s->last_activity_ = Clock::now();
  s->request_complete_ = true;
  s->info_.last_downstream_rx = s->info_.elapsed();
  s->fm_.decodeTrailers(std::move(trailers));
}

void Http2ServerConnection::onStreamClose(int32_t stream_id, uint32_t error_code, bool remote) {
  if (header_stream_id_ == stream_id) header_stream_id_ = 0;
  auto it = streams_.find(stream_id);
  if (it == streams_.end()) return;
  std::unique_ptr<ActiveStream> s = std::move(it->second);
  streams_.erase(it);
  s->finished_ = true;
  const bool complete = s->response_sent_ && (error_code == 0 || (!remote && !s->reset_));
  if (!complete) {
    if (remote) {
      config_->stats.downstream_rq_rx_reset.inc();
      s->info_.setFlag(http::ResponseFlag::kDownstreamConnectionTermination);
    } else {
      s->info_.setFlag(http::ResponseFlag::kLocalReset);
    }
  }
  s->finish(complete);
  finished_streams_.push_back(std::move(s));
  // One deferred cleanup for all the streams that end in this turn of the loop.
  if (finished_streams_.size() == 1) {
    auto self = shared_from_this();
    asio::post(worker_.io, [self] {
      self->finished_streams_.clear();
      self->maybeClose();
    });
  }
  last_activity_ = Clock::now();
  if (streams_.empty() && config_->idle_timeout.count() > 0) armTimer(last_activity_ + config_->idle_timeout);
}

void Http2ServerConnection::doRead() {
  if (read_in_flight_ || closed_) return;
  // Output the peer does not read (PING/SETTINGS ACKs, responses): stop reading until it drains.
  if (out_.size() + writing_.size() > std::max<size_t>(config_->buffer_limit, 1 << 20)) return;
  if (in_.size() < kReadChunk) in_.resize(kReadChunk);
  read_in_flight_ = true;
  auto self = shared_from_this();
  transport_.asyncReadSome(asio::buffer(in_.data(), kReadChunk), [self](std::error_code ec, size_t n) {
    self->read_in_flight_ = false;
    self->onRead(ec, n);
  });
}

void Http2ServerConnection::onRead(std::error_code ec, size_t n) {
  if (closed_) return;
  if (ec) {
    if (!streams_.empty()) config_->stats.downstream_cx_destroy_remote_active_rq.inc();
    config_->stats.downstream_cx_destroy_remote.inc();
    close();
    return;
  }
  config_->stats.downstream_cx_rx_bytes_total.inc(n);
  last_activity_ = std::chrono::steady_clock::now();
  auto self = shared_from_this();
  if (!codec_.receive(std::string_view(in_.data(), n))) {
    SKIFF_LOG(kConnection, debug, "[C{}] HTTP/2 connection error: {}", id_, codec_.error());
    config_->stats.downstream_cx_protocol_error.inc();
    closeSoon();
  }
  scheduleFlush();
  if (header_stream_id_ != 0 && config_->request_headers_timeout.count() > 0) {
    armTimer(header_started_ + config_->request_headers_timeout);
  }
  if (!codec_.wantsClose()) doRead();
}

void Http2ServerConnection::scheduleFlush() {
  if (flush_scheduled_ || closed_) return;
  flush_scheduled_ = true;
  auto self = shared_from_this();
  asio::post(worker_.io, [self] {
    self->flush_scheduled_ = false;
    self->flush();
  });
}

// Frames are serialized as soon as they are ready, also while a write is in flight (as Envoy's codec
// fills its output buffer): what the peer does not read counts against max_outbound_frames.
void Http2ServerConnection::flush() {
  if (closed_) return;
  if (!codec_.takeOutput(out_)) {
    close();
    return;
  }
  if (write_in_flight_) return;
  if (out_.empty()) {
    maybeClose();
    return;
  }
  write_in_flight_ = true;
  writing_.swap(out_);
  out_.clear();
  writing_frames_ = codec_.outboundFrames();
  config_->stats.downstream_cx_tx_bytes_total.inc(writing_.size());
  auto self = shared_from_this();
  transport_.asyncWrite(asio::buffer(writing_), [self](std::error_code ec, size_t) {
    self->write_in_flight_ = false;
    self->writing_.clear();
    if (ec) {
      self->close();
      return;
    }
    self->codec_.onOutputWritten(self->writing_frames_);
    self->onWritable();
    self->flush();
    self->doRead();
  });
}

// Streams waiting for downstream room get their callbacks once their queue is below the limit.
void Http2ServerConnection::onWritable() {
  std::vector<int32_t> ids;
  for (auto& [id, s] : streams_) {
    if (!s->writable_callbacks_.empty() && !s->backedUp()) ids.push_back(id);
  }
  for (int32_t id : ids) {
    ActiveStream* s = find(id);
    if (s == nullptr) continue;
    auto callbacks = std::move(s->writable_callbacks_);
    s->writable_callbacks_.clear();
    for (auto& cb : callbacks) cb();
  }
}

void Http2ServerConnection::maybeClose() {
  if (closed_ || write_in_flight_ || !out_.empty()) return;
  if (codec_.wantsClose() || ((draining_ || worker_.draining) && goaway_sent_ && streams_.empty())) {
    transport_.shutdownWrite();
    close();
  }
}

void Http2ServerConnection::armTimer(Clock::time_point deadline) {
  if (closed_) return;
  // A wait that fires earlier re-evaluates then; only an earlier deadline needs the timer moved.
  if (timer_armed_ && timer_deadline_ <= deadline) return;
  timer_armed_ = true;
  timer_deadline_ = deadline;
  timer_.expires_at(deadline);
  std::weak_ptr<Http2ServerConnection> weak = weak_from_this();
  timer_.async_wait([weak](std::error_code ec) {
    auto self = weak.lock();
    if (ec || !self) return;  // aborted: a re-arm or close replaced this wait
    self->timer_armed_ = false;
    self->onTimer();
  });
}

std::optional<Http2ServerConnection::Clock::time_point> Http2ServerConnection::streamDeadline(
    const ActiveStream& s) const {
  if (s.timed_out_ || s.finished_) return std::nullopt;
  std::optional<Clock::time_point> deadline;
  auto consider = [&](Clock::time_point t) {
    if (!deadline || t < *deadline) deadline = t;
  };
  if (const auto idle = s.idleTimeout(); idle.count() > 0) consider(s.last_activity_ + idle);
  if (config_->request_timeout.count() > 0 && !s.request_complete_) {
    consider(s.info_.start + config_->request_timeout);
  }
  if (const auto max = s.maxStreamDuration(); max.count() > 0) consider(s.info_.start + max);
  return deadline;
}

void Http2ServerConnection::onTimer() {
  if (closed_) return;
  const auto now = Clock::now();
  if (close_deadline_ && now >= *close_deadline_) {
    close();
    return;
  }
  const HcmStats& stats = config_->stats;
  if (config_->max_connection_duration.count() > 0 && !goaway_sent_ &&
      now >= created_ + config_->max_connection_duration) {
    stats.downstream_cx_max_duration_reached.inc();
    drain();
  }
  if (header_stream_id_ != 0 && config_->request_headers_timeout.count() > 0 &&
      now >= header_started_ + config_->request_headers_timeout) {
    onRequestHeadersTimeout(header_stream_id_);
  }
  if (streams_.empty() && config_->idle_timeout.count() > 0 &&
      now - last_activity_ >= config_->idle_timeout && !close_deadline_) {
    stats.downstream_cx_idle_timeout.inc();
    drain();
    closeSoon();
  }
  // Streams: the ones due are answered (or reset); each one's own deadline only.
  std::vector<int32_t> due;
  for (auto& [id, s] : streams_) {
    if (auto deadline = streamDeadline(*s); deadline && *deadline <= now) due.push_back(id);
  }
  for (int32_t id : due) {
    if (ActiveStream* s = find(id)) onStreamTimeout(*s, now);
  }
  if (closed_) return;
  // The next deadline.
  std::optional<Clock::time_point> next = close_deadline_;
  auto consider = [&](Clock::time_point t) {
    if (!next || t < *next) next = t;
  };
  if (config_->max_connection_duration.count() > 0 && !goaway_sent_) {
    consider(created_ + config_->max_connection_duration);
  }
  if (header_stream_id_ != 0 && config_->request_headers_timeout.count() > 0) {
    consider(header_started_ + config_->request_headers_timeout);
  }
  if (streams_.empty() && config_->idle_timeout.count() > 0 && !close_deadline_) {
    consider(last_activity_ + config_->idle_timeout);
  }
  for (auto& [id, s] : streams_) {
    if (auto deadline = streamDeadline(*s)) consider(*deadline);
  }
  if (next) armTimer(std::max(*next, now + std::chrono::milliseconds(1)));
}

// Envoy's per-stream timeouts: request_timeout and max_stream_duration, then the stream idle timeout.
// Each answers 408 (gRPC: grpc-status) when the response has not started, else resets only this stream.
void Http2ServerConnection::onStreamTimeout(ActiveStream& s, Clock::time_point now) {
  const HcmStats& stats = config_->stats;
  s.timed_out_ = true;
  if (config_->request_timeout.count() > 0 && !s.request_complete_ &&
      now >= s.info_.start + config_->request_timeout) {
    stats.downstream_rq_timeout.inc();
    s.sendTimeoutReply("request timeout", "request_overall_timeout");
  } else if (const auto max = s.maxStreamDuration(); max.count() > 0 && now >= s.info_.start + max) {
    stats.downstream_rq_max_duration_reached.inc();
    s.sendTimeoutReply("downstream duration timeout", "max_duration_timeout");
  } else {
    stats.downstream_rq_idle_timeout.inc();
    s.info_.setFlag(http::ResponseFlag::kStreamIdleTimeout);
    s.sendTimeoutReply("stream timeout", "stream_idle_timeout");
  }
  scheduleFlush();
}

// The header block never completed: there is no filter chain yet, so the codec answers 408 itself.
void Http2ServerConnection::onRequestHeadersTimeout(int32_t stream_id) {
  header_stream_id_ = 0;
  config_->stats.downstream_rq_header_timeout.inc();
  static constexpr std::string_view kBody = "request header timeout";
  http::HeaderMap headers;
  headers.add(http::headers::kStatus, "408");
  headers.add(http::headers::kContentLength, std::to_string(kBody.size()));
  headers.add(http::headers::kContentType, "text/plain");
  if (config_->server_header != ConnectionManagerConfig::ServerHeader::kPassThrough) {
    headers.add(http::headers::kServer, config_->server_name);
  }
  if (codec_.submitResponse(stream_id, headers, false)) {
    http::Buffer body(kBody);
    codec_.sendData(stream_id, body, true);
    codec_.resetStreamAfterEnd(stream_id, http2::kNoError);
  } else {
    codec_.resetStream(stream_id, http2::kCancel);
  }
  scheduleFlush();
}

void Http2ServerConnection::closeSoon() {
  if (closed_ || close_deadline_) return;
  close_deadline_ = Clock::now() + std::chrono::seconds(1);
  armTimer(*close_deadline_);
}

void Http2ServerConnection::drain() {
  if (closed_) return;
  draining_ = true;
  if (!goaway_sent_) {
    goaway_sent_ = true;
    config_->stats.downstream_cx_drain_close.inc();
    codec_.goAway(http2::kNoError, false);
  }
  scheduleFlush();
}

void Http2ServerConnection::close() {
  if (closed_) return;
  closed_ = true;
  auto self = shared_from_this();
  // Streams still open end as resets (access-logged with their flags).
  std::vector<int32_t> ids;
  for (auto& [id, s] : streams_) ids.push_back(id);
  for (int32_t id : ids) onStreamClose(id, http2::kCancel, false);
  timer_.cancel();
  transport_.close();
  config_->stats.downstream_cx_destroy_local.inc();
}

}  // namespace skiff::server
