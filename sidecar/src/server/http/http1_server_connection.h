// A downstream HTTP/1.1 connection: parses requests, runs each through the filter chain, writes responses.
#pragma once

#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "server/http/active_stream_base.h"
#include "server/http/connection_manager_config.h"
#include "server/http/filter_manager.h"
#include "server/listener_stats.h"
#include "server/worker_context.h"
#include "skiff/http/http1_parser.h"
#include "skiff/network/connection_info.h"
#include "skiff/network/transport.h"

namespace skiff::server {

class Http1ServerConnection : public std::enable_shared_from_this<Http1ServerConnection>,
                              public DownstreamConnection,
                              public FilterManagerSink {
 public:
  Http1ServerConnection(WorkerContext& worker, network::Transport transport,
                        ConnectionManagerConfigSharedPtr config, const ListenerStats& listener_stats,
                        network::ConnectionInfoConstSharedPtr info);
  ~Http1ServerConnection() override;

  void start();
  void drain() override;
  void close() override;

  // FilterManagerSink
  void writeHeaders(http::HeaderMap& headers, bool end_stream) override;
  void writeData(http::Buffer& data, bool end_stream) override;
  void writeTrailers(http::HeaderMap& trailers) override;

 private:
  class ActiveStream;
  enum class State { kHead, kBody, kAwaitResponse, kClosed };

  void doRead();
  void onRead(std::error_code ec, size_t n);
  void processInput();
  bool processHead();
  bool processBody();
  void newStream();
  void protocolError(const http1::ParseError& error);
  void onRequestHeadersTimeout();
  void replyWithoutStream(uint32_t status, std::string_view body, std::string_view details,
                          std::optional<http::ResponseFlag> flag);
  void onResponseComplete();
  void finishStream(bool reset);
  void write(std::string_view bytes);
  void scheduleFlush();
  void flush();
  void closeAfterFlush();
  void armTimer();
  void onTimer();
  std::optional<std::chrono::steady_clock::time_point> nextDeadline() const;
  std::chrono::milliseconds streamIdleTimeout() const;
  void setReadPaused(bool paused);
  bool backedUp() const { return out_.size() + writing_.size() > config_->buffer_limit; }

  WorkerContext& worker_;
  network::Transport transport_;  // plain TCP or TLS
  ConnectionManagerConfigSharedPtr config_;
  ListenerStats::ConnectionScope listener_scope_;
  const network::ConnectionInfoConstSharedPtr info_;  // never null
  const uint64_t id_;
  const std::chrono::steady_clock::time_point created_ = std::chrono::steady_clock::now();
  std::string local_address_;
  std::string remote_address_;

  State state_ = State::kHead;
  std::string_view pending() const { return std::string_view(in_.data() + in_start_, in_end_ - in_start_); }

  std::string in_;  // storage; bytes [in_start_, in_end_) are received and not yet parsed
  size_t in_start_ = 0;
  size_t in_end_ = 0;
  http1::RequestParser parser_;
  std::unique_ptr<http1::BodyDecoder> body_;
  std::unique_ptr<ActiveStream> stream_;
  std::vector<std::unique_ptr<ActiveStream>> finished_streams_;  // deleted after the current callback returns
  uint32_t requests_ = 0;
  int version_minor_ = 1;
  bool keep_alive_ = true;
  bool drain_requested_ = false;  // drain() was called: the next response closes the connection
  // Listener drain of an idle connection: closed then unless a request arrived (HCM drain_timeout).
  std::optional<std::chrono::steady_clock::time_point> drain_deadline_;
  // First byte of the request whose headers are being received (request_headers_timeout).
  std::optional<std::chrono::steady_clock::time_point> head_started_;
  bool chunked_response_ = false;
  bool close_delimited_response_ = false;

  std::string out_;
  std::string writing_;
  bool write_in_flight_ = false;
  bool flush_scheduled_ = false;
  bool close_after_flush_ = false;
  std::vector<std::function<void()>> writable_callbacks_;

  bool read_in_flight_ = false;
  bool read_paused_ = false;
  std::shared_ptr<Http1ServerConnection> paused_hold_;  // set while reading is paused; see setReadPaused
  bool process_scheduled_ = false;
  asio::steady_timer idle_timer_;
  bool timer_armed_ = false;
  std::chrono::steady_clock::time_point timer_deadline_;
  std::chrono::steady_clock::time_point last_activity_ = std::chrono::steady_clock::now();
};

}  // namespace skiff::server
