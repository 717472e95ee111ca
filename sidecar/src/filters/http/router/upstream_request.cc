// UpstreamRequest: writes one request to a pooled HTTP/1.1 connection and parses the response back.
#include "filters/http/router/upstream_request.h"

#include <asio/post.hpp>
#include <asio/write.hpp>

#include "skiff/common/logging.h"
#include "skiff/http/http1_writer.h"

namespace skiff::router {

namespace {
constexpr size_t kReadChunk = 16 * 1024;
}

UpstreamRequest::UpstreamRequest(Owner& owner, asio::io_context& io, upstream::ConnPool& pool,
                                 upstream::HostSharedPtr host, bool head_request, uint32_t buffer_limit,
                                 upstream::UpstreamSource source)
    : owner_(&owner),
      io_(io),
      pool_(pool),
      host_(std::move(host)),
      source_(std::move(source)),
      head_request_(head_request),
      buffer_limit_(buffer_limit) {
  parser_.setRequestMethodHead(head_request_);
}

UpstreamRequest::~UpstreamRequest() {
  if (pending_) pending_->cancel();
}

void UpstreamRequest::start(const http::HeaderMap& headers, const http::Buffer* body, bool end_stream) {
  const std::string* te = headers.get(http::headers::kTransferEncoding);
  chunked_request_ = te != nullptr;
  http1::writeRequestHead(headers, out_);
  if (body != nullptr && !body->empty()) {
    if (chunked_request_) {
      http1::writeChunk(*body, out_);
    } else {
      out_.append(*body);
    }
  }
  if (end_stream) {
    request_complete_ = true;
    if (chunked_request_) http1::writeLastChunk(nullptr, out_);
  }

  std::weak_ptr<UpstreamRequest> weak = weak_from_this();
  auto acquired = pool_.acquire(
      host_,
      [weak](upstream::UpstreamConnectionPtr conn, upstream::PoolFailure failure, std::string_view reason) {
        auto self = weak.lock();
        if (!self) return;  // the connection (if any) goes back through its destructor
        self->pending_.reset();
        if (failure == upstream::PoolFailure::kNone) {
          self->onPoolReady(std::move(conn));
          return;
        }
        self->fail(failure == upstream::PoolFailure::kTimeout ? ResetReason::kConnectTimeout
                                                              : ResetReason::kConnectFailure,
                   reason);
      },
      source_);
  if (acquired.conn) {
    reused_ = true;
    onPoolReady(std::move(acquired.conn));
  } else if (acquired.failure != upstream::PoolFailure::kNone) {
    // Report asynchronously so the owner is never re-entered from its own call.
    asio::post(io_, [weak] {
      if (auto self = weak.lock()) self->fail(ResetReason::kOverflow, "overflow");
    });
  } else {
    pending_ = std::move(acquired.pending);
  }
}

void UpstreamRequest::onPoolReady(upstream::UpstreamConnectionPtr conn) {
  conn_ = std::move(conn);
  conn_->requests++;
  in_.swap(conn_->read_buffer);
  if (owner_) owner_->onUpstreamConnected(*conn_);
  if (!conn_) return;  // the owner cancelled us from the callback
  flushWrites();
  doRead();
}

void UpstreamRequest::sendData(const http::Buffer& data, bool end_stream) {
  if (finished_) return;
  if (!data.empty()) {
    if (chunked_request_) {
      http1::writeChunk(data, out_);
    } else {
      out_.append(data);
    }
  }
  if (end_stream) {
    request_complete_ = true;
    if (chunked_request_) http1::writeLastChunk(nullptr, out_);
  }
  if (!write_backed_up_ && out_.size() > buffer_limit_) {
    write_backed_up_ = true;
    if (owner_) owner_->onUpstreamWriteBackedUp(true);
  }
  flushWrites();
}

void UpstreamRequest::sendTrailers(const http::HeaderMap& trailers) {
  if (finished_) return;
  request_complete_ = true;
  if (chunked_request_) http1::writeLastChunk(&trailers, out_);
  flushWrites();
}

void UpstreamRequest::flushWrites() {
  if (!conn_ || write_in_flight_ || out_.empty()) return;
  write_in_flight_ = true;
  writing_.swap(out_);
  out_.clear();
  conn_->cluster->trafficStats().upstream_cx_tx_bytes_total.inc(writing_.size());
  auto self = shared_from_this();
  conn_->transport.asyncWrite(asio::buffer(writing_), [self](std::error_code ec, size_t) {
    self->write_in_flight_ = false;
    self->writing_.clear();
    if (ec) {
      if (!self->finished_) self->fail(ResetReason::kConnectionTermination, "upstream write failed");
      return;
    }
    if (self->write_backed_up_ && self->out_.size() <= self->buffer_limit_ / 2) {
      self->write_backed_up_ = false;
      if (self->owner_) self->owner_->onUpstreamWriteBackedUp(false);
    }
    self->flushWrites();
    if (self->response_complete_ && !self->write_in_flight_ && self->out_.empty()) self->finishResponse();
  });
}

void UpstreamRequest::doRead() {
  if (!conn_ || read_in_flight_ || read_paused_ || response_complete_) return;
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
  conn_->transport.asyncReadSome(asio::buffer(in_.data() + in_end_, kReadChunk),
                                 [self](std::error_code ec, size_t n) {
                                   self->read_in_flight_ = false;
                                   self->in_end_ += n;
                                   self->onRead(ec, n);
                                 });
}

void UpstreamRequest::onRead(std::error_code ec, size_t n) {
  if (finished_ || !conn_) return;
  if (ec) {
    if (ec == asio::error::eof && body_ && !body_->done() &&
        body_->finish() == http1::BodyDecoder::Status::kDone) {
      // Close-delimited body ends at EOF.
      http::Buffer empty;
      response_complete_ = true;
      if (owner_) owner_->onUpstreamData(empty, true);
      closeConnection();
      finished_ = true;
      return;
    }
    fail(ResetReason::kConnectionTermination,
         ec == asio::error::eof ? "upstream closed connection" : "upstream connection reset");
    return;
  }
  conn_->cluster->trafficStats().upstream_cx_rx_bytes_total.inc(n);
  if (processResponse()) doRead();
}

// Parses what has arrived; returns true when more input is wanted.
bool UpstreamRequest::processResponse() {
  while (!finished_) {
    std::string_view avail(in_.data() + in_start_, in_end_ - in_start_);
    if (!head_done_) {
      size_t consumed = 0;
      const auto st = parser_.feed(avail, &consumed);
      if (st == http1::ResponseParser::Status::kNeedMore) return true;
      if (st == http1::ResponseParser::Status::kError) {
        fail(ResetReason::kProtocolError, parser_.error().detail);
        return false;
      }
      in_start_ += consumed;
      const int code = parser_.statusCode();
      if (code >= 100 && code < 200) {
        // 100 Continue and other interim responses: the connection manager answered the client itself.
        parser_.reset();
        parser_.setRequestMethodHead(head_request_);
        continue;
      }
      head_done_ = true;
      response_started_ = true;
      auto headers = std::make_unique<http::HeaderMap>(std::move(parser_.headers()));
      const auto framing = parser_.framing();
      const bool no_body = framing == http1::Framing::kNone;
      if (!no_body) body_ = std::make_unique<http1::BodyDecoder>(framing, parser_.contentLength());
      if (no_body) response_complete_ = true;
      if (owner_) owner_->onUpstreamHeaders(std::move(headers), no_body);
      if (no_body) {
        finishResponse();
        return false;
      }
      continue;
    }
    if (avail.empty()) return true;
    size_t consumed = 0;
    http::Buffer chunk;
    const auto st = body_->decode(avail, &consumed, chunk);
    in_start_ += consumed;
    if (st == http1::BodyDecoder::Status::kError) {
      fail(ResetReason::kProtocolError, body_->error().detail);
      return false;
    }
    const bool done = st == http1::BodyDecoder::Status::kDone;
    if (done) {
      response_complete_ = true;
      if (!body_->trailers().empty()) {
        if (!chunk.empty() && owner_) owner_->onUpstreamData(chunk, false);
        if (owner_) owner_->onUpstreamTrailers(std::make_unique<http::HeaderMap>(body_->trailers()));
      } else if (owner_) {
        owner_->onUpstreamData(chunk, true);
      }
      finishResponse();
      return false;
    }
    if (!chunk.empty() && owner_) owner_->onUpstreamData(chunk, false);
    if (consumed == 0) return true;
    if (read_paused_) return false;
  }
  return false;
}

// The response is complete: give the connection back when the exchange ended cleanly.
void UpstreamRequest::finishResponse() {
  // The owner has had the whole response and may be gone by the time a request write still in flight
  // completes or fails: it gets no further callbacks.
  owner_ = nullptr;
  if (finished_) return;
  if (write_in_flight_) return;  // finish once the request bytes are out (flushWrites calls back)
  finished_ = true;
  const bool reusable = request_complete_ && out_.empty() && parser_.keepAlive() && in_start_ == in_end_;
  SKIFF_LOG(kPool, debug, "response complete on {}: {}", host_->address(),
            reusable ? "reusing connection" : "closing connection");
  if (conn_) {
    host_->stats().rq_success.fetch_add(1, std::memory_order_relaxed);
    in_.swap(conn_->read_buffer);
    pool_.release(std::move(conn_), reusable);
  }
}

void UpstreamRequest::pauseReading(bool paused) {
  read_paused_ = paused;
  if (!paused && conn_ && !response_complete_) {
    if (processResponse()) doRead();
  }
}

void UpstreamRequest::fail(ResetReason reason, std::string_view details) {
  if (finished_) return;
  finished_ = true;
  const bool no_response_on_reused =
      reused_ && !response_started_ && reason == ResetReason::kConnectionTermination;
  if (reason == ResetReason::kConnectionTermination && conn_) {
    conn_->cluster->trafficStats().upstream_cx_destroy_remote_with_active_rq.inc();
  }
  if (reason == ResetReason::kProtocolError && conn_) {
    conn_->cluster->trafficStats().upstream_cx_protocol_error.inc();
  }
  closeConnection();
  if (auto* owner = owner_) {
    owner_ = nullptr;
    owner->onUpstreamReset(reason, details, no_response_on_reused);
  }
}

void UpstreamRequest::closeConnection() {
  if (!conn_) return;
  std::error_code ignored;
  conn_->socket.close(ignored);
  pool_.release(std::move(conn_), false);
}

void UpstreamRequest::cancel() {
  owner_ = nullptr;
  if (pending_) {
    pending_->cancel();
    pending_.reset();
  }
  if (!finished_) {
    finished_ = true;
    if (conn_ && !response_complete_) {
      conn_->cluster->trafficStats().upstream_cx_destroy_local_with_active_rq.inc();
    }
    closeConnection();
  }
}

}  // namespace skiff::router
