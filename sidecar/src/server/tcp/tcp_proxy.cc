// TcpProxySession: upstream selection and connect, the two copy loops with half-close and flow control,
// timeouts, stats and the access log of one proxied TCP connection.
#include "server/tcp/tcp_proxy.h"

#include <asio/post.hpp>
#include <asio/write.hpp>

#include <algorithm>
#include <cstring>

#include "skiff/common/logging.h"
#include "skiff/common/random.h"
#include "skiff/upstream/host.h"
#include "skiff/upstream/transport_socket.h"
#include "skiff/upstream/upstream_socket.h"

namespace skiff::server {

namespace {
constexpr size_t kInitialChunk = 16 * 1024;
constexpr size_t kMaxChunk = 64 * 1024;
constexpr size_t kDownstreamBufferLimit = 1024 * 1024;  // Envoy's listener per_connection_buffer_limit

std::string endpointText(const asio::ip::tcp::endpoint& e) {
  return e.port() == 0 && e.address().is_unspecified() ? std::string() : upstream::formatEndpoint(e);
}
}  // namespace

TcpProxySession::TcpProxySession(WorkerContext& worker, network::Transport downstream,
                                 TcpProxyConfigSharedPtr config, const ListenerStats& listener_stats,
                                 network::ConnectionInfoConstSharedPtr info)
    : worker_(worker),
      downstream_(std::move(downstream)),
      upstream_(asio::ip::tcp::socket(worker.io)),
      config_(std::move(config)),
      listener_scope_(listener_stats),
      connection_(std::move(info)),
      connect_timer_(worker.io),
      idle_timer_(worker.io),
      duration_timer_(worker.io) {
  info_.protocol = "-";
  info_.connection = connection_;
  if (connection_) {
    info_.connection_id = connection_->id;
    info_.downstream_local_address = endpointText(connection_->local);
    info_.downstream_remote_address = endpointText(connection_->remote);
    info_.requested_server_name = connection_->server_name;
  } else {
    std::error_code ec;
    info_.connection_id = WorkerContext::nextConnectionId();
    const auto local = downstream_.socket().local_endpoint(ec);
    if (!ec) info_.downstream_local_address = endpointText(local);
    const auto remote = downstream_.socket().remote_endpoint(ec);
    if (!ec) info_.downstream_remote_address = endpointText(remote);
  }
  info_.downstream_direct_remote_address = info_.downstream_remote_address;
  down_to_up_.upstream = true;
  worker_.connections.insert(this);
  config_->stats.downstream_cx_total.inc();
}

TcpProxySession::~TcpProxySession() {
  worker_.connections.erase(this);
  releaseUpstream();
}

void TcpProxySession::setNetworkFilters(
    const std::vector<filters::network::FilterFactorySharedPtr>& factories) {
  for (const auto& factory : factories) {
    if (auto filter = factory->createFilter()) {
      filter->setCallbacks(*this);
      filters_.push_back(std::move(filter));
    }
  }
}

void TcpProxySession::closeConnection(std::string_view details) {
  if (closed_ || pending_close_) return;
  pending_close_ = std::string(details);
  // Applied after the filter callback returns (also when it came from a root context's callback).
  asio::post(worker_.io, [self = shared_from_this()] {
    if (!self->closed_) self->terminate(*self->pending_close_);
  });
}

void TcpProxySession::writeDownstream(std::string_view bytes) {
  // After the upstream's FIN went on to the downstream nothing more can be written there.
  if (closed_ || bytes.empty() || up_to_down_.shut) return;
  // Queued like filtered upstream bytes (filters exist whenever this is called); written once connected.
  up_to_down_.overflow.append(bytes);
  if (!connected_) return;
  asio::post(worker_.io, [self = shared_from_this()] {
    if (!self->closed_) self->pump(self->up_to_down_);
  });
}

void TcpProxySession::continueReading(filters::network::Filter& filter) {
  size_t index = SIZE_MAX;
  for (size_t i = 0; i < filters_.size(); ++i) {
    if (filters_[i].get() == &filter) index = i;
  }
  if (index == SIZE_MAX || closed_) return;
  // After the callback that asked (the filter's VM may be inside a call now).
  asio::post(worker_.io, [self = shared_from_this(), index] {
    if (self->closed_ || self->stopped_at_ != index) return;
    if (!self->runReadFilters(index + 1)) return;
    if (self->connected_) {
      self->pump(self->down_to_up_);
    } else if (!self->upstream_requested_) {
      self->startFilteredRead(self->down_to_up_);
    }
  });
}

bool TcpProxySession::filterRead(Direction& dir, size_t n) {
  if (n == 0 && !dir.eof) return true;
  dir.held.append(dir.filter_in.get(), n);
  if (dir.upstream) return runReadFilters(0);
  bool stop = false;
  for (auto it = filters_.rbegin(); it != filters_.rend(); ++it) {
    if ((*it)->onUpstreamData(dir.held, dir.eof) == filters::network::FilterStatus::kStop || pending_close_) {
      stop = true;
      break;
    }
  }
  if (pending_close_ && !closed_) terminate(*pending_close_);
  if (closed_) return false;
  if (stop && !dir.eof) return true;  // held: they come again with the next bytes
  dir.overflow.append(dir.held);
  dir.held.clear();
  return true;
}

bool TcpProxySession::runReadFilters(size_t from) {
  using filters::network::FilterStatus;
  Direction& dir = down_to_up_;
  bool stopped = false;
  for (size_t i = from; i < filters_.size() && !stopped && !pending_close_; ++i) {
    if (i >= filters_started_) {
      filters_started_ = i + 1;
      stopped = filters_[i]->onNewConnection() == FilterStatus::kStop;
    }
    if (!stopped && !pending_close_ && (!dir.held.empty() || dir.eof)) {
      stopped = filters_[i]->onDownstreamData(dir.held, dir.eof) == FilterStatus::kStop;
    }
    if (stopped) stopped_at_ = i;
  }
  if (pending_close_ && !closed_) terminate(*pending_close_);
  if (closed_) return false;
  dir.blocked = stopped;
  if (stopped) {
    if (!keep_alive_) keep_alive_ = shared_from_this();
    return true;  // held until more bytes come or the filter continues
  }
  stopped_at_ = SIZE_MAX;
  keep_alive_.reset();  // every caller holds a reference of its own
  if (dir.overflow.empty()) {
    dir.overflow.swap(dir.held);
  } else {
    dir.overflow.append(dir.held);
  }
  dir.held.clear();
  if (!upstream_requested_) connectUpstream();
  return !closed_;
}

void TcpProxySession::startFilteredRead(Direction& dir) {
  if (dir.reading || dir.eof || closed_) return;
  const size_t queued = dir.end - dir.start + dir.overflow.size() + dir.held.size();
  if (queued >= dir.limit) {
    if (!dir.paused) {
      dir.paused = true;
      if (dir.upstream) {
        config_->stats.downstream_flow_control_paused_reading_total.inc();
      } else {
        cluster_->trafficStats().upstream_flow_control_paused_reading_total.inc();
      }
    }
    return;
  }
  if (dir.paused) {
    dir.paused = false;
    if (dir.upstream) {
      config_->stats.downstream_flow_control_resumed_reading_total.inc();
    } else {
      cluster_->trafficStats().upstream_flow_control_resumed_reading_total.inc();
    }
  }
  if (!dir.filter_in) dir.filter_in = std::make_unique_for_overwrite<char[]>(kInitialChunk);
  dir.reading = true;
  readSide(dir).asyncReadSome(
      asio::buffer(dir.filter_in.get(), kInitialChunk),
      [self = shared_from_this(), &dir](std::error_code ec, size_t n) { self->onRead(dir, ec, n); });
}

void TcpProxySession::placeOverflow(Direction& dir) {
  if (dir.start == dir.end) dir.start = dir.end = 0;
  const size_t pending = dir.end - dir.start;
  if (dir.capacity - dir.end < dir.overflow.size()) {
    // Compact, and enlarge when the filtered bytes grew past the room there is.
    const size_t capacity = std::max(dir.capacity, pending + dir.overflow.size());
    auto buffer = std::make_unique_for_overwrite<char[]>(capacity);
    std::memcpy(buffer.get(), dir.buffer.get() + dir.start, pending);
    dir.buffer = std::move(buffer);
    dir.capacity = capacity;
    dir.start = 0;
    dir.end = pending;
  }
  std::memcpy(dir.buffer.get() + dir.end, dir.overflow.data(), dir.overflow.size());
  dir.end += dir.overflow.size();
  dir.overflow.clear();
}

void TcpProxySession::start() {
  std::error_code ec;
  downstream_.socket().set_option(asio::ip::tcp::no_delay(true), ec);
  if (config_->max_downstream_connection_duration) {
    duration_timer_.expires_after(*config_->max_downstream_connection_duration);
    duration_timer_.async_wait([self = shared_from_this()](std::error_code wait_ec) {
      if (wait_ec || self->closed_) return;
      self->config_->stats.max_downstream_connection_duration.inc();
      self->terminate("max_downstream_connection_duration_reached");
    });
  }
  if (filters_.empty()) {
    connectUpstream();
    return;
  }
  // The filters decide when the upstream is connected; the downstream is read meanwhile.
  down_to_up_.limit = kDownstreamBufferLimit;
  if (runReadFilters(0) && !upstream_requested_) startFilteredRead(down_to_up_);
}

void TcpProxySession::connectUpstream() {
  upstream_requested_ = true;
  cluster_name_ = config_->pickCluster(random64());
  info_.upstream_cluster = cluster_name_;
  connectAttempt();
}

void TcpProxySession::connectAttempt() {
  // Looked up per attempt: the cluster may have been updated or removed since the previous one.
  upstream::ThreadLocalCluster* cluster = worker_.clusters.get(cluster_name_);
  if (cluster == nullptr) {
    config_->stats.downstream_cx_no_route.inc();
    fail(http::ResponseFlag::kNoClusterFound, "cluster_not_found");
    return;
  }
  cluster_ = cluster->infoPtr();
  info_.upstream_cluster = cluster_->observability_name;
  const upstream::ClusterInfo& ci = *cluster_;
  ++attempts_;
  info_.attempt_count = attempts_;

  upstream::LbContext lb;
  lb.avoid = previous_host_.get();
  lb.connection = connection_.get();
  host_ = cluster->chooseHost(lb);
  if (!host_) {
    ci.trafficStats().upstream_cx_none_healthy.inc();
    fail(http::ResponseFlag::kNoHealthyUpstream, "no_healthy_upstream");
    return;
  }
  info_.upstream_host = host_->address();
  if (!ci.resources.tryAcquireConnection()) {
    ci.trafficStats().upstream_cx_overflow.inc();
    fail(http::ResponseFlag::kUpstreamOverflow, "overflow");
    return;
  }
  holds_cx_resource_ = true;
  upstream_counted_ = true;
  upstream_start_ = std::chrono::steady_clock::now();
  ci.trafficStats().upstream_cx_total.inc();
  ci.trafficStats().upstream_cx_active.inc();
  host_->stats().cx_total.fetch_add(1, std::memory_order_relaxed);
  host_->stats().cx_active.fetch_add(1, std::memory_order_relaxed);

  std::string reason;
  const auto source = upstream::upstreamSourceFor(ci, connection_.get());
  if (!upstream::openUpstreamSocket(upstream_.socket(), host_->endpoint, source, &reason)) {
    if (reason.rfind("bind", 0) == 0) ci.trafficStats().bind_errors.inc();
    onConnectFailure(reason, false);
    return;
  }
  connect_timer_.expires_after(ci.connect_timeout);
  // A timer that fired just before its attempt failed must not close the next attempt's socket.
  connect_timer_.async_wait([self = shared_from_this(), attempt = attempts_](std::error_code ec) {
    if (ec || self->closed_ || self->connected_ || attempt != self->attempts_) return;
    self->upstream_.close();  // the connect (or TLS handshake) handler sees operation_aborted
  });
  upstream_.socket().async_connect(
      host_->endpoint, [self = shared_from_this()](std::error_code ec) { self->onConnectResult(ec); });
}

void TcpProxySession::onConnectResult(std::error_code ec) {
  if (closed_) return;
  const bool timed_out =
      ec == asio::error::operation_aborted && connect_timer_.expiry() <= std::chrono::steady_clock::now();
  if (ec) {
    connect_timer_.cancel();
    onConnectFailure(timed_out ? "connection timeout" : "connection failure: " + ec.message(), timed_out);
    return;
  }
  if (cluster_->transport) {
    const upstream::UpstreamTransport& transport = cluster_->transport->select(*host_);
    if (transport.context) {
      startUpstreamTls();
      return;
    }
  }
  connect_timer_.cancel();
  onConnected();
}

// The cluster's TLS transport for this host: the handshake runs under the connect timeout.
void TcpProxySession::startUpstreamTls() {
  const upstream::UpstreamTransport& transport = cluster_->transport->select(*host_);
  upstream_.attachTls(std::make_unique<tls::TlsTransport>(upstream_.socket(), transport.context->current(),
                                                          tls::TlsTransport::Role::kClient,
                                                          cluster_->transport->handshakeOptions(*host_)));
  upstream_.asyncHandshake([self = shared_from_this(), attempt = attempts_](std::error_code ec) {
    if (self->closed_ || attempt != self->attempts_) return;
    const bool timed_out = !self->upstream_.isOpen();
    self->connect_timer_.cancel();
    if (ec) {
      std::string reason =
          timed_out ? std::string("connection timeout") : self->upstream_.tls()->failureReason();
      self->upstream_ = network::Transport(asio::ip::tcp::socket(self->worker_.io));
      self->onConnectFailure(reason, timed_out);
      return;
    }
    self->onConnected();
  });
}

void TcpProxySession::onConnectFailure(const std::string& reason, bool timeout) {
  const upstream::ClusterInfo& ci = *cluster_;
  ci.trafficStats().upstream_cx_connect_fail.inc();
  if (timeout) ci.trafficStats().upstream_cx_connect_timeout.inc();
  host_->stats().cx_connect_fail.fetch_add(1, std::memory_order_relaxed);
  SKIFF_LOG(kConnection, debug, "[C{}] tcp_proxy: connect to {} failed: {}", info_.connection_id,
            host_->address(), reason);
  upstream_.close();
  releaseUpstream();
  previous_host_ = std::move(host_);
  if (attempts_ < config_->max_connect_attempts) {
    connectAttempt();
    return;
  }
  if (config_->max_connect_attempts > 1) ci.trafficStats().upstream_cx_connect_attempts_exceeded.inc();
  info_.upstream_transport_failure_reason = reason;
  fail(http::ResponseFlag::kUpstreamConnectionFailure, "upstream_connect_failure");
}

void TcpProxySession::onConnected() {
  connected_ = true;
  const upstream::ClusterInfo& ci = *cluster_;
  const auto now = std::chrono::steady_clock::now();
  ci.trafficStats().upstream_cx_connect_ms.record(static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(now - upstream_start_).count()));
  std::error_code ec;
  const auto local = upstream_.socket().local_endpoint(ec);
  if (!ec) info_.upstream_local_address = upstream::formatEndpoint(local);
  info_.first_upstream_rx = now - info_.start;  // "connected" is the TCP analogue of the first byte

