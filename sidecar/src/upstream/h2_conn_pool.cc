// H2ConnPool and H2Connection: multiplexed HTTP/2 upstream connections per worker, and the cluster's
// upstream protocol choice.
#include "skiff/upstream/h2_conn_pool.h"

#include <asio/post.hpp>

#include <algorithm>

#include "envoy/config/cluster/v3/cluster.pb.h"
#include "skiff/common/logging.h"
#include "skiff/stats/stats.h"
#include "skiff/tls/transport.h"
#include "skiff/upstream/transport_socket.h"

#if __has_include("envoy/extensions/upstreams/http/v3/http_protocol_options.pb.h")
#include "envoy/extensions/upstreams/http/v3/http_protocol_options.pb.h"
#define SKIFF_H2_HAVE_PROTOCOL_OPTIONS 1
#endif

namespace skiff::upstream {

namespace {
constexpr size_t kReadChunk = 16 * 1024;
constexpr const char* kHttpOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
}  // namespace

UpstreamProtocolConfig upstreamProtocolFor(const ClusterInfo& cluster) {
  UpstreamProtocolConfig out;
  const auto cfg = cluster.config();
  if (cfg.has_http2_protocol_options()) {  // legacy (deprecated) field: the cluster speaks h2
    out.protocol = UpstreamHttpProtocol::kHttp2;
    out.http2 = http2::Settings::fromProto(cfg.http2_protocol_options());
  }
#ifdef SKIFF_H2_HAVE_PROTOCOL_OPTIONS
  const auto& typed = cfg.typed_extension_protocol_options();
  if (auto it = typed.find(kHttpOptionsKey); it != typed.end()) {
    envoy::extensions::upstreams::http::v3::HttpProtocolOptions o;
    if (it->second.UnpackTo(&o)) {
      if (o.has_explicit_http_config()) {
        if (o.explicit_http_config().has_http2_protocol_options()) {
          out.protocol = UpstreamHttpProtocol::kHttp2;
          out.http2 = http2::Settings::fromProto(o.explicit_http_config().http2_protocol_options());
        } else {
          out.protocol = UpstreamHttpProtocol::kHttp1;
        }
      } else if (o.has_use_downstream_protocol_config()) {
        out.protocol = UpstreamHttpProtocol::kUseDownstream;
        out.http2 = http2::Settings::fromProto(o.use_downstream_protocol_config().http2_protocol_options());
      } else if (o.has_auto_config()) {
        // auto_config picks by ALPN, which needs TLS; over plaintext Envoy speaks HTTP/1.1.
        out.protocol = UpstreamHttpProtocol::kHttp1;
        out.http2 = http2::Settings::fromProto(o.auto_config().http2_protocol_options());
      }
    }
  }
#endif
  // An upstream stream's response headers are bounded like a request's (Envoy's 60 KiB default).
  return out;
}

// ---- H2Connection ----

H2Connection::H2Connection(H2ConnPool& pool, asio::io_context& io, HostSharedPtr host,
                           ClusterInfoConstSharedPtr cluster, const http2::Settings& settings,
                           std::shared_ptr<const http2::Http2Stats> stats)
    : pool_(&pool),
      io_(io),
      conn_(io),
      stats_(std::move(stats)),
      codec_(http2::Codec::Role::kClient, settings, *this, stats_.get()),
      timer_(io) {
  conn_.host = std::move(host);
  conn_.cluster = std::move(cluster);
}

H2Connection::~H2Connection() {
  *alive_ = false;
}

void H2Connection::connect(const UpstreamSource& source) {
  const ClusterInfo& cluster = *conn_.cluster;
  cluster.trafficStats().upstream_cx_total.inc();
  cluster.trafficStats().upstream_cx_http2_total.inc();
  cluster.trafficStats().upstream_cx_active.inc();
  HostStats& host_stats = conn_.host->stats();
  host_stats.cx_total.fetch_add(1, std::memory_order_relaxed);
  host_stats.cx_active.fetch_add(1, std::memory_order_relaxed);
  sni_ = source.sni;  // auto_sni: part of this connection's pool key, sent in the handshake
  std::string failure;
  auto self = shared_from_this();
  if (!openUpstreamSocket(conn_.socket, conn_.host->endpoint, source, &failure)) {
    asio::post(io_, [self, failure] {
      self->conn_.cluster->trafficStats().upstream_cx_connect_fail.inc();
      if (self->pool_) self->pool_->onConnectionFailed(*self, PoolFailure::kConnectFailure, failure);
    });
    return;
  }
  timer_.expires_after(cluster.connect_timeout);
  std::weak_ptr<H2Connection> weak = self;
  timer_.async_wait([weak](std::error_code ec) {
    auto s = weak.lock();
    if (ec || !s || s->connected_) return;
    s->conn_.cluster->trafficStats().upstream_cx_connect_timeout.inc();
    std::error_code ignored;
    s->conn_.socket.close(ignored);
  });
  const auto started = std::chrono::steady_clock::now();
  conn_.socket.async_connect(conn_.host->endpoint, [self, started](std::error_code ec) {
    if (self->closed_) return;
    const bool timed_out = self->timer_.expiry() <= std::chrono::steady_clock::now();
    if (ec) {
      self->timer_.cancel();
      self->conn_.cluster->trafficStats().upstream_cx_connect_fail.inc();
      self->conn_.host->stats().cx_connect_fail.fetch_add(1, std::memory_order_relaxed);
      if (self->pool_)
        self->pool_->onConnectionFailed(*self,
                                        timed_out ? PoolFailure::kTimeout : PoolFailure::kConnectFailure,
                                        timed_out ? "connection timeout" : "connection failure");
      return;
    }
    self->conn_.cluster->trafficStats().upstream_cx_connect_ms.record(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started)
            .count()));
    std::error_code lec;
    auto local = self->conn_.socket.local_endpoint(lec);
    if (!lec) self->conn_.local_address = formatEndpoint(local);
    self->startTransport();
  });
}

