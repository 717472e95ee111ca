// ActiveSocket: runs the listener filters of one accepted socket, then hands it to its filter chain.
#include "server/active_socket.h"

#include <poll.h>
#include <sys/socket.h>

#include <asio/steady_timer.hpp>
#include <optional>

#include "server/http/http1_server_connection.h"
#include "server/http/http_codec_selection.h"
#include "server/tcp/network_filter_relay.h"
#include "skiff/common/logging.h"
#include "skiff/network/transport.h"
#include "skiff/upstream/host.h"

namespace skiff::server {

namespace {

constexpr size_t kInitialPeekBytes = 4096;

class ActiveSocket : public DownstreamConnection, public std::enable_shared_from_this<ActiveSocket> {
 public:
  ActiveSocket(WorkerContext& worker, const ListenerIndex& index, const ListenerConfig& listener,
               asio::ip::tcp::socket socket, std::shared_ptr<network::ConnectionInfo> info,
               bool allow_hand_off)
      : worker_(worker),
        index_(index),
        listener_(listener),
        keep_listener_(listener.weak_from_this().lock()),
        socket_(std::move(socket)),
        info_(std::move(info)),
        allow_hand_off_(allow_hand_off) {}

  ~ActiveSocket() override {
    worker_.connections.erase(this);
    if (pre_cx_counted_) listener_.stats.downstream_pre_cx_active.dec();
  }

  void start() {
    info_->listener_name = listener_.name;
    accepted_by = &listener_;
    worker_.connections.insert(this);  // so the worker's stop() and listener drains close it
    runFilters();
  }

  // Not a connection yet: a drained listener drops its pending sockets, as Envoy does.
  void drain() override { finish(); }
  void close() override { finish(); }

 private:
  // Runs filters from next_ until one needs bytes that are not there yet.
  void runFilters() {
    const auto& filters = listener_.listener_filters;
    while (next_ < filters.size()) {
      const auto& entry = filters[next_];
      ListenerFilterStatus status;
      if (in_filter_) {
        status = entry.filter->onData(std::string_view(peeked_.data(), peeked_len_), end_stream_, *info_);
      } else if (entry.disabled && entry.disabled->matches(*info_)) {
        ++next_;
        continue;
      } else {
        status = entry.filter->onAccept(socket_.native_handle(), *info_);
        if (status == ListenerFilterStatus::kNeedData && peeked_len_ > 0) {
          status = entry.filter->onData(std::string_view(peeked_.data(), peeked_len_), end_stream_, *info_);
        }
      }
      switch (status) {
        case ListenerFilterStatus::kContinue:
          in_filter_ = false;
          ++next_;
          continue;
        case ListenerFilterStatus::kClose:
          listener_.stats.downstream_listener_filter_error.inc();
          SKIFF_LOG(kConnection, debug, "[C{}] listener filter {} closed the connection", info_->id,
                    entry.name);
          finish();
          return;
        case ListenerFilterStatus::kNeedData:
          in_filter_ = true;
          if (!end_stream_ && peeked_len_ > 0 && peeked_len_ >= listener_.max_peek_bytes) {
            // The peek window is full: no more bytes can reach the filter, so it must decide now.
            end_stream_ = true;
            continue;
          }
          if (end_stream_) {  // the filter had its last chance; nothing more will arrive
            in_filter_ = false;
            ++next_;
            continue;
          }
          if (!speculated_) {
            // The bytes often arrived with (or before) the accept: look before waiting a loop turn.
            speculated_ = true;
            const Peek got = peek(false);
            if (got == Peek::kGone) return;
            if (got == Peek::kMore) continue;
          }
          waitForData();
          return;
      }
    }
    done();
  }

