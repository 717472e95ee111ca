// One attempt of a routed request: an HTTP/1.1 exchange on one pooled upstream connection.
#pragma once

#include <asio/io_context.hpp>
#include <memory>
#include <string>
#include <string_view>

#include "skiff/http/filter.h"
#include "skiff/http/http1_parser.h"
#include "skiff/upstream/conn_pool.h"

namespace skiff::router {

enum class ResetReason {
  kConnectFailure,         // could not connect (UF)
  kConnectTimeout,         // connect timed out (UF)
  kOverflow,               // circuit breaker (UO)
  kConnectionTermination,  // the upstream closed or reset the connection (UC)
  kProtocolError,          // the upstream sent something we cannot parse (UPE)
  kRefusedStream,          // HTTP/2: the server refused the stream (REFUSED_STREAM, GOAWAY); never processed
};

class UpstreamRequest : public std::enable_shared_from_this<UpstreamRequest> {
 public:
  class Owner {
   public:
    virtual ~Owner() = default;
    virtual void onUpstreamConnected(const upstream::UpstreamConnection& conn) = 0;
    virtual void onUpstreamHeaders(std::unique_ptr<http::HeaderMap> headers, bool end_stream) = 0;
    virtual void onUpstreamData(http::Buffer& data, bool end_stream) = 0;
    virtual void onUpstreamTrailers(std::unique_ptr<http::HeaderMap> trailers) = 0;
    // `no_response_on_reused` when a kept-alive connection died before any response byte: safe to replay.
    virtual void onUpstreamReset(ResetReason reason, std::string_view details,
                                 bool no_response_on_reused) = 0;
    // The request body could not be written fast enough (true) / drained again (false).
    virtual void onUpstreamWriteBackedUp(bool backed_up) = 0;
  };

  UpstreamRequest(Owner& owner, asio::io_context& io, upstream::ConnPool& pool, upstream::HostSharedPtr host,
                  bool head_request, uint32_t buffer_limit, upstream::UpstreamSource source = {});
  ~UpstreamRequest();

  // Sends the head (and `body`, if any); `end_stream` when the request is complete.
  void start(const http::HeaderMap& headers, const http::Buffer* body, bool end_stream);
  void sendData(const http::Buffer& data, bool end_stream);
  void sendTrailers(const http::HeaderMap& trailers);
  // Stops or resumes reading the response (downstream flow control).
  void pauseReading(bool paused);
  // The owner is done with this attempt: no more callbacks; the connection is closed unless it is idle.
  void cancel();

  const upstream::HostSharedPtr& host() const { return host_; }
  bool responseStarted() const { return response_started_; }
  std::chrono::steady_clock::time_point startTime() const { return start_time_; }

 private:
  void onPoolReady(upstream::UpstreamConnectionPtr conn);
  void flushWrites();
  void doRead();
  void onRead(std::error_code ec, size_t n);
  bool processResponse();
  void finishResponse();
  void fail(ResetReason reason, std::string_view details);
  void closeConnection();

  Owner* owner_;
  asio::io_context& io_;
  upstream::ConnPool& pool_;
  upstream::HostSharedPtr host_;
  upstream::UpstreamSource source_;  // pool key part: never share connections across sources
  upstream::UpstreamConnectionPtr conn_;
  upstream::ConnPool::PendingPtr pending_;
  const bool head_request_;
  const uint32_t buffer_limit_;
  std::chrono::steady_clock::time_point start_time_ = std::chrono::steady_clock::now();

  // request side
  bool chunked_request_ = false;
  bool request_complete_ = false;  // everything (incl. end) handed to us
  std::string out_;                // bytes waiting to be written
  std::string writing_;            // bytes in the current async_write
  bool write_in_flight_ = false;
  bool write_backed_up_ = false;

  // response side
  std::string in_;  // storage; bytes [in_start_, in_end_) are received and not yet parsed
  size_t in_start_ = 0;
  size_t in_end_ = 0;
  http1::ResponseParser parser_;
  std::unique_ptr<http1::BodyDecoder> body_;
  bool head_done_ = false;
  bool response_started_ = false;
  bool response_complete_ = false;
  bool read_in_flight_ = false;
  bool read_paused_ = false;
  bool reused_ = false;
  bool finished_ = false;
};

}  // namespace skiff::router