  down_to_up_.limit = std::max<size_t>(ci.per_connection_buffer_limit, 1);
  up_to_down_.limit = kDownstreamBufferLimit;
  for (Direction* dir : {&down_to_up_, &up_to_down_}) {
    // Most sessions move little data: start small, grow when a read fills the buffer.
    dir->max_capacity = std::min(dir->limit, kMaxChunk);
    dir->capacity = std::min(dir->max_capacity, kInitialChunk);
    dir->buffer = std::make_unique_for_overwrite<char[]>(dir->capacity);
  }
  if (const tls::TlsConnectionInfo* tls = upstream_.tlsInfo()) {
    info_.upstream_tls = std::make_shared<const tls::TlsConnectionInfo>(*tls);
  }
  upstream_exchange_ = filters::istio::UpstreamExchange::create(cluster_, info_);
  if (upstream_exchange_) {
    // The preface goes before any downstream byte (those queued by filters land after it).
    const std::string& preface = upstream_exchange_->preface();
    Direction& dir = down_to_up_;
    if (preface.size() > dir.capacity) {
      dir.buffer = std::make_unique_for_overwrite<char[]>(preface.size());
      dir.capacity = preface.size();
    }
    std::memcpy(dir.buffer.get(), preface.data(), preface.size());
    dir.end = preface.size();
  }
  last_activity_ = now;
  if (config_->idle_timeout.count() > 0) armIdleTimer(config_->idle_timeout);
  pump(down_to_up_);
  pump(up_to_down_);
}

