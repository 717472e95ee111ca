// A downstream HTTP/2 connection (h2c prior knowledge, or h2 after TLS ALPN): each stream runs through the
// same FilterManager as an HTTP/1.1 request.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "server/http/active_stream_base.h"
#include "server/http/connection_manager_config.h"
#include "server/http/filter_manager.h"
#include "server/listener_stats.h"
#include "server/worker_context.h"
#include "skiff/http/http2_codec.h"
#include "skiff/network/connection_info.h"
#include "skiff/network/transport.h"

namespace skiff::server {

class Http2ServerConnection : public std::enable_shared_from_this<Http2ServerConnection>,
                              public DownstreamConnection,
                              public http2::Codec::Callbacks {
 public:
  Http2ServerConnection(WorkerContext& worker, network::Transport transport,
                        ConnectionManagerConfigSharedPtr config, const ListenerStats& listener_stats,
                        network::ConnectionInfoConstSharedPtr info);
  ~Http2ServerConnection() override;

  void start();
  // GOAWAY (last processed stream): streams in flight finish, new ones are refused; closes when idle.
  void drain() override;
  void close() override;

  // http2::Codec::Callbacks
  bool onNewStream(int32_t stream_id) override;
  void onHeaders(int32_t stream_id, std::unique_ptr<http::HeaderMap> headers, bool end_stream) override;
  void onData(int32_t stream_id, http::Buffer& data, bool end_stream) override;
  void onTrailers(int32_t stream_id, std::unique_ptr<http::HeaderMap> trailers) override;
  void onStreamClose(int32_t stream_id, uint32_t error_code, bool remote) override;

 private:
  class ActiveStream;
  using Clock = std::chrono::steady_clock;

  void doRead();
  void onRead(std::error_code ec, size_t n);
  void scheduleFlush();
  void flush();
  void maybeClose();
  void onWritable();
  ActiveStream* find(int32_t id);

  // One timer serves every timeout of the connection and its streams (as the HTTP/1 connection's):
  // activity only records a timestamp, the timer is moved only to an earlier deadline, and when it fires
  // everything due is handled and the next deadline is computed.
  void armTimer(Clock::time_point deadline);
  void onTimer();
  std::optional<Clock::time_point> streamDeadline(const ActiveStream& s) const;
  void onStreamTimeout(ActiveStream& s, Clock::time_point now);
  void onRequestHeadersTimeout(int32_t stream_id);
  // GOAWAY now; the socket closes once it is written, or after Envoy's delayed_close_timeout (1 s) when the
  // peer does not read it.
  void closeSoon();

  WorkerContext& worker_;
  network::Transport transport_;
  ConnectionManagerConfigSharedPtr config_;
  ListenerStats::ConnectionScope listener_scope_;
  const network::ConnectionInfoConstSharedPtr info_;
  const uint64_t id_;
  const Clock::time_point created_ = Clock::now();
  std::string local_address_;
  std::string remote_address_;
  http2::Codec codec_;

  std::unordered_map<int32_t, std::unique_ptr<ActiveStream>> streams_;
  std::vector<std::unique_ptr<ActiveStream>> finished_streams_;  // deleted after the callback unwinds

  std::string in_;
  bool read_in_flight_ = false;
  std::string out_;
  std::string writing_;
  http2::Codec::OutboundFrames writing_frames_;  // frames in writing_ (and before), released once written
  bool write_in_flight_ = false;
  bool flush_scheduled_ = false;
  bool closed_ = false;
  bool draining_ = false;
  bool goaway_sent_ = false;
  uint32_t requests_ = 0;
  // The request header block being received (HEADERS without END_HEADERS yet): request_headers_timeout.
  int32_t header_stream_id_ = 0;
  Clock::time_point header_started_;
  std::optional<Clock::time_point> close_deadline_;
  asio::steady_timer timer_;
  bool timer_armed_ = false;
  Clock::time_point timer_deadline_;
  Clock::time_point last_activity_ = Clock::now();
};

}  // namespace skiff::server
