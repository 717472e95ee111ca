// H2UpstreamRequest (an upstream HTTP/2 stream for one router attempt) and the protocol choice per attempt.
#include "filters/http/router/h2_upstream_request.h"

#include <asio/post.hpp>

namespace skiff::router {

namespace {

// UpstreamRequest behind the GenericUpstream interface.
class Http1Upstream : public GenericUpstream {
 public:
  explicit Http1Upstream(std::shared_ptr<UpstreamRequest> r) : r_(std::move(r)) {}
  void start(const http::HeaderMap& h, const http::Buffer* body, bool end) override {
    r_->start(h, body, end);
  }
  void sendData(const http::Buffer& data, bool end) override { r_->sendData(data, end); }
  void sendTrailers(const http::HeaderMap& t) override { r_->sendTrailers(t); }
  void pauseReading(bool paused) override { r_->pauseReading(paused); }
  void cancel() override { r_->cancel(); }
  const upstream::HostSharedPtr& host() const override { return r_->host(); }
  bool responseStarted() const override { return r_->responseStarted(); }
  std::chrono::steady_clock::time_point startTime() const override { return r_->startTime(); }

 private:
  std::shared_ptr<UpstreamRequest> r_;
};

}  // namespace

GenericUpstreamPtr makeUpstream(UpstreamRequest::Owner& owner, asio::io_context& io,
                                upstream::ConnPoolMap& h1_pools,
                                const upstream::ClusterInfoConstSharedPtr& cluster,
                                upstream::HostSharedPtr host, bool head_request, uint32_t buffer_limit,
                                upstream::UpstreamSource source, std::string_view downstream_protocol) {
  auto& h2_pool = upstream::H2ConnPool::forCluster(io, cluster);
  const auto protocol = h2_pool.protocol().protocol;
  const bool h2 =
      protocol == upstream::UpstreamHttpProtocol::kHttp2 ||
      (protocol == upstream::UpstreamHttpProtocol::kUseDownstream && downstream_protocol == "HTTP/2");
  if (h2) {
    return std::make_shared<H2UpstreamRequest>(owner, io, h2_pool, std::move(host), buffer_limit,
                                               std::move(source));
  }
  auto& pool = h1_pools.get(cluster);
  return std::make_shared<Http1Upstream>(std::make_shared<UpstreamRequest>(
      owner, io, pool, std::move(host), head_request, buffer_limit, std::move(source)));
}

H2UpstreamRequest::H2UpstreamRequest(UpstreamRequest::Owner& owner, asio::io_context& io,
                                     upstream::H2ConnPool& pool, upstream::HostSharedPtr host,
                                     uint32_t buffer_limit, upstream::UpstreamSource source)
    : owner_(&owner),
      io_(io),
      pool_(pool),
      host_(std::move(host)),
      source_(std::move(source)),
      buffer_limit_(buffer_limit) {}

H2UpstreamRequest::~H2UpstreamRequest() {
  if (cancel_wait_) cancel_wait_();
  releaseStream();
}

void H2UpstreamRequest::releaseStream() {
  if (!conn_ || stream_id_ <= 0) return;
  // The response may end before the request (the router then drops this attempt): a stream whose
  // END_STREAM was never queued would stay half-open on the connection forever, so it is reset.
  if (!end_queued_) {
    conn_->cancelStream(stream_id_);
  } else {
    conn_->detachStream(stream_id_);
  }
  stream_id_ = -1;
}

void H2UpstreamRequest::start(const http::HeaderMap& headers, const http::Buffer* body, bool end_stream) {
  headers_ = std::make_unique<http::HeaderMap>(headers);
  if (body != nullptr) body_ = *body;
  request_end_ = end_stream;
  acquire();
}

void H2UpstreamRequest::acquire() {
  ++acquire_attempts_;
  std::weak_ptr<H2UpstreamRequest> weak = weak_from_this();
  auto conn = pool_.acquire(
      host_, source_,
      [weak](upstream::H2ConnectionSharedPtr c, upstream::PoolFailure failure, std::string_view reason) {
        auto self = weak.lock();
        if (!self || self->done_) return;
        self->cancel_wait_ = nullptr;
        if (failure == upstream::PoolFailure::kNone) {
          self->onConnection(std::move(c));
          return;
        }
        self->fail(failure == upstream::PoolFailure::kOverflow  ? ResetReason::kOverflow
                   : failure == upstream::PoolFailure::kTimeout ? ResetReason::kConnectTimeout
                                                                : ResetReason::kConnectFailure,
                   reason);
      },
      &cancel_wait_);
  if (conn) {
    // Report asynchronously so the owner is never re-entered from start().
    asio::post(io_, [weak, conn] {
      auto self = weak.lock();
      if (self && !self->done_) self->onConnection(conn);
    });
  }
}

void H2UpstreamRequest::onConnection(upstream::H2ConnectionSharedPtr conn) {
  // Handed over with room, but a burst of other requests may have taken the last slot since (the hand-over
  // is posted): ask the pool again (wait for a slot or a new connection) instead of failing.
  constexpr int kMaxAcquireAttempts = 16;
  if (!conn->canOpen()) {
    if (acquire_attempts_ < kMaxAcquireAttempts) {
      acquire();
      return;
    }
    fail(ResetReason::kConnectionTermination, "refused_stream_reset");
    return;
  }
  conn_ = std::move(conn);
  if (owner_) owner_->onUpstreamConnected(conn_->connection());
  if (done_ || !owner_) return;
  // Trailers only end the stream after the body, so a request with trailers never ends on its headers.
  const bool headers_end = request_end_ && body_.empty() && !trailers_;
  stream_id_ = conn_->newStream(*headers_, headers_end, this);
  if (stream_id_ < 0) {
    if (acquire_attempts_ < kMaxAcquireAttempts) {
      acquire();
      return;
    }
    fail(ResetReason::kConnectionTermination, "refused_stream_reset");
    return;
  }
  headers_.reset();
  end_queued_ = headers_end;
  if (!headers_end) {
    if (!body_.empty() || (request_end_ && !trailers_))
      conn_->sendData(stream_id_, body_, request_end_ && !trailers_);
    if (trailers_) conn_->sendTrailers(stream_id_, *trailers_);
    end_queued_ = request_end_;
  }
  body_.clear();
  trailers_.reset();
}

void H2UpstreamRequest::sendData(const http::Buffer& data, bool end_stream) {
  if (done_) return;
  request_end_ = end_stream;
  if (stream_id_ < 0) {
    body_.append(data);
    return;
  }
  http::Buffer copy(data);
  conn_->sendData(stream_id_, copy, end_stream);
  if (end_stream) end_queued_ = true;
  if (!backed_up_ && conn_->pendingBytes(stream_id_) > buffer_limit_) {
    backed_up_ = true;
    if (owner_) owner_->onUpstreamWriteBackedUp(true);
  }
}

void H2UpstreamRequest::sendTrailers(const http::HeaderMap& trailers) {
  if (done_) return;
  request_end_ = true;
  if (stream_id_ < 0) {
    trailers_ = std::make_unique<http::HeaderMap>(trailers);
    return;
  }
  conn_->sendTrailers(stream_id_, trailers);
  end_queued_ = true;
}

void H2UpstreamRequest::pauseReading(bool paused) {
  if (conn_ && stream_id_ > 0 && !done_) conn_->readDisable(stream_id_, paused);
}

void H2UpstreamRequest::cancel() {
  owner_ = nullptr;
  if (cancel_wait_) {
    cancel_wait_();
    cancel_wait_ = nullptr;
  }
  releaseStream();
  done_ = true;
}

void H2UpstreamRequest::onH2Headers(std::unique_ptr<http::HeaderMap> headers, bool end_stream) {
  response_started_ = true;
  if (end_stream) done_ = true;
  auto self = shared_from_this();
  if (owner_) owner_->onUpstreamHeaders(std::move(headers), end_stream);
}

void H2UpstreamRequest::onH2Data(http::Buffer& data, bool end_stream) {
  if (end_stream) done_ = true;
  auto self = shared_from_this();
  if (owner_) owner_->onUpstreamData(data, end_stream);
}

void H2UpstreamRequest::onH2Trailers(std::unique_ptr<http::HeaderMap> trailers) {
  done_ = true;
  auto self = shared_from_this();
  if (owner_) owner_->onUpstreamTrailers(std::move(trailers));
}

void H2UpstreamRequest::onH2Reset(uint32_t, bool refused, std::string_view details) {
  if (done_) return;
  fail(refused ? ResetReason::kRefusedStream : ResetReason::kConnectionTermination, details);
}

void H2UpstreamRequest::onH2Writable() {
  if (backed_up_) {
    backed_up_ = false;
    if (owner_) owner_->onUpstreamWriteBackedUp(false);
  }
}

void H2UpstreamRequest::fail(ResetReason reason, std::string_view details) {
  if (done_) return;
  done_ = true;
  auto self = shared_from_this();
  if (owner_) owner_->onUpstreamReset(reason, details, false);
}

}  // namespace skiff::router
