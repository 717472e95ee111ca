// The byte stream under a connection: plain TCP, or TLS over it. Downstream connections, tcp_proxy sessions
// and upstream requests read and write through a Transport instead of the socket, so a connection's code is
// the same whether its peer speaks TLS or not.
//
// Plain TCP costs one predictable branch: asyncReadSome/asyncWrite hand the caller's handler straight to
// asio's socket operations (no wrapper, no type erasure), so asio's per-thread handler memory recycling
// applies exactly as before. TLS runs OpenSSL on the socket's descriptor (tls::TlsTransport steps) and only
// waits for readiness with socket().async_wait; a completion that is ready at once is posted, never
// invoked inside the initiating call.
//
// Rules (as for an asio socket): one read and one write may be outstanding at a time; handlers run on the
// socket's executor; a Transport may be moved only while nothing is outstanding; the owner keeps itself
// alive from its handlers (self captures), and close() makes outstanding operations complete with
// asio::error::operation_aborted.
#pragma once

#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/write.hpp>

#include <memory>
#include <system_error>
#include <utility>

#include "skiff/tls/transport.h"

namespace skiff::network {

class Transport {
 public:
  // Plain TCP (implicit: a socket is a plain transport).
  Transport(asio::ip::tcp::socket socket)
      : socket_(std::move(socket)) {}  // NOLINT(google-explicit-constructor)
  // TLS over `socket`; `tls` was made for this socket and has finished its handshake.
  Transport(asio::ip::tcp::socket socket, std::unique_ptr<tls::TlsTransport> tls)
      : socket_(std::move(socket)), tls_(std::move(tls)) {
    if (tls_) tls_->rebind(socket_);
  }
  Transport(Transport&& other) noexcept : socket_(std::move(other.socket_)), tls_(std::move(other.tls_)) {
    if (tls_) tls_->rebind(socket_);
  }
  Transport& operator=(Transport&& other) noexcept {
    socket_ = std::move(other.socket_);
    tls_ = std::move(other.tls_);
    if (tls_) tls_->rebind(socket_);
    return *this;
  }
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  // Turns a connected plain transport into TLS (before asyncHandshake). `tls` was made for socket().
  void attachTls(std::unique_ptr<tls::TlsTransport> tls) {
    tls_ = std::move(tls);
    if (tls_) tls_->rebind(socket_);
  }
  // Runs the TLS handshake; handler(std::error_code). On failure tls()->failureReason() says why (and the
  // context's ssl.* stats are counted). Cancel it by closing the socket.
  template <typename Handler>
  void asyncHandshake(Handler&& handler) {
    tlsHandshake(std::forward<Handler>(handler), false);
  }

  asio::ip::tcp::socket& socket() { return socket_; }
  const asio::ip::tcp::socket& socket() const { return socket_; }
  bool isOpen() const { return socket_.is_open(); }
  // The TLS session (null for plain TCP).
  tls::TlsTransport* tls() const { return tls_.get(); }
  const tls::TlsConnectionInfo* tlsInfo() const { return tls_ ? &tls_->info() : nullptr; }

  // handler(std::error_code, size_t): some bytes (> 0), or an error (asio::error::eof when the peer closed).
  template <typename Handler>
  void asyncReadSome(asio::mutable_buffer buffer, Handler&& handler) {
    if (!tls_) [[likely]] {
      socket_.async_read_some(buffer, std::forward<Handler>(handler));
      return;
    }
    tlsRead(buffer, std::forward<Handler>(handler), false);
  }

  // handler(std::error_code, size_t): all of `buffer` was written (the bytes must stay valid until then).
  template <typename Handler>
  void asyncWrite(asio::const_buffer buffer, Handler&& handler) {
    if (!tls_) [[likely]] {
      asio::async_write(socket_, buffer, std::forward<Handler>(handler));
      return;
    }
    tlsWrite(buffer, buffer.size(), std::forward<Handler>(handler), false);
  }