  void waitForData() {
    if (!pre_cx_counted_) {
      pre_cx_counted_ = true;
      listener_.stats.downstream_pre_cx_active.inc();
      if (listener_.listener_filters_timeout.count() > 0) {
        timer_.emplace(worker_.io);
        timer_->expires_after(listener_.listener_filters_timeout);
        timer_->async_wait([self = shared_from_this()](std::error_code ec) {
          if (!ec) self->onTimeout();
        });
      }
    }
    waiting_ = true;
    // The reactor may report the socket readable again for bytes already peeked (they are still
    // queued). SO_RCVLOWAT makes the kernel report readability only once there is more than that (a FIN
    // is always reported), so waiting does not spin.
    setLowWater(peeked_len_ + 1);
    socket_.async_wait(asio::ip::tcp::socket::wait_read, [self = shared_from_this()](std::error_code ec) {
      self->waiting_ = false;
      if (self->finished_) return;
      if (ec) {
        self->finish();
        return;
      }
      self->onReadable();
    });
  }

  enum class Peek { kMore, kNone, kGone };

  // Peeks everything the socket holds (up to max_peek_bytes). `woken`: the reactor reported the socket
  // readable; finding no new bytes then means a FIN only if the kernel confirms one (kNone otherwise).
  Peek peek(bool woken) {
    Peek result = Peek::kNone;
    while (true) {
      if (peeked_.size() == peeked_len_) {
        if (peeked_.size() >= listener_.max_peek_bytes) break;  // a filter asks for more than it declared
        peeked_.resize(std::min(listener_.max_peek_bytes, std::max(kInitialPeekBytes, peeked_.size() * 4)));
      }
      const ssize_t n =
          ::recv(socket_.native_handle(), peeked_.data(), peeked_.size(), MSG_PEEK | MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) break;
      if (n <= 0) {
        // Reset, or closed before the listener filters were done.
        listener_.stats.downstream_listener_filter_remote_close.inc();
        finish();
        return Peek::kGone;
      }
      const auto got = static_cast<size_t>(n);
      if (got > peeked_len_) result = Peek::kMore;
      // An edge-triggered wake with nothing new may be for bytes peeked already: only a FIN the kernel
      // confirms ends the stream; otherwise the caller waits again.
      if (woken && got == peeked_len_ && got < peeked_.size() && peerHalfClosed()) {
        end_stream_ = true;
        result = Peek::kMore;  // the filter gets its last chance
      }
      peeked_len_ = got;
      if (got < peeked_.size()) break;
    }
    return result;
  }

  bool peerHalfClosed() {
    pollfd p{socket_.native_handle(), POLLRDHUP, 0};
    return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP)) != 0;
  }

  void onReadable() {
    const Peek got = peek(true);
    if (got == Peek::kGone) return;
    if (got == Peek::kNone) {  // a spurious wake: the filter has seen all of it already
      waitForData();
      return;
    }
    runFilters();
  }

  void onTimeout() {
    if (finished_) return;
    if (listener_.continue_on_listener_filters_timeout) {
      SKIFF_LOG(kConnection, debug, "[C{}] listener filters timed out; continuing", info_->id);
      next_ = listener_.listener_filters.size();
      in_filter_ = false;
      done();
      return;
    }
    listener_.stats.downstream_pre_cx_timeout.inc();
    finish();
  }

  // Stops everything pending; the socket is closed unless it was moved on.
  void finish() {
    worker_.connections.erase(this);
    finished_ = true;
    if (timer_) timer_->cancel();
    std::error_code ignored;
    if (waiting_) socket_.cancel(ignored);
    if (socket_.is_open()) socket_.close(ignored);
  }

