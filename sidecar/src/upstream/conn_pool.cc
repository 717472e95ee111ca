// ConnPool: per-worker upstream connections with keep-alive reuse, connect timeouts and circuit breakers.
#include "skiff/upstream/conn_pool.h"

#include <sys/socket.h>

#include <asio/connect.hpp>

#include "skiff/common/logging.h"
#include "skiff/upstream/transport_socket.h"

namespace skiff::upstream {

namespace {
constexpr std::chrono::milliseconds kProbeAfterIdle{200};
}

UpstreamConnection::~UpstreamConnection() {
  if (cluster) {
    cluster->trafficStats().upstream_cx_active.dec();
    cluster->trafficStats().upstream_cx_destroy.inc();
    cluster->trafficStats().upstream_rq_per_cx.record(requests);
    cluster->trafficStats().upstream_cx_length_ms.record(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - created)
            .count()));
    cluster->resources.releaseConnection();
  }
  if (host) host->stats().cx_active.fetch_sub(1, std::memory_order_relaxed);
  if (live) {
    auto it = live->find(pool_key);
    if (it != live->end() && --it->second == 0) live->erase(it);
  }
}

struct ConnPool::PendingRequest : public ConnPool::Pending {
  explicit PendingRequest(asio::io_context& io) : timer(io) {}
  void cancel() override {
    cancelled = true;
    cb = nullptr;
    if (queued && cluster) {
      queued = false;
      cluster->resources.releasePending();
      cluster->trafficStats().upstream_rq_pending_active.dec();
      cluster->trafficStats().upstream_rq_cancelled.inc();
    }
    // A connect in flight keeps going: the connection joins the idle list if it succeeds.
  }
  void finish(UpstreamConnectionPtr conn, PoolFailure failure, std::string_view reason) {
    if (queued && cluster) {
      queued = false;
      cluster->resources.releasePending();
      cluster->trafficStats().upstream_rq_pending_active.dec();
    }
    if (auto callback = std::move(cb)) {
      cb = nullptr;
      callback(std::move(conn), failure, reason);
    }
  }

  Callback cb;
  HostSharedPtr host;
  UpstreamSource source;
  PoolKey pool_key;
  ClusterInfoConstSharedPtr cluster;
  asio::steady_timer timer;
  bool cancelled = false;
  bool queued = false;  // counted as pending (waiting for the connection limit)
};

ConnPool::ConnPool(asio::io_context& io, ClusterInfoConstSharedPtr cluster)
    : io_(io), cluster_(std::move(cluster)) {}

ConnPool::~ConnPool() {
  *alive_ = false;
}

