// A downstream HTTP/2 connection (h2c prior knowledge, or h2 after TLS ALPN): each stream runs through the
// same FilterManager as an HTTP/1.1 request.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

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

  void doRead();
  void onRead(std::error_code ec, size_t n);
  void scheduleFlush();
  void flush();
  void maybeClose();
  void onWritable();
  void armIdleTimer();
  ActiveStream* find(int32_t id);

  WorkerContext& worker_;
  network::Transport transport_;
  ConnectionManagerConfigSharedPtr config_;
  ListenerStats::ConnectionScope listener_scope_;
  const network::ConnectionInfoConstSharedPtr info_;
  const uint64_t id_;
  const std::chrono::steady_clock::time_point created_ = std::chrono::steady_clock::now();
  std::string local_address_;
  std::string remote_address_;
  http2::Codec codec_;

  std::unordered_map<int32_t, std::unique_ptr<ActiveStream>> streams_;
  std::vector<std::unique_ptr<ActiveStream>> finished_streams_;  // deleted after the callback unwinds

  std::string in_;
  bool read_in_flight_ = false;
  std::string out_;
  std::string writing_;
  bool write_in_flight_ = false;
  bool flush_scheduled_ = false;
  bool closed_ = false;
  bool draining_ = false;
  bool goaway_sent_ = false;
  asio::steady_timer idle_timer_;
  std::chrono::steady_clock::time_point last_activity_ = std::chrono::steady_clock::now();
};

}  // namespace skiff::server
