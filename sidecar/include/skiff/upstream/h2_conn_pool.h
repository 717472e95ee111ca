// Per-worker HTTP/2 upstream connection pools: one pool per cluster, a few connections per host, each
// multiplexing many streams (up to the server's SETTINGS_MAX_CONCURRENT_STREAMS).
#pragma once

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "skiff/http/http2_codec.h"
#include "skiff/upstream/cluster_info.h"
#include "skiff/upstream/conn_pool.h"
#include "skiff/upstream/host.h"
#include "skiff/upstream/upstream_socket.h"

namespace skiff::upstream {

// Which protocol a cluster speaks upstream (Envoy: typed_extension_protocol_options
// envoy.extensions.upstreams.http.v3.HttpProtocolOptions, or the legacy http2_protocol_options).
enum class UpstreamHttpProtocol { kHttp1, kHttp2, kUseDownstream };
struct UpstreamProtocolConfig {
  UpstreamHttpProtocol protocol = UpstreamHttpProtocol::kHttp1;
  http2::Settings http2;
};
UpstreamProtocolConfig upstreamProtocolFor(const ClusterInfo& cluster);

// Events of one upstream stream.
class H2StreamCallbacks {
 public:
  virtual ~H2StreamCallbacks() = default;
  virtual void onH2Headers(std::unique_ptr<http::HeaderMap> headers, bool end_stream) = 0;
  virtual void onH2Data(http::Buffer& data, bool end_stream) = 0;
  virtual void onH2Trailers(std::unique_ptr<http::HeaderMap> trailers) = 0;
  // The stream ended abnormally. `refused`: the server never processed it (REFUSED_STREAM, or above the
  // GOAWAY's last stream id, or the connection failed before it was sent) — safe to retry.
  virtual void onH2Reset(uint32_t error_code, bool refused, std::string_view details) = 0;
  // The stream's send queue drained below the limit after being over it.
  virtual void onH2Writable() {}
};

class H2ConnPool;

class H2Connection : public std::enable_shared_from_this<H2Connection>, public http2::Codec::Callbacks {
 public:
  H2Connection(H2ConnPool& pool, asio::io_context& io, HostSharedPtr host, ClusterInfoConstSharedPtr cluster,
               const http2::Settings& settings, std::shared_ptr<const http2::Http2Stats> stats);
  ~H2Connection() override;

  // Opens a stream; -1 when the connection cannot take one now.
  int32_t newStream(const http::HeaderMap& headers, bool end_stream, H2StreamCallbacks* callbacks);
  void sendData(int32_t id, http::Buffer& data, bool end_stream);
  void sendTrailers(int32_t id, const http::HeaderMap& trailers);
  // Resets the stream (CANCEL) and forgets its callbacks.
  void cancelStream(int32_t id);
  // Forgets the stream's callbacks (their owner goes away) without resetting it.
  void detachStream(int32_t id) {
    if (auto it = streams_.find(id); it != streams_.end()) it->second = nullptr;
  }
  void readDisable(int32_t id, bool disabled);
  size_t pendingBytes(int32_t id) const { return codec_.streamPendingSendBytes(id); }
  bool ready() const { return connected_ && !closed_; }
  bool canOpen() const { return ready() && !retired_ && codec_.canOpenStream(); }
  bool closed() const { return closed_; }
  size_t activeStreams() const { return streams_.size(); }
  UpstreamConnection& connection() { return conn_; }
  const HostSharedPtr& host() const { return conn_.host; }
  void close(std::string_view reason);

  // http2::Codec::Callbacks
  void onHeaders(int32_t id, std::unique_ptr<http::HeaderMap> headers, bool end_stream) override;
  void onData(int32_t id, http::Buffer& data, bool end_stream) override;
  void onTrailers(int32_t id, std::unique_ptr<http::HeaderMap> trailers) override;
  void onStreamClose(int32_t id, uint32_t error_code, bool remote) override;
  void onGoAway(uint32_t last_stream_id, uint32_t error_code) override;