void H2Connection::startTransport() {
  const ClusterInfo& cluster = *conn_.cluster;
  const UpstreamTransport* transport = cluster.transport ? &cluster.transport->select(*conn_.host) : nullptr;
  if (transport == nullptr || !transport->context) {
    timer_.cancel();
    onConnected();
    return;
  }
  // TLS (transport_socket): the handshake offers ALPN "h2" and runs under the connect timer, which closes
  // the socket when it fires before onConnected().
  conn_.transport_index = transport->index;
  tls::HandshakeOptions options = cluster.transport->handshakeOptions(*conn_.host, sni_);
  options.alpn = {"h2"};
  conn_.transport.attachTls(std::make_unique<tls::TlsTransport>(
      conn_.socket, transport->context->current(), tls::TlsTransport::Role::kClient, std::move(options)));
  auto self = shared_from_this();
  conn_.transport.asyncHandshake([self](std::error_code ec) {
    if (self->closed_) return;
    const bool timed_out = self->timer_.expiry() <= std::chrono::steady_clock::now();
    self->timer_.cancel();
    if (ec) {
      std::string reason = self->conn_.transport.tls() ? self->conn_.transport.tls()->failureReason() : "";
      if (reason.empty()) reason = timed_out ? "connection timeout" : "TLS handshake failure";
      SKIFF_LOG(kUpstream, debug, "cluster '{}': TLS handshake with {} failed: {}", self->conn_.cluster->name,
                self->conn_.host->address(), reason);
      self->conn_.cluster->trafficStats().upstream_cx_connect_fail.inc();
      if (self->pool_)
        self->pool_->onConnectionFailed(
            *self, timed_out ? PoolFailure::kTimeout : PoolFailure::kConnectFailure, reason);
      return;
    }
    self->onConnected();
  });
}

void H2Connection::onConnected() {
  connected_ = true;
  std::error_code ignored;
  conn_.socket.set_option(asio::ip::tcp::no_delay(true), ignored);
  scheduleFlush();
  doRead();
  if (const auto& max = conn_.cluster->max_connection_duration; max && max->count() > 0) {
    // The connect timer is done: it now ends the connection's life (Envoy's max_connection_duration).
    timer_.expires_at(conn_.created + *max);
    std::weak_ptr<H2Connection> weak = weak_from_this();
    timer_.async_wait([weak](std::error_code ec) {
      auto s = weak.lock();
      if (ec || !s || s->closed_ || s->retired_) return;
      s->conn_.cluster->trafficStats().upstream_cx_max_duration_reached.inc();
      s->retire();
    });
  }
  if (pool_) pool_->onConnectionReady(*this);
}

void H2Connection::retire() {
  if (retired_ || closed_) return;
  retired_ = true;
  // No GOAWAY from here: nghttp2 would hold back requests still queued behind it.
  closeIfRetiredAndIdle();
  // Requests waiting for one of its stream slots get a new connection instead.
  if (pool_ && !pool_->waiting_.empty()) {
    asio::post(io_, [pool = pool_, alive = std::weak_ptr<bool>(pool_->alive_), key = conn_.pool_key] {
      if (alive.lock()) pool->redrive(key);
    });
  }
}