  // SO_RCVLOWAT: the bytes a read (and readability) needs. Best effort: without it a wake may be spurious,
  // which onReadable() tolerates.
  void setLowWater(size_t bytes) {
    const int value = static_cast<int>(std::min<size_t>(bytes, 1 << 30));
    if (value == low_water_) return;
    if (::setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVLOWAT, &value, sizeof(value)) == 0)
      low_water_ = value;
  }

  void done() {
    setLowWater(1);  // the connection reads normally
    worker_.connections.erase(this);
    finished_ = true;
    if (timer_) timer_->cancel();
    std::error_code ignored;
    if (waiting_) socket_.cancel(ignored);
    if (pre_cx_counted_) {
      pre_cx_counted_ = false;
      listener_.stats.downstream_pre_cx_active.dec();
    }
    if (allow_hand_off_ && listener_.use_original_dst && info_->local_restored) {
      const ListenerConfig* target = index_.find(info_->local);
      if (target != nullptr && target != &listener_) {
        SKIFF_LOG(kConnection, debug, "[C{}] {} hands off to listener '{}' for {}", info_->id, listener_.name,
                  target->name, upstream::formatEndpoint(info_->local));
        auto next =
            std::make_shared<ActiveSocket>(worker_, index_, *target, std::move(socket_), info_, false);
        next->start();
        return;
      }
    }
    serveConnection(worker_, listener_, std::move(socket_), info_);
  }

  WorkerContext& worker_;
  const ListenerIndex& index_;
  const ListenerConfig& listener_;
  const std::shared_ptr<const ListenerConfig> keep_listener_;  // null only for unowned test configs
  asio::ip::tcp::socket socket_;
  std::shared_ptr<network::ConnectionInfo> info_;
  const bool allow_hand_off_;
  size_t next_ = 0;         // the filter whose turn it is
  bool in_filter_ = false;  // next_ returned kNeedData and waits for onData()
  std::string peeked_;      // peek buffer; [0, peeked_len_) holds the first bytes of the stream
  size_t peeked_len_ = 0;
  bool end_stream_ = false;
  bool speculated_ = false;  // one peek was tried before the first wait
  bool waiting_ = false;
  bool finished_ = false;
  bool pre_cx_counted_ = false;
  int low_water_ = 1;
  std::optional<asio::steady_timer> timer_;
};

}  // namespace

// Hands a connection whose transport is ready (plain, or TLS after its handshake) to the chain's network
// filter. `listener` and `chain` are kept alive by the caller for the duration of the call.
void dispatch(WorkerContext& worker, const ListenerConfig& listener, const FilterChainConfig& chain,
              network::Transport transport, network::ConnectionInfoConstSharedPtr info) {
  if (chain.hcm) {
    if (!chain.network_filters.empty()) {  // network filters in front of the HCM (WASM-FEAT)
      startFilteredHttpConnection(worker, listener, chain, std::move(transport), std::move(info));
      return;
    }
    startHttpConnection(worker, listener, chain.hcm, std::move(transport), std::move(info));  // H2 hook
    return;
  }
#ifdef SKIFF_HAVE_TCP_PROXY
  if (chain.tcp_proxy) {
    auto session = std::make_shared<TcpProxySession>(worker, std::move(transport), chain.tcp_proxy,
                                                     listener.stats, std::move(info));
    session->accepted_by = &listener;
    session->setNetworkFilters(chain.network_filters);  // Wasm network filters (WASM-FEAT)
    session->start();
    return;
  }
#endif
  transport.close();
}

