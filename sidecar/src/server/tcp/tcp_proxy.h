// One downstream TCP connection proxied byte-for-byte to one upstream connection (tcp_proxy).
#pragma once

#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "server/listener_stats.h"
#include "server/tcp/tcp_proxy_config.h"
#include "server/worker_context.h"
#include "skiff/http/stream_info.h"
#include "skiff/network/connection_info.h"
#include "skiff/network/transport.h"
#include "skiff/upstream/thread_local_cluster.h"

namespace skiff::server {

// Lifecycle: start() picks the cluster and a host (ORIGINAL_DST: the connection's original destination),
// connects (connect timeout from the cluster, up to max_connect_attempts), then copies bytes both ways.
// A FIN from one side is passed on as a FIN (shutdown(SHUT_WR)) once its buffered bytes are written, and
// the other direction keeps flowing; the session ends when both directions have ended, on an error or
// reset of either side, on idle_timeout / max_downstream_connection_duration, or on close(). Then the
// access log is written and both sockets are closed.
// Flow control: each direction has one buffer, 16 KiB at first and grown (up to min(limit, 64 KiB)) when a
// read fills it; reading a side stops while the other side's pending bytes fill it (limits: the cluster's
// per_connection_buffer_limit_bytes towards upstream, 1 MiB towards downstream).
// Failures before the upstream connects close the downstream with response flags NC (no cluster),
// UO (max_connections), UH (no host) or UF (connect failed; upstream_transport_failure_reason says why).
class TcpProxySession : public DownstreamConnection, public std::enable_shared_from_this<TcpProxySession> {
 public:
  TcpProxySession(WorkerContext& worker, network::Transport downstream, TcpProxyConfigSharedPtr config,
                  const ListenerStats& listener_stats, network::ConnectionInfoConstSharedPtr info);
  ~TcpProxySession() override;
  TcpProxySession(const TcpProxySession&) = delete;
  TcpProxySession& operator=(const TcpProxySession&) = delete;

  // Must be called once, on the worker, with the session owned by a shared_ptr.
  void start();
  // TCP has no request boundary to finish at: a draining session keeps flowing until the listener's drain
  // time ends and the worker calls close().
  void drain() override {}
  void close() override { terminate("closed by proxy"); }

  const http::StreamInfo& streamInfo() const { return info_; }

 private:
  // Bytes read from one side, waiting to be written to the other: [start, end) of a fixed buffer.
  struct Direction {
    std::unique_ptr<char[]> buffer;
    size_t capacity = 0;
    size_t max_capacity = 0;  // min(limit, 64 KiB)
    size_t limit = 0;         // connection buffer limit of the writing side
    size_t start = 0, end = 0;
    bool reading = false, writing = false;
    bool eof = false;       // the reading side sent FIN
    bool shut = false;      // FIN passed on to the writing side
    bool paused = false;    // reading stopped because the buffer is full
    bool grow = false;      // a read filled the buffer: enlarge it before the next read
    bool upstream = false;  // true: downstream -> upstream
  };

  void connectAttempt();
  void onConnectResult(std::error_code ec);
  void onConnectFailure(const std::string& reason, bool timeout);
  void onConnected();
  void startUpstreamTls();
  void pump(Direction& dir);
  void onRead(Direction& dir, std::error_code ec, size_t n);
  void onWrite(Direction& dir, std::error_code ec, size_t n);
  void grow(Direction& dir);
  void armIdleTimer(std::chrono::milliseconds after);
  void onIdleTimer();
  void fail(http::ResponseFlag flag, std::string details);
  void terminate(std::string_view details);
  void releaseUpstream();
  network::Transport& readSide(const Direction& dir) { return dir.upstream ? downstream_ : upstream_; }
  network::Transport& writeSide(const Direction& dir) { return dir.upstream ? upstream_ : downstream_; }

  WorkerContext& worker_;
  network::Transport downstream_;  // plain, or TLS terminated by the filter chain
  network::Transport upstream_;    // plain, or TLS per the cluster's transport socket
  TcpProxyConfigSharedPtr config_;
  ListenerStats::ConnectionScope listener_scope_;
  network::ConnectionInfoConstSharedPtr connection_;
  http::StreamInfo info_;

  std::string cluster_name_;
  upstream::ClusterInfoConstSharedPtr cluster_;  // keeps stats and limits alive across cluster updates
  upstream::HostSharedPtr host_;
  upstream::HostSharedPtr previous_host_;
  uint32_t attempts_ = 0;
  bool holds_cx_resource_ = false;
  bool upstream_counted_ = false;  // cluster upstream_cx_active was incremented
  bool connected_ = false;
  bool closed_ = false;
  std::chrono::steady_clock::time_point upstream_start_;

  Direction down_to_up_, up_to_down_;
  asio::steady_timer connect_timer_;
  asio::steady_timer idle_timer_;
  asio::steady_timer duration_timer_;
  std::chrono::steady_clock::time_point last_activity_;
};

}  // namespace skiff::server