void H2Connection::closeIfRetiredAndIdle() {
  if (!retired_ || closed_ || !streams_.empty()) return;
  // Not from inside a codec callback: the close runs once the current event is done.
  auto self = shared_from_this();
  asio::post(io_, [self] {
    if (self->streams_.empty() && !self->closed_) self->close("connection retired");
  });
}

int32_t H2Connection::newStream(const http::HeaderMap& headers, bool end_stream,
                                H2StreamCallbacks* callbacks) {
  if (!canOpen()) return -1;
  const int32_t id = codec_.submitRequest(headers, end_stream);
  if (id < 0) return -1;
  streams_[id] = callbacks;
  conn_.requests++;
  scheduleFlush();
  const uint32_t max_requests = conn_.cluster->max_requests_per_connection;
  if (max_requests != 0 && conn_.requests >= max_requests) {
    conn_.cluster->trafficStats().upstream_cx_max_requests.inc();
    retire();
  }
  return id;
}

void H2Connection::sendData(int32_t id, http::Buffer& data, bool end_stream) {
  codec_.sendData(id, data, end_stream);
  if (codec_.streamPendingSendBytes(id) > conn_.cluster->per_connection_buffer_limit) {
    backed_up_.push_back(id);
  }
  scheduleFlush();
}

void H2Connection::sendTrailers(int32_t id, const http::HeaderMap& trailers) {
  codec_.sendTrailers(id, trailers);
  scheduleFlush();
}

void H2Connection::cancelStream(int32_t id) {
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  it->second = nullptr;
  conn_.cluster->trafficStats().upstream_rq_tx_reset.inc();
  codec_.resetStream(id, http2::kCancel);
  scheduleFlush();
}

void H2Connection::readDisable(int32_t id, bool disabled) {
  codec_.readDisable(id, disabled);
  if (!disabled) scheduleFlush();
}

void H2Connection::onHeaders(int32_t id, std::unique_ptr<http::HeaderMap> headers, bool end_stream) {
  auto it = streams_.find(id);
  if (it != streams_.end() && it->second) it->second->onH2Headers(std::move(headers), end_stream);
}

void H2Connection::onData(int32_t id, http::Buffer& data, bool end_stream) {
  auto it = streams_.find(id);
  if (it != streams_.end() && it->second) it->second->onH2Data(data, end_stream);
}

void H2Connection::onTrailers(int32_t id, std::unique_ptr<http::HeaderMap> trailers) {
  auto it = streams_.find(id);
  if (it != streams_.end() && it->second) it->second->onH2Trailers(std::move(trailers));
}

void H2Connection::onStreamClose(int32_t id, uint32_t error_code, bool remote) {
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  H2StreamCallbacks* cb = it->second;
  streams_.erase(it);
  if (cb != nullptr && error_code != 0) {
    const bool refused = error_code == http2::kRefusedStream || static_cast<uint32_t>(id) > goaway_last_;
    if (remote) conn_.cluster->trafficStats().upstream_rq_rx_reset.inc();
    cb->onH2Reset(error_code, refused, refused ? "refused_stream_reset" : "remote_reset");
  }
  closeIfRetiredAndIdle();
  if (pool_) pool_->onStreamFreed(*this);
}

void H2Connection::onGoAway(uint32_t last_stream_id, uint32_t) {
  goaway_last_ = last_stream_id;
  // Streams the server never saw will not be answered: they fail now, as refused (retriable).
  std::vector<std::pair<int32_t, H2StreamCallbacks*>> refused;
  for (auto& [id, cb] : streams_) {
    if (static_cast<uint32_t>(id) > last_stream_id) refused.emplace_back(id, cb);
  }
  for (auto& [id, cb] : refused) {
    streams_.erase(id);
    if (cb) cb->onH2Reset(http2::kRefusedStream, true, "refused_stream_reset");
  }
  if (pool_) pool_->onStreamFreed(*this);
}

void H2Connection::doRead() {
  if (read_in_flight_ || closed_) return;
  if (in_.size() < kReadChunk) in_.resize(kReadChunk);
  read_in_flight_ = true;
  auto self = shared_from_this();
  conn_.transport.asyncReadSome(asio::buffer(in_.data(), kReadChunk), [self](std::error_code ec, size_t n) {
    self->read_in_flight_ = false;
    if (self->closed_) return;
    if (ec) {
      self->conn_.cluster->trafficStats().upstream_cx_destroy_remote.inc();
      self->close("connection termination");
      return;
    }
    self->conn_.cluster->trafficStats().upstream_cx_rx_bytes_total.inc(n);
    if (!self->codec_.receive(std::string_view(self->in_.data(), n))) {
      self->conn_.cluster->trafficStats().upstream_cx_protocol_error.inc();
      SKIFF_LOG(kUpstream, debug, "HTTP/2 upstream {} failed: {}", self->conn_.host->address(),
                self->codec_.error());
    }
    self->scheduleFlush();
    self->doRead();
  });
}