// A connection that sat idle for a while may have been closed by the upstream (idle timeouts are seconds
// long). A 1-byte MSG_PEEK tells: EOF or unexpected bytes make it unusable. Busy connections skip the probe;
// the rare close racing a reuse is replayed by the router for requests without a body.
bool ConnPool::isAlive(UpstreamConnection& conn) const {
  char byte;
  const ssize_t n = ::recv(conn.socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

// The cluster's own upstream_bind_config needs no key of its own: every connection of this pool has it.
bool ConnPool::isClusterDefault(const UpstreamSource& source) const {
  if (!source.sni.empty()) return false;  // auto_sni: one idle list per SNI
  return source.empty() || (!source.transparent && source.mark == 0 && source.port == cluster_->source_port &&
                            source.address == cluster_->source_address);
}

void ConnPool::updateCluster(ClusterInfoConstSharedPtr cluster) {
  const bool source_changed =
      cluster->source_address != cluster_->source_address || cluster->source_port != cluster_->source_port;
  cluster_ = std::move(cluster);
  if (source_changed) closeIdle(true);  // their keys no longer say which source they were made from
}

// Only source keys ("addr|source", one per original_src client) go at once; a host's default entry stays
// until the idle sweep, or every acquire/release pair at low concurrency would re-create it (a map node
// and a deque: allocations per request).
void ConnPool::eraseIfEmpty(HostMap::iterator it) {
  if (it->first.source.empty()) return;
  if (it->second.idle.empty() && it->second.waiting.empty()) hosts_.erase(it);
}

ConnPool::Acquired ConnPool::acquire(const HostSharedPtr& host, Callback cb, const UpstreamSource& source) {
  if (stopping_) return Acquired{nullptr, nullptr, PoolFailure::kConnectFailure};
  const bool cluster_default = isClusterDefault(source);
  PoolKey key{host->endpoint, cluster_default ? std::string() : source.key()};
  auto it = hosts_.try_emplace(key).first;
  HostPool& hp = it->second;
  const auto now = std::chrono::steady_clock::now();
  // TLS and plaintext connections (or two TLS configs) are never handed to each other: an endpoint whose
  // transport_socket_matches result changed drops the idle connections made the other way.
  const uint32_t transport_index = cluster_->transport ? cluster_->transport->select(*host).index : 0;
  while (!hp.idle.empty()) {
    UpstreamConnectionPtr conn = std::move(hp.idle.back());
    hp.idle.pop_back();
    if (conn->transport_index != transport_index) continue;  // destroyed here
    if (now - conn->idle_since > cluster_->idle_timeout) {
      cluster_->trafficStats().upstream_cx_idle_timeout.inc();
      continue;  // destroyed here
    }
    if (now - conn->idle_since > kProbeAfterIdle && !isAlive(*conn)) {
      cluster_->trafficStats().upstream_cx_close_notify.inc();
      cluster_->trafficStats().upstream_cx_destroy_remote.inc();
      continue;
    }
    eraseIfEmpty(it);
    return Acquired{std::move(conn), nullptr, PoolFailure::kNone};
  }

  auto request = std::make_shared<PendingRequest>(io_);
  request->cb = std::move(cb);
  request->host = host;
  request->source = cluster_default ? upstreamSourceFor(*cluster_, nullptr) : source;
  request->pool_key = std::move(key);
  request->cluster = cluster_;
  const bool within_limit = cluster_->resources.tryAcquireConnection();
  if (!within_limit) cluster_->trafficStats().upstream_cx_overflow.inc();
  // Over the limit, a host this pool has no connection to still gets one, as in Envoy: a request queued
  // here could only be served by a connection of this worker's pool, and the other workers may hold them all.
  if (within_limit || !hasConnection(request->pool_key)) {
    if (!within_limit) cluster_->resources.acquireConnectionOverLimit();
    eraseIfEmpty(it);
    connect(request);
    return Acquired{nullptr, request, PoolFailure::kNone};
  }
  if (!cluster_->resources.tryAcquirePending()) {
    cluster_->trafficStats().upstream_rq_pending_overflow.inc();
    eraseIfEmpty(it);
    return Acquired{nullptr, nullptr, PoolFailure::kOverflow};
  }
  request->queued = true;
  cluster_->trafficStats().upstream_rq_pending_total.inc();
  cluster_->trafficStats().upstream_rq_pending_active.inc();
  hp.waiting.push_back(request);
  return Acquired{nullptr, request, PoolFailure::kNone};
}

void ConnPool::connect(const std::shared_ptr<PendingRequest>& request) {
  const HostSharedPtr& host = request->host;
  auto conn = std::make_unique<UpstreamConnection>(io_);
  conn->host = host;
  conn->pool_key = request->pool_key;
  conn->cluster = cluster_;
  conn->live = live_;
  ++(*live_)[conn->pool_key];
  cluster_->trafficStats().upstream_cx_total.inc();
  cluster_->trafficStats().upstream_cx_http1_total.inc();
  cluster_->trafficStats().upstream_cx_active.inc();
  HostStats& host_stats = host->stats();
  host_stats.cx_total.fetch_add(1, std::memory_order_relaxed);
  host_stats.cx_active.fetch_add(1, std::memory_order_relaxed);

  std::string open_failure;
  const bool opened = openUpstreamSocket(conn->socket, host->endpoint, request->source, &open_failure);
  if (!opened && open_failure.rfind("bind", 0) == 0) cluster_->trafficStats().bind_errors.inc();
  auto* raw = conn.get();
  auto shared_conn = std::make_shared<UpstreamConnectionPtr>(std::move(conn));
  const auto started = std::chrono::steady_clock::now();
  auto alive = alive_;

  auto fail = [this, request, shared_conn, host, alive](PoolFailure failure, std::string_view reason) {
    if (!*alive) return;
    cluster_->trafficStats().upstream_cx_connect_fail.inc();
    host->stats().cx_connect_fail.fetch_add(1, std::memory_order_relaxed);
    shared_conn->reset();
    request->finish(nullptr, failure, reason);
    serveWaiting();
  };
  if (!opened) {
    asio::post(io_, [fail, open_failure] { fail(PoolFailure::kConnectFailure, open_failure); });
    return;
  }

  request->timer.expires_after(cluster_->connect_timeout);
  // An expiry already queued when the connect or handshake finished finds the connection handed off
  // (or failed): *shared_conn is then empty and there is nothing to time out.
  request->timer.async_wait([this, shared_conn, alive](std::error_code wait_ec) {
    if (wait_ec || !*alive || !*shared_conn) return;
    cluster_->trafficStats().upstream_cx_connect_timeout.inc();
    std::error_code ignored;
    (*shared_conn)->socket.close(ignored);  // the connect handler sees operation_aborted
  });
  raw->socket.async_connect(
      host->endpoint, [this, request, shared_conn, started, alive, fail](std::error_code cec) {
        if (!*alive) return;
        const bool timed_out = request->timer.expiry() <= std::chrono::steady_clock::now() &&
                               cec == asio::error::operation_aborted;
        if (cec) {
          request->timer.cancel();
          fail(timed_out ? PoolFailure::kTimeout : PoolFailure::kConnectFailure,
               timed_out ? std::string_view("connection timeout") : std::string_view("connection failure"));
          return;
        }
        UpstreamConnection& conn = **shared_conn;
        cluster_->trafficStats().upstream_cx_connect_ms.record(static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started)
                .count()));
        std::error_code lec;
        auto local = conn.socket.local_endpoint(lec);
        if (!lec) conn.local_address = formatEndpoint(local);
        const UpstreamTransport* transport =
            cluster_->transport ? &cluster_->transport->select(*request->host) : nullptr;
        if (transport == nullptr || !transport->context) {
          request->timer.cancel();
          connected(request, std::move(*shared_conn));
          return;
        }
        // TLS: the handshake runs under the same connect timeout (Envoy's "connected" is after it).
        conn.transport_index = transport->index;
        conn.transport.attachTls(std::make_unique<tls::TlsTransport>(
            conn.socket, transport->context->current(), tls::TlsTransport::Role::kClient,
            cluster_->transport->handshakeOptions(*request->host, request->source.sni)));
        conn.transport.asyncHandshake([this, request, shared_conn, alive, fail](std::error_code hec) {
          if (!*alive) return;
          const bool handshake_timed_out = request->timer.expiry() <= std::chrono::steady_clock::now();
          request->timer.cancel();
          if (hec) {
            UpstreamConnection& failed = **shared_conn;
            std::string reason = failed.transport.tls() ? failed.transport.tls()->failureReason() : "";
            if (handshake_timed_out && !failed.socket.is_open()) {
              fail(PoolFailure::kTimeout, "connection timeout");
              return;
            }
            SKIFF_LOG(kUpstream, debug, "cluster '{}': TLS handshake with {} failed: {}", cluster_->name,
                      failed.host ? failed.host->address() : "", reason);
            fail(PoolFailure::kConnectFailure, reason);
            return;
          }
          connected(request, std::move(*shared_conn));
        });
      });
}

