// One attempt of a routed request, whatever the upstream protocol: GenericUpstream is what the router
// drives; HTTP/1.1 attempts wrap UpstreamRequest, HTTP/2 attempts are streams on a multiplexed connection.
#pragma once

#include <chrono>
#include <functional>
#include <memory>

#include "filters/http/router/upstream_request.h"
#include "skiff/upstream/h2_conn_pool.h"

namespace skiff::router {

class GenericUpstream {
 public:
  virtual ~GenericUpstream() = default;
  virtual void start(const http::HeaderMap& headers, const http::Buffer* body, bool end_stream) = 0;
  virtual void sendData(const http::Buffer& data, bool end_stream) = 0;
  virtual void sendTrailers(const http::HeaderMap& trailers) = 0;
  virtual void pauseReading(bool paused) = 0;
  virtual void cancel() = 0;
  virtual const upstream::HostSharedPtr& host() const = 0;
  virtual bool responseStarted() const = 0;
  virtual std::chrono::steady_clock::time_point startTime() const = 0;
};
using GenericUpstreamPtr = std::shared_ptr<GenericUpstream>;

// An HTTP/2 stream on a pooled connection, with UpstreamRequest's Owner contract.
class H2UpstreamRequest : public GenericUpstream,
                          public upstream::H2StreamCallbacks,
                          public std::enable_shared_from_this<H2UpstreamRequest> {
 public:
  H2UpstreamRequest(UpstreamRequest::Owner& owner, asio::io_context& io, upstream::H2ConnPool& pool,
                    upstream::HostSharedPtr host, uint32_t buffer_limit, upstream::UpstreamSource source);
  ~H2UpstreamRequest() override;

  void start(const http::HeaderMap& headers, const http::Buffer* body, bool end_stream) override;
  void sendData(const http::Buffer& data, bool end_stream) override;
  void sendTrailers(const http::HeaderMap& trailers) override;
  void pauseReading(bool paused) override;
  void cancel() override;
  const upstream::HostSharedPtr& host() const override { return host_; }
  bool responseStarted() const override { return response_started_; }
  std::chrono::steady_clock::time_point startTime() const override { return start_time_; }

  // H2StreamCallbacks
  void onH2Headers(std::unique_ptr<http::HeaderMap> headers, bool end_stream) override;
  void onH2Data(http::Buffer& data, bool end_stream) override;
  void onH2Trailers(std::unique_ptr<http::HeaderMap> trailers) override;
  void onH2Reset(uint32_t error_code, bool refused, std::string_view details) override;
  void onH2Writable() override;

 private:
  void acquire();
  void onConnection(upstream::H2ConnectionSharedPtr conn);
  // Resets the stream unless its END_STREAM is already queued (a half-open stream would hold a slot).
  void releaseStream();
  void fail(ResetReason reason, std::string_view details);

  UpstreamRequest::Owner* owner_;
  asio::io_context& io_;
  upstream::H2ConnPool& pool_;
  upstream::HostSharedPtr host_;
  upstream::UpstreamSource source_;
  const uint32_t buffer_limit_;
  const std::chrono::steady_clock::time_point start_time_ = std::chrono::steady_clock::now();
  upstream::H2ConnectionSharedPtr conn_;
  int32_t stream_id_ = -1;
  std::function<void()> cancel_wait_;
  // What arrives before the stream exists.
  std::unique_ptr<http::HeaderMap> headers_;
  http::Buffer body_;
  std::unique_ptr<http::HeaderMap> trailers_;
  bool request_end_ = false;
  bool end_queued_ = false;  // END_STREAM handed to the connection
  int acquire_attempts_ = 0;
  bool response_started_ = false;
  bool done_ = false;
  bool backed_up_ = false;
};

// The attempt for `cluster`: HTTP/2 when the cluster's protocol options say so
// (use_downstream_protocol_config: when the downstream request is HTTP/2), HTTP/1.1 otherwise.
GenericUpstreamPtr makeUpstream(UpstreamRequest::Owner& owner, asio::io_context& io,
                                upstream::ConnPoolMap& h1_pools,
                                const upstream::ClusterInfoConstSharedPtr& cluster,
                                upstream::HostSharedPtr host, bool head_request, uint32_t buffer_limit,
                                upstream::UpstreamSource source, std::string_view downstream_protocol);

}  // namespace skiff::router