// TLS termination for one connection: the handshake (bounded by transport_socket_connect_timeout), then
// the chain's network filter gets the TLS transport. Registered with the worker meanwhile, so drains and
// shutdown close it. Failures are counted by the context (listener.<addr>.ssl.*) and close the socket:
// a plaintext client on a TLS-only chain gets nothing through.
class DownstreamHandshake : public DownstreamConnection,
                            public std::enable_shared_from_this<DownstreamHandshake> {
 public:
  DownstreamHandshake(WorkerContext& worker, const ListenerConfig& listener, const FilterChainConfig& chain,
                      asio::ip::tcp::socket socket, std::shared_ptr<network::ConnectionInfo> info)
      : worker_(worker),
        listener_(listener),
        keep_listener_(listener.weak_from_this().lock()),
        chain_(chain),
        transport_(std::move(socket)),
        info_(std::move(info)),
        timer_(worker.io) {}

  ~DownstreamHandshake() override {
    worker_.connections.erase(this);
    // Failed, timed out or closed before its filter chain ran: Envoy still counts the connection
    // (listener downstream_cx_total / downstream_cx_destroy).
    if (!dispatched_) {
      ListenerStats::ConnectionScope counted(listener_.stats);
    }
  }

  void start() {
    accepted_by = &listener_;
    worker_.connections.insert(this);
    transport_.attachTls(std::make_unique<tls::TlsTransport>(transport_.socket(), chain_.tls->current(),
                                                             tls::TlsTransport::Role::kServer));
    if (chain_.handshake_timeout.count() > 0) {
      timer_.expires_after(chain_.handshake_timeout);
      timer_.async_wait([weak = weak_from_this()](std::error_code ec) {
        auto self = weak.lock();
        if (ec || !self || self->done_) return;
        if (self->chain_.handshake_timeouts) self->chain_.handshake_timeouts->inc();
        SKIFF_LOG(kConnection, debug, "[C{}] TLS handshake timed out", self->info_->id);
        self->finish();
      });
    }
    transport_.asyncHandshake([self = shared_from_this()](std::error_code ec) { self->onHandshake(ec); });
  }

  void drain() override { finish(); }
  void close() override { finish(); }

 private:
  void onHandshake(std::error_code ec) {
    if (done_) return;
    done_ = true;
    timer_.cancel();
    worker_.connections.erase(this);
    if (ec) {
      SKIFF_LOG(kConnection, debug, "[C{}] TLS handshake on listener '{}' failed: {}", info_->id,
                listener_.name, transport_.tls()->failureReason());
      transport_.close();
      return;
    }
    const tls::TlsConnectionInfo& tls = *transport_.tlsInfo();
    info_->alpn = tls.alpn;
    if (!tls.sni.empty() && info_->server_name.empty()) info_->server_name = tls.sni;
    info_->tls = std::make_shared<const tls::TlsConnectionInfo>(tls);
    dispatched_ = true;
    dispatch(worker_, listener_, chain_, std::move(transport_), std::move(info_));
  }

  void finish() {
    if (done_) return;
    done_ = true;
    worker_.connections.erase(this);
    timer_.cancel();
    transport_.close();  // the handshake completes with operation_aborted
  }

  WorkerContext& worker_;
  const ListenerConfig& listener_;
  const std::shared_ptr<const ListenerConfig> keep_listener_;  // null only for unowned test configs
  const FilterChainConfig& chain_;
  network::Transport transport_;
  std::shared_ptr<network::ConnectionInfo> info_;
  asio::steady_timer timer_;
  bool done_ = false;
  bool dispatched_ = false;  // the network filter owns the connection (and counts it)
};

void serveConnection(WorkerContext& worker, const ListenerConfig& listener, asio::ip::tcp::socket socket,
                     std::shared_ptr<network::ConnectionInfo> info) {
  const FilterChainConfig* chain = listener.selectChain(*info);
  std::error_code ignored;
  if (chain == nullptr) {
    listener.stats.no_filter_chain_match.inc();
    SKIFF_LOG(kConnection, debug, "[C{}] no filter chain of listener '{}' matches {} -> {} (sni '{}', {})",
              info->id, listener.name, upstream::formatEndpoint(info->remote),
              upstream::formatEndpoint(info->local), info->server_name, info->transport_protocol);
    socket.close(ignored);
    return;
  }
  if (!chain->unusable.empty()) {
    SKIFF_LOG(kConnection, debug, "[C{}] filter chain '{}' of listener '{}' closes the connection: {}",
              info->id, chain->name, listener.name, chain->unusable);
    socket.close(ignored);
    return;
  }
  info->listener_name = listener.name;
  info->filter_chain_name = chain->name;
  if (chain->tls) {
    std::make_shared<DownstreamHandshake>(worker, listener, *chain, std::move(socket), std::move(info))
        ->start();
    return;
  }
  dispatch(worker, listener, *chain, network::Transport(std::move(socket)), std::move(info));
}

void onAccepted(WorkerContext& worker, const ListenerIndex& index, const ListenerConfig& listener,
                asio::ip::tcp::socket socket) {
  auto info = std::make_shared<network::ConnectionInfo>();
  info->id = WorkerContext::nextConnectionId();
  std::error_code ec;
  info->local = socket.local_endpoint(ec);
  if (!ec) info->remote = socket.remote_endpoint(ec);
  if (ec) return;  // the peer is already gone
  if (listener.listener_filters.empty()) {
    info->listener_name = listener.name;
    serveConnection(worker, listener, std::move(socket), std::move(info));
    return;
  }
  std::make_shared<ActiveSocket>(worker, index, listener, std::move(socket), std::move(info), true)->start();
}

}  // namespace skiff::server
