// One downstream TCP connection proxied byte-for-byte to one upstream connection (tcp_proxy).
#pragma once

#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "filters/istio/tcp_exchange.h"
#include "filters/network/network_filter.h"
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
// Network filters (set before start()) see each direction's bytes before they are written on, and may
// rewrite, hold or close (filters::network::Filter); without them the byte path is unchanged. With them,
// each direction reads into a separate chunk and the filtered bytes are queued for the write buffer; the
// upstream connect waits until the downstream chain has gone through every filter (a kStop from
// onNewConnection or onDownstreamData holds it, and the downstream is read meanwhile, up to the listener's
// buffer limit), and continueReading() resumes a stopped chain at once.
class TcpProxySession : public DownstreamConnection,
                        public std::enable_shared_from_this<TcpProxySession>,
                        private filters::network::FilterCallbacks {
 public:
  TcpProxySession(WorkerContext& worker, network::Transport downstream, TcpProxyConfigSharedPtr config,
                  const ListenerStats& listener_stats, network::ConnectionInfoConstSharedPtr info);
  ~TcpProxySession() override;
  TcpProxySession(const TcpProxySession&) = delete;
  TcpProxySession& operator=(const TcpProxySession&) = delete;

  // Before start(): one filter per factory (in chain order; upstream data runs through them in reverse).
  void setNetworkFilters(const std::vector<filters::network::FilterFactorySharedPtr>& factories);
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
    bool eof = false;                   // the reading side sent FIN
    bool shut = false;                  // FIN passed on to the writing side
    bool paused = false;                // reading stopped because the buffer is full
    bool grow = false;                  // a read filled the buffer: enlarge it before the next read
    bool upstream = false;              // true: downstream -> upstream
    std::string held;                   // network filters: bytes they held back (kStop)
    std::string overflow;               // network filters: filtered bytes waiting for room in `buffer`
    std::unique_ptr<char[]> filter_in;  // network filters: what is read goes here first
    bool blocked = false;               // network filters: the downstream chain is stopped (no FIN passed on)
  };

  // filters::network::FilterCallbacks
  asio::io_context& dispatcher() override { return worker_.io; }
  void closeConnection(std::string_view details) override;
  void continueReading(filters::network::Filter& filter) override;
  http::StreamInfo* mutableStreamInfo() override { return &info_; }
  void writeDownstream(std::string_view bytes) override;
  upstream::ThreadLocalClusterManager* clusterManager() override { return &worker_.clusters; }
  upstream::ConnPoolMap* connPools() override { return &worker_.pools; }
  // Runs the network filters over the `n` bytes just read (in `filter_in`); false when the session ended.
  bool filterRead(Direction& dir, size_t n);
  // The downstream chain from filter `from` (onNewConnection for those not started yet, then
  // onDownstreamData); past the last filter the bytes are queued and the upstream connect starts. False when
  // the session ended.
  bool runReadFilters(size_t from);
  // With network filters: a read into `filter_in` when the queued bytes leave room.
  void startFilteredRead(Direction& dir);
  void connectUpstream();
  // Moves filtered bytes into the direction's buffer (not while a write holds a pointer into it).
  void placeOverflow(Direction& dir);

  void connectAttempt();
  void onConnectResult(std::error_code ec);
  void onConnectFailure(const std::string& reason, bool timeout);
  void onConnected();
  void startUpstreamTls();
  void pump(Direction& dir);
  void onRead(Direction& dir, std::error_code ec, size_t n);
  void onWrite(Direction& dir, std::error_code ec, size_t n);
  // Puts the bytes the upstream exchange gave back before the `n` just read; returns the new count.
  size_t restoreExchangeBytes(Direction& dir, const std::string& restored, size_t n);
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
  std::vector<std::unique_ptr<filters::network::Filter>> filters_;
  // Istio's TCP metadata exchange on the upstream connection (the cluster's istio.metadata_exchange
  // filter, when TLS negotiated its ALPN): its preface goes first, the upstream's is stripped from reads.
  std::unique_ptr<filters::istio::UpstreamExchange> upstream_exchange_;
  std::optional<std::string> pending_close_;  // a filter asked to close (applied after its callback)
  size_t filters_started_ = 0;                // filters whose onNewConnection has run
  size_t stopped_at_ = SIZE_MAX;              // the filter that stopped the downstream chain
  bool upstream_requested_ = false;           // the chain got through: connecting (or connected)
  // While the downstream chain is stopped nothing may be pending on the loop for this session (e.g. the
  // downstream sent its FIN before the upstream connect): it keeps itself alive until the filter continues
  // or closes, or the session ends.
  std::shared_ptr<TcpProxySession> keep_alive_;
  asio::steady_timer connect_timer_;
  asio::steady_timer idle_timer_;
  asio::steady_timer duration_timer_;
  std::chrono::steady_clock::time_point last_activity_;
};

}  // namespace skiff::server