// Starts whatever the direction can do now: a read into free space, a write of pending bytes, or
// passing on the FIN once everything read has been written.
void TcpProxySession::pump(Direction& dir) {
  if (closed_) return;
  if (!filters_.empty()) {
    if (!dir.overflow.empty() && !dir.writing) placeOverflow(dir);
    startFilteredRead(dir);
  } else if (!dir.reading && !dir.eof) {
    if (dir.grow && !dir.writing) grow(dir);
    if (dir.end == dir.capacity && dir.start > 0 && !dir.writing) {
      std::memmove(dir.buffer.get(), dir.buffer.get() + dir.start, dir.end - dir.start);
      dir.end -= dir.start;
      dir.start = 0;
    }
    if (dir.end < dir.capacity) {
      if (dir.paused) {
        dir.paused = false;
        if (dir.upstream) {
          config_->stats.downstream_flow_control_resumed_reading_total.inc();
        } else {
          cluster_->trafficStats().upstream_flow_control_resumed_reading_total.inc();
        }
      }
      dir.reading = true;
      readSide(dir).asyncReadSome(
          asio::buffer(dir.buffer.get() + dir.end, dir.capacity - dir.end),
          [self = shared_from_this(), &dir](std::error_code ec, size_t n) { self->onRead(dir, ec, n); });
    } else if (!dir.paused && dir.end - dir.start >= dir.limit) {
      // The writing side holds a full connection buffer: the reading side waits (Envoy's watermark).
      dir.paused = true;
      if (dir.upstream) {
        config_->stats.downstream_flow_control_paused_reading_total.inc();
      } else {
        cluster_->trafficStats().upstream_flow_control_paused_reading_total.inc();
      }
    }
  }
  if (!dir.writing && dir.end > dir.start) {
    dir.writing = true;
    writeSide(dir).asyncWrite(
        asio::buffer(dir.buffer.get() + dir.start, dir.end - dir.start),
        [self = shared_from_this(), &dir](std::error_code ec, size_t n) { self->onWrite(dir, ec, n); });
  }
  if (dir.eof && !dir.writing && dir.start == dir.end && !dir.shut && !dir.blocked) {
    dir.shut = true;
    std::error_code ec;
    network::Transport& side = writeSide(dir);
    if (side.tls()) side.tls()->shutdownStep();  // close_notify before the FIN
    side.socket().shutdown(asio::socket_base::shutdown_send, ec);
    if (ec) {
      terminate("shutdown failed");
      return;
    }
    if (down_to_up_.shut && up_to_down_.shut) terminate("");
  }
}