 private:
  friend class H2ConnPool;
  void connect(const UpstreamSource& source);
  void startTransport();  // TLS handshake when the cluster's transport_socket says so
  void onConnected();
  void doRead();
  void scheduleFlush();
  void flush();
  // No new streams (max_requests_per_connection or max_connection_duration reached): the pool opens
  // another connection for new requests, and this one closes once its streams are done.
  void retire();
  void closeIfRetiredAndIdle();

  H2ConnPool* pool_;  // null once the pool is gone
  asio::io_context& io_;
  UpstreamConnection conn_;
  std::string sni_;  // UpstreamSource::sni (auto_sni) this connection was opened for
  // Shared with the pool and declared before codec_: ~Codec updates the gauges, and a connection can
  // outlive its pool (handlers of a stopped worker loop are destroyed after the worker thread exits).
  std::shared_ptr<const http2::Http2Stats> stats_;
  http2::Codec codec_;
  std::unordered_map<int32_t, H2StreamCallbacks*> streams_;
  std::vector<int32_t> backed_up_;
  std::string in_;
  std::string out_;
  std::string writing_;
  bool connected_ = false;
  bool closed_ = false;
  bool read_in_flight_ = false;
  bool write_in_flight_ = false;
  bool flush_scheduled_ = false;
  bool retired_ = false;
  uint32_t goaway_last_ = 0x7fffffff;
  asio::steady_timer timer_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};
using H2ConnectionSharedPtr = std::shared_ptr<H2Connection>;

class H2ConnPool {
 public:
  // Called once: a connection that can open a stream now, or a failure.
  using Callback =
      std::function<void(H2ConnectionSharedPtr conn, PoolFailure failure, std::string_view reason)>;

  H2ConnPool(asio::io_context& io, ClusterInfoConstSharedPtr cluster);
  ~H2ConnPool();

  // A ready connection with room (returned at once), or nullptr and `cb` runs later. The returned
  // function (when set) cancels the wait.
  H2ConnectionSharedPtr acquire(const HostSharedPtr& host, const UpstreamSource& source, Callback cb,
                                std::function<void()>* cancel);
  const UpstreamProtocolConfig& protocol() const { return protocol_; }
  const ClusterInfoConstSharedPtr& cluster() const { return cluster_; }

  // This worker's pool for `cluster` (a new ClusterInfo version gets a new pool; old connections finish).
  static H2ConnPool& forCluster(asio::io_context& io, const ClusterInfoConstSharedPtr& cluster);

 private:
  friend class H2Connection;
  struct Waiter {
    HostSharedPtr host;
    UpstreamSource source;
    PoolKey key;
    Callback cb;
    bool cancelled = false;
  };
  void onConnectionReady(H2Connection& conn);
  void onConnectionFailed(H2Connection& conn, PoolFailure failure, std::string_view reason);
  void onConnectionClosed(H2Connection& conn);
  void onStreamFreed(H2Connection& conn);
  // Opens a connection for `key` unless one is connecting; false (and upstream_cx_overflow) when the
  // circuit breaker says no.
  bool ensureConnecting(const PoolKey& key, const HostSharedPtr& host, const UpstreamSource& source);
  // Waiters of `key` after one of its connections went away: served by another ready connection, or a new
  // connection is opened for them, or they fail (overflow).
  void redrive(const PoolKey& key);

  asio::io_context& io_;
  ClusterInfoConstSharedPtr cluster_;
  UpstreamProtocolConfig protocol_;
  std::shared_ptr<http2::Http2Stats> stats_;  // cluster.<name>.http2.*
  std::unordered_map<PoolKey, std::vector<H2ConnectionSharedPtr>, PoolKeyHash>
      conns_;  // by host (+ source) key
  std::vector<std::shared_ptr<Waiter>> waiting_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace skiff::upstream