  // Half-close: TLS sends close_notify first (best effort, never waits), then the TCP FIN.
  void shutdownWrite() {
    if (tls_) tls_->shutdownStep();
    std::error_code ignored;
    socket_.shutdown(asio::socket_base::shutdown_send, ignored);
  }
  void cancel() {
    std::error_code ignored;
    socket_.cancel(ignored);
  }
  void close() {
    std::error_code ignored;
    socket_.close(ignored);
  }

 private:
  static asio::socket_base::wait_type waitFor(tls::TlsTransport::Want want) {
    return want == tls::TlsTransport::Want::kRead ? asio::socket_base::wait_read
                                                  : asio::socket_base::wait_write;
  }

  template <typename Handler>
  void tlsHandshake(Handler&& handler, bool resumed) {
    const tls::TlsTransport::Step step = tls_->handshakeStep();
    if (step.want == tls::TlsTransport::Want::kNone) {
      completeOne(std::forward<Handler>(handler), step.error, resumed);
      return;
    }
    socket_.async_wait(waitFor(step.want),
                       [this, h = std::forward<Handler>(handler)](std::error_code ec) mutable {
                         // A wait that completed just before close() must not step OpenSSL on an fd
                         // number the kernel may already have given to another connection.
                         if (!ec && !socket_.is_open()) ec = asio::error::operation_aborted;
                         if (ec) {
                           h(std::error_code(tls::make_error_code(tls::TlsError::kHandshakeFailed)));
                           return;
                         }
                         tlsHandshake(std::move(h), true);
                       });
  }

  template <typename Handler>
  void completeOne(Handler&& handler, std::error_code ec, bool resumed) {
    if (resumed) {
      handler(ec);
      return;
    }
    asio::post(socket_.get_executor(), [h = std::forward<Handler>(handler), ec]() mutable { h(ec); });
  }

  // `resumed`: called from a readiness wait's completion, so the handler may run right here.
  template <typename Handler>
  void tlsRead(asio::mutable_buffer buffer, Handler&& handler, bool resumed) {
    const tls::TlsTransport::Step step = tls_->readStep(buffer);
    if (step.want == tls::TlsTransport::Want::kNone) {
      complete(std::forward<Handler>(handler), step.error, step.bytes, resumed);
      return;
    }
    socket_.async_wait(waitFor(step.want),
                       [this, buffer, h = std::forward<Handler>(handler)](std::error_code ec) mutable {
                         if (!ec && !socket_.is_open()) ec = asio::error::operation_aborted;
                         if (ec) {
                           h(ec, size_t{0});
                           return;
                         }
                         tlsRead(buffer, std::move(h), true);
                       });
  }

  template <typename Handler>
  void tlsWrite(asio::const_buffer rest, size_t total, Handler&& handler, bool resumed) {
    while (rest.size() > 0) {
      const tls::TlsTransport::Step step = tls_->writeStep(rest);
      if (step.error) {
        complete(std::forward<Handler>(handler), step.error, total - rest.size(), resumed);
        return;
      }
      if (step.want != tls::TlsTransport::Want::kNone) {
        socket_.async_wait(waitFor(step.want), [this, rest, total, h = std::forward<Handler>(handler)](
                                                   std::error_code ec) mutable {
          if (!ec && !socket_.is_open()) ec = asio::error::operation_aborted;
          if (ec) {
            h(ec, total - rest.size());
            return;
          }
          tlsWrite(rest, total, std::move(h), true);
        });
        return;
      }
      rest += step.bytes;
    }
    complete(std::forward<Handler>(handler), std::error_code(), total, resumed);
  }

  template <typename Handler>
  void complete(Handler&& handler, std::error_code ec, size_t n, bool resumed) {
    if (resumed) {
      handler(ec, n);
      return;
    }
    asio::post(socket_.get_executor(), [h = std::forward<Handler>(handler), ec, n]() mutable { h(ec, n); });
  }

  asio::ip::tcp::socket socket_;
  std::unique_ptr<tls::TlsTransport> tls_;
};

}  // namespace skiff::network