void TcpProxySession::onRead(Direction& dir, std::error_code ec, size_t n) {
  dir.reading = false;
  if (closed_) return;
  const bool filtered = !filters_.empty();  // then the bytes are in `filter_in`
  if (n > 0) {
    last_activity_ = std::chrono::steady_clock::now();
    if (dir.upstream) {
      info_.bytes_received += n;
      config_->stats.downstream_cx_rx_bytes_total.inc(n);
    } else {
      cluster_->trafficStats().upstream_cx_rx_bytes_total.inc(n);
    }
  }
  if (!dir.upstream && upstream_exchange_) {
    // The upstream's exchange preface is not the application's: strip it in place.
    char* at = filtered ? dir.filter_in.get() : dir.buffer.get() + dir.end;
    n = upstream_exchange_->onUpstreamRead(at, n, ec == asio::error::eof);
    if (upstream_exchange_->done()) {
      const std::string restored = upstream_exchange_->takeRestored();
      upstream_exchange_.reset();
      if (!restored.empty()) n = restoreExchangeBytes(dir, restored, n);
    }
  }
  if (n > 0 && !filtered) {
    dir.end += n;
    if (dir.end == dir.capacity && dir.capacity < dir.max_capacity) dir.grow = true;
  }
  if (ec) {
    if (ec != asio::error::eof) {
      terminate(dir.upstream ? "downstream_remote_reset" : "upstream_remote_reset");
      return;
    }
    dir.eof = true;
  }
  if (filtered) {
    if (!filterRead(dir, n)) return;
    if (connected_) {
      pump(dir);
    } else if (!upstream_requested_) {
      startFilteredRead(dir);  // before the upstream connect: nothing is written yet
    }
    return;
  }
  pump(dir);
}