void H2Connection::scheduleFlush() {
  if (flush_scheduled_ || closed_ || !connected_) return;
  flush_scheduled_ = true;
  auto self = shared_from_this();
  asio::post(io_, [self] {
    self->flush_scheduled_ = false;
    self->flush();
  });
}

void H2Connection::flush() {
  if (closed_ || write_in_flight_) return;
  if (!codec_.takeOutput(out_)) {
    close("protocol error");
    return;
  }
  if (out_.empty()) {
    if (codec_.wantsClose()) close("connection termination");
    return;
  }
  write_in_flight_ = true;
  writing_.swap(out_);
  out_.clear();
  conn_.cluster->trafficStats().upstream_cx_tx_bytes_total.inc(writing_.size());
  auto self = shared_from_this();
  conn_.transport.asyncWrite(asio::buffer(writing_), [self](std::error_code ec, size_t) {
    self->write_in_flight_ = false;
    self->writing_.clear();
    if (ec) {
      self->close("connection termination");
      return;
    }
    if (self->out_.empty()) self->codec_.onOutputDrained();
    if (!self->backed_up_.empty()) {
      std::vector<int32_t> ids;
      ids.swap(self->backed_up_);
      for (int32_t id : ids) {
        if (self->codec_.streamPendingSendBytes(id) > self->conn_.cluster->per_connection_buffer_limit) {
          self->backed_up_.push_back(id);
          continue;
        }
        auto it = self->streams_.find(id);
        if (it != self->streams_.end() && it->second) it->second->onH2Writable();
      }
    }
    self->flush();
  });
}

void H2Connection::close(std::string_view reason) {
  if (closed_) return;
  closed_ = true;
  auto self = shared_from_this();
  timer_.cancel();
  conn_.transport.close();
  auto streams = std::move(streams_);
  streams_.clear();
  for (auto& [id, cb] : streams) {
    if (cb) cb->onH2Reset(http2::kInternalError, false, reason);
  }
  if (pool_) pool_->onConnectionClosed(*this);
}

// ---- H2ConnPool ----

H2ConnPool::H2ConnPool(asio::io_context& io, ClusterInfoConstSharedPtr cluster)
    : io_(io), cluster_(std::move(cluster)), protocol_(upstreamProtocolFor(*cluster_)) {
  stats_ = std::make_shared<http2::Http2Stats>(stats::defaultStore(),
                                               "cluster." + cluster_->stat_name + ".http2.");
}

H2ConnPool::~H2ConnPool() {
  auto conns = std::move(conns_);
  for (auto& [key, list] : conns) {
    for (auto& c : list) {
      c->pool_ = nullptr;
      c->close("pool destroyed");
    }
  }
}

H2ConnectionSharedPtr H2ConnPool::acquire(const HostSharedPtr& host, const UpstreamSource& source,
                                          Callback cb, std::function<void()>* cancel) {
  const PoolKey key{host->endpoint, source.key()};
  for (auto& c : conns_[key]) {
    if (c->canOpen()) return c;
  }
  // One connection at a time per host: waiters share it once it is up. The breaker is asked before the
  // waiter is queued, so an overflow leaves nothing behind.
  if (!ensureConnecting(key, host, source)) {
    asio::post(io_, [cb = std::move(cb)] { cb(nullptr, PoolFailure::kOverflow, "overflow"); });
    return nullptr;
  }
  auto waiter = std::make_shared<Waiter>();
  waiter->host = host;
  waiter->source = source;
  waiter->key = key;
  waiter->cb = std::move(cb);
  waiting_.push_back(waiter);
  if (cancel)
    *cancel = [w = std::weak_ptr<Waiter>(waiter)] {
      if (auto s = w.lock()) s->cancelled = true;
    };
  return nullptr;
}

bool H2ConnPool::ensureConnecting(const PoolKey& key, const HostSharedPtr& host,
                                  const UpstreamSource& source) {
  auto& list = conns_[key];
  for (auto& c : list) {
    if (!c->connected_ && !c->closed_) return true;
  }
  if (!cluster_->resources.tryAcquireConnection()) {
    cluster_->trafficStats().upstream_cx_overflow.inc();
    // As in the HTTP/1 pool: a host this worker has no open connection to still gets one.
    if (std::any_of(list.begin(), list.end(), [](const auto& c) { return !c->closed_; })) return false;
    cluster_->resources.acquireConnectionOverLimit();
  }
  auto conn = std::make_shared<H2Connection>(*this, io_, host, cluster_, protocol_.http2, stats_);
  conn->conn_.pool_key = key;
  list.push_back(conn);
  conn->connect(source);
  return true;
}