void ConnPool::connected(const std::shared_ptr<PendingRequest>& request, UpstreamConnectionPtr conn) {
  if (request->cancelled || !request->cb) {
    // Nobody waits any more: keep the fresh connection for the next request.
    release(std::move(conn), true);
    return;
  }
  request->finish(std::move(conn), PoolFailure::kNone, {});
}

void ConnPool::release(UpstreamConnectionPtr conn, bool reusable) {
  if (!conn || stopping_) return;  // stopping: the connection closes here
  const uint32_t max_requests = cluster_->max_requests_per_connection;
  if (reusable && max_requests != 0 && conn->requests >= max_requests) {
    cluster_->trafficStats().upstream_cx_max_requests.inc();
    reusable = false;
  }
  if (!reusable || !conn->socket.is_open() || conn->cluster != cluster_) {
    conn.reset();
    serveWaiting();
    return;
  }
  auto it = hosts_.try_emplace(conn->pool_key).first;
  HostPool& hp = it->second;
  // Someone is waiting for a connection to this host: hand it over directly.
  while (!hp.waiting.empty()) {
    auto waiter = std::move(hp.waiting.front());
    hp.waiting.pop_front();
    if (waiter->cancelled) continue;
    eraseIfEmpty(it);  // before finish(): the callback may acquire again
    waiter->finish(std::move(conn), PoolFailure::kNone, {});
    return;
  }
  conn->idle_since = std::chrono::steady_clock::now();
  hp.idle.push_back(std::move(conn));
}