// Bytes an earlier read gave the upstream exchange that were no preface go back in front of this read's
// `n`. Unfiltered, the exchange has held every byte so far (start == end == 0, nothing being written), so
// the read's bytes sit at the buffer's start; filtered, they go before what the filters will see.
size_t TcpProxySession::restoreExchangeBytes(Direction& dir, const std::string& restored, size_t n) {
  if (!filters_.empty()) {
    dir.held.insert(0, restored);
    return n;
  }
  const size_t total = restored.size() + n;
  if (dir.end + total > dir.capacity) {
    auto buffer = std::make_unique_for_overwrite<char[]>(total);
    std::memcpy(buffer.get() + restored.size(), dir.buffer.get() + dir.end, n);
    dir.buffer = std::move(buffer);
    dir.capacity = total;
    dir.start = dir.end = 0;
  } else {
    std::memmove(dir.buffer.get() + dir.end + restored.size(), dir.buffer.get() + dir.end, n);
  }
  std::memcpy(dir.buffer.get() + dir.end, restored.data(), restored.size());
  return total;
}

void TcpProxySession::onWrite(Direction& dir, std::error_code ec, size_t n) {
  dir.writing = false;
  if (closed_) return;
  dir.start += n;
  if (dir.start == dir.end && !dir.reading) dir.start = dir.end = 0;
  if (n > 0) {
    last_activity_ = std::chrono::steady_clock::now();
    if (dir.upstream) {
      cluster_->trafficStats().upstream_cx_tx_bytes_total.inc(n);
    } else {
      info_.bytes_sent += n;
      config_->stats.downstream_cx_tx_bytes_total.inc(n);
    }
  }
  if (ec) {
    terminate(dir.upstream ? "upstream_write_failed" : "downstream_write_failed");
    return;
  }
  pump(dir);
}