void H2ConnPool::redrive(const PoolKey& key) {
  std::vector<std::shared_ptr<Waiter>> mine;
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if ((*it)->key == key) {
      if (!(*it)->cancelled) mine.push_back(*it);
      it = waiting_.erase(it);
    } else {
      ++it;
    }
  }
  if (mine.empty()) return;
  H2ConnectionSharedPtr ready;  // can open now, or full but will free slots (no GOAWAY)
  bool connecting = false;
  if (auto it = conns_.find(key); it != conns_.end()) {
    for (auto& c : it->second) {
      if (c->canOpen() || (c->ready() && !c->retired_ && !c->codec_.goAwayReceived() && !ready)) ready = c;
      if (!c->connected_ && !c->closed_) connecting = true;
    }
  }
  for (auto& w : mine) waiting_.push_back(w);
  if (ready) {
    onStreamFreed(*ready);  // serves what fits; the rest wait for its streams to end
    return;
  }
  if (connecting || ensureConnecting(key, mine.front()->host, mine.front()->source)) return;
  for (auto& w : mine) {
    waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), w), waiting_.end());
    if (!w->cancelled) w->cb(nullptr, PoolFailure::kOverflow, "overflow");
  }
}

void H2ConnPool::onConnectionReady(H2Connection& conn) {
  const PoolKey& key = conn.conn_.pool_key;
  // Hand the connection to the waiters of its host; the first one learns the server's limits soon after.
  std::vector<std::shared_ptr<Waiter>> mine;
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if ((*it)->key == key) {
      mine.push_back(*it);
      it = waiting_.erase(it);
    } else {
      ++it;
    }
  }
  auto self = conn.shared_from_this();
  for (auto& w : mine) {
    if (w->cancelled) continue;
    if (self->canOpen()) {
      w->cb(self, PoolFailure::kNone, {});
    } else {
      waiting_.push_back(w);  // full: waits for a stream to end
    }
  }
}

void H2ConnPool::onStreamFreed(H2Connection& conn) {
  if (waiting_.empty() || !conn.canOpen()) return;
  onConnectionReady(conn);
}

void H2ConnPool::onConnectionFailed(H2Connection& conn, PoolFailure failure, std::string_view reason) {
  const PoolKey key = conn.conn_.pool_key;
  std::vector<std::shared_ptr<Waiter>> mine;
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if ((*it)->key == key) {
      mine.push_back(*it);
      it = waiting_.erase(it);
    } else {
      ++it;
    }
  }
  const std::string why(reason);
  conn.closed_ = true;
  conn.conn_.transport.close();
  onConnectionClosed(conn);
  for (auto& w : mine) {
    if (!w->cancelled) w->cb(nullptr, failure, why);
  }
}

void H2ConnPool::onConnectionClosed(H2Connection& conn) {
  auto it = conns_.find(conn.conn_.pool_key);
  if (it == conns_.end()) return;
  auto& list = it->second;
  for (auto c = list.begin(); c != list.end(); ++c) {
    if (c->get() == &conn) {
      // Keep the object alive until the current callback chain unwinds.
      asio::post(io_, [keep = *c] {});
      list.erase(c);
      break;
    }
  }
  // Waiters queued behind this connection (it was full) must not wait for a slot that never frees.
  if (!waiting_.empty()) {
    asio::post(io_, [this, alive = std::weak_ptr<bool>(alive_), key = conn.conn_.pool_key] {
      if (alive.lock()) redrive(key);
    });
  }
}

H2ConnPool& H2ConnPool::forCluster(asio::io_context& io, const ClusterInfoConstSharedPtr& cluster) {
  // One map per worker thread (a worker owns one io_context); never shared, so no locks.
  thread_local std::unordered_map<std::string, std::unique_ptr<H2ConnPool>> pools;
  auto& slot = pools[cluster->name];
  if (!slot || &slot->io_ != &io) {
    slot = std::make_unique<H2ConnPool>(io, cluster);
  } else if (slot->cluster_ != cluster) {
    // A new cluster version: new connections use it; connections in use keep theirs.
    slot->cluster_ = cluster;
    slot->protocol_ = upstreamProtocolFor(*cluster);
  }
  return *slot;
}

}  // namespace skiff::upstream