// A connection slot was freed, or a host lost a connection: start a connection for the oldest waiter of
// each host while slots last. A host with waiters and no connection of its own gets one over the limit
// (see acquire). Host entries left with nothing idle or waiting are dropped on the way.
void ConnPool::serveWaiting() {
  if (stopping_) return;
  for (auto it = hosts_.begin(); it != hosts_.end();) {
    HostPool& hp = it->second;
    while (!hp.waiting.empty() && hp.waiting.front()->cancelled) hp.waiting.pop_front();
    if (hp.waiting.empty()) {
      it = hp.idle.empty() ? hosts_.erase(it) : std::next(it);
      continue;
    }
    if (!cluster_->resources.tryAcquireConnection()) {
      if (hasConnection(it->first)) {
        ++it;  // its own connection serves it when released
        continue;
      }
      cluster_->trafficStats().upstream_cx_overflow.inc();
      cluster_->resources.acquireConnectionOverLimit();
    }
    auto waiter = std::move(hp.waiting.front());
    hp.waiting.pop_front();
    const auto next = std::next(it);
    eraseIfEmpty(it);
    connect(waiter);
    it = next;
  }
}

void ConnPool::closeIdle(bool all) {
  const auto now = std::chrono::steady_clock::now();
  for (auto it = hosts_.begin(); it != hosts_.end();) {
    auto& idle = it->second.idle;
    for (size_t i = 0; i < idle.size();) {
      const bool expired = !all && now - idle[i]->idle_since > cluster_->idle_timeout;
      // Upstreams close idle keep-alive connections on their own timers; without this sweep such a socket
      // would sit in CLOSE_WAIT (and count as active) until the next reuse attempt probed it.
      const bool closed = !all && !expired && !isAlive(*idle[i]);
      if (all || expired || closed) {
        if (expired) cluster_->trafficStats().upstream_cx_idle_timeout.inc();
        if (closed) cluster_->trafficStats().upstream_cx_destroy_remote.inc();
        idle.erase(idle.begin() + static_cast<long>(i));
      } else {
        ++i;
      }
    }
    const bool empty = idle.empty() && it->second.waiting.empty();
    it = empty ? hosts_.erase(it) : std::next(it);
  }
  if (all) serveWaiting();
}

size_t ConnPool::idleCount() const {
  size_t n = 0;
  for (const auto& [address, hp] : hosts_) n += hp.idle.size();
  return n;
}

ConnPool& ConnPoolMap::get(const ClusterInfoConstSharedPtr& cluster) {
  auto& pool = pools_[cluster->name];
  if (!pool) {
    pool = std::make_unique<ConnPool>(io_, cluster);
    if (stopped_) pool->stop();
  } else {
    pool->updateCluster(cluster);
  }
  return *pool;
}

void ConnPoolMap::stop() {
  stopped_ = true;
  for (auto& [name, pool] : pools_) pool->stop();
  closeIdle(true);  // stopped first: nothing waiting is connected on the way
}

void ConnPoolMap::remove(const std::string& cluster_name) {
  pools_.erase(cluster_name);
}

void ConnPoolMap::closeIdle(bool all) {
  for (auto& [name, pool] : pools_) pool->closeIdle(all);
}

}  // namespace skiff::upstream