// Moves the pending bytes into a buffer four times larger (up to max_capacity). Only while no write
// holds a pointer into the old one.
void TcpProxySession::grow(Direction& dir) {
  dir.grow = false;
  const size_t capacity = std::min(dir.max_capacity, dir.capacity * 4);
  auto buffer = std::make_unique_for_overwrite<char[]>(capacity);
  std::memcpy(buffer.get(), dir.buffer.get() + dir.start, dir.end - dir.start);
  dir.end -= dir.start;
  dir.start = 0;
  dir.buffer = std::move(buffer);
  dir.capacity = capacity;
}

// One timer per session: activity only records a time stamp, and the timer re-arms itself for the rest
// of the period when it fires early.
void TcpProxySession::armIdleTimer(std::chrono::milliseconds after) {
  idle_timer_.expires_after(after);
  idle_timer_.async_wait([self = shared_from_this()](std::error_code ec) {
    if (!ec && !self->closed_) self->onIdleTimer();
  });
}

void TcpProxySession::onIdleTimer() {
  const auto idle_for = std::chrono::steady_clock::now() - last_activity_;
  if (idle_for < config_->idle_timeout) {
    armIdleTimer(std::chrono::duration_cast<std::chrono::milliseconds>(config_->idle_timeout - idle_for) +
                 std::chrono::milliseconds(1));
    return;
  }
  config_->stats.idle_timeout.inc();
  terminate("idle_timeout");
}

void TcpProxySession::fail(http::ResponseFlag flag, std::string details) {
  info_.setFlag(flag);
  info_.response_code_details = std::move(details);
  terminate("");
}

void TcpProxySession::releaseUpstream() {
  if (upstream_counted_) {
    upstream_counted_ = false;
    const upstream::ClusterInfo& ci = *cluster_;
    ci.trafficStats().upstream_cx_active.dec();
    ci.trafficStats().upstream_cx_destroy.inc();
    if (connected_) {
      ci.trafficStats().upstream_cx_length_ms.record(
          static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    std::chrono::steady_clock::now() - upstream_start_)
                                    .count()));
    }
    if (host_) host_->stats().cx_active.fetch_sub(1, std::memory_order_relaxed);
  }
  if (holds_cx_resource_) {
    holds_cx_resource_ = false;
    cluster_->resources.releaseConnection();
  }
}

void TcpProxySession::terminate(std::string_view details) {
  if (closed_) return;
  closed_ = true;
  // Released from the loop: the caller may hold no other reference.
  if (keep_alive_) asio::post(worker_.io, [hold = std::move(keep_alive_)] {});
  if (!details.empty() && info_.connection_termination_details.empty()) {
    info_.connection_termination_details = std::string(details);
  }
  for (auto& f : filters_) f->onClose(info_.connection_termination_details);
  std::error_code ignored;
  connect_timer_.cancel();
  idle_timer_.cancel();
  duration_timer_.cancel();
  upstream_.close();
  downstream_.close();
  releaseUpstream();
  info_.last_downstream_tx = info_.elapsed();
  config_->log(worker_.index, info_);
  worker_.connections.erase(this);
}

}  // namespace skiff::server
