// AdminServer: accepts admin connections on the main loop and serves HTTP/1.1 requests (keep-alive,
// pipelining, Content-Length or chunked request bodies) through the endpoint table in handlers.cc.
#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <ctime>
#include <unordered_set>

#include "admin/handlers.h"
#include "skiff/http/http1_parser.h"
#include "skiff/http/http1_writer.h"

namespace skiff::server {

namespace {

using asio::ip::tcp;
constexpr auto kToken = asio::experimental::as_tuple(asio::use_awaitable);
constexpr size_t kMaxRequestBody = 64 * 1024;

std::string httpDate() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[64];
  size_t n = std::strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return std::string(buf, n);
}

// Head and body of one admin response.
std::string serialize(const AdminServer::Response& response, int version_minor, bool keep_alive,
                      bool head_only) {
  http::HeaderMap headers;
  headers.add(http::headers::kStatus, std::to_string(response.status));
  headers.add(http::headers::kContentType, response.content_type);
  headers.add("cache-control", "no-cache, max-age=0");
  headers.add("x-content-type-options", "nosniff");
  headers.add(http::headers::kDate, httpDate());
  headers.add(http::headers::kContentLength, std::to_string(response.body.size()));
  if (!keep_alive) {
    headers.add(http::headers::kConnection, "close");
  } else if (version_minor == 0) {
    headers.add(http::headers::kConnection, "keep-alive");
  }
  std::string out;
  http1::writeResponseHead(headers, out, version_minor);
  if (!head_only) out += response.body;
  return out;
}

}  // namespace

struct AdminServer::Impl {
  Impl(asio::io_context& io, const tcp::endpoint& endpoint, AdminContext& context)
      : loop(io), acceptor(io), handlers(context) {
    acceptor.open(endpoint.protocol());
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    acceptor.bind(endpoint);
    acceptor.listen();
    stats::Store& store = context.stats();
    cx_total = store.counter("http.admin.downstream_cx_total");
    cx_http1_total = store.counter("http.admin.downstream_cx_http1_total");
    cx_active = store.gauge("http.admin.downstream_cx_active");
    cx_protocol_error = store.counter("http.admin.downstream_cx_protocol_error");
    listener_cx_total = store.counter("listener.admin.downstream_cx_total");
    listener_cx_active = store.gauge("listener.admin.downstream_cx_active");
  }

  asio::awaitable<void> acceptLoop(std::shared_ptr<Impl> self);
  asio::awaitable<void> serve(std::shared_ptr<Impl> self, tcp::socket socket);
  // Writes an error answer and ends the connection.
  asio::awaitable<void> fail(tcp::socket& socket, uint32_t status, std::string_view detail);
  void close();

  asio::io_context& loop;
  tcp::acceptor acceptor;
  admin::Handlers handlers;
  bool closed = false;
  std::unordered_set<tcp::socket*> connections;
  stats::Counter cx_total, cx_http1_total, cx_protocol_error, listener_cx_total;
  stats::Gauge cx_active, listener_cx_active;
};

asio::awaitable<void> AdminServer::Impl::acceptLoop(std::shared_ptr<Impl> self) {
  while (!closed) {
    auto [ec, socket] = co_await acceptor.async_accept(kToken);
    if (closed) break;
    if (ec) {
      // Out of descriptors and the like: back off instead of spinning.
      asio::steady_timer timer(loop, std::chrono::milliseconds(100));
      co_await timer.async_wait(kToken);
      continue;
    }
    asio::co_spawn(loop, serve(self, std::move(socket)), [](std::exception_ptr) {});
  }
}

asio::awaitable<void> AdminServer::Impl::fail(tcp::socket& socket, uint32_t status, std::string_view detail) {
  cx_protocol_error.inc();
  Response response{status, std::string(admin::kTextType), std::string(detail)};
  std::string out = serialize(response, 1, false, false);
  co_await asio::async_write(socket, asio::buffer(out), kToken);
  std::error_code ignored;
  socket.shutdown(tcp::socket::shutdown_send, ignored);
}

asio::awaitable<void> AdminServer::Impl::serve(std::shared_ptr<Impl> self, tcp::socket socket) {
  connections.insert(&socket);
  cx_total.inc();
  cx_http1_total.inc();
  listener_cx_total.inc();
  cx_active.inc();
  listener_cx_active.inc();
  struct Guard {
    Impl* impl;
    tcp::socket* socket;
    ~Guard() {
      impl->connections.erase(socket);
      impl->cx_active.dec();
      impl->listener_cx_active.dec();
    }
  } guard{this, &socket};

  std::string buffer;
  char chunk[8192];
  auto readMore = [&]() -> asio::awaitable<bool> {
    auto [ec, n] = co_await socket.async_read_some(asio::buffer(chunk), kToken);
    if (ec || closed) co_return false;
    buffer.append(chunk, n);
    co_return true;
  };

  while (!closed) {
    http1::RequestParser parser;
    size_t consumed = 0;
    for (;;) {
      if (!buffer.empty()) {
        auto status = parser.feed(buffer, &consumed);
        if (status == http1::RequestParser::Status::kDone) break;
        if (status == http1::RequestParser::Status::kError) {
          const auto& error = parser.error();
          co_await fail(socket, error.status != 0 ? error.status : 400, error.detail);
          co_return;
        }
      }
      if (!co_await readMore()) co_return;
    }
    buffer.erase(0, consumed);

    std::string body;
    if (parser.framing() != http1::Framing::kNone) {
      if (parser.framing() == http1::Framing::kContentLength && parser.contentLength() > kMaxRequestBody) {
        co_await fail(socket, 413, "request body too large");
        co_return;
      }
      if (parser.expectContinue()) {
        static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
        auto [ec, n] = co_await asio::async_write(socket, asio::buffer(kContinue), kToken);
        if (ec) co_return;
      }
      http1::BodyDecoder decoder(parser.framing(), parser.contentLength());
      for (;;) {
        size_t used = 0;
        auto status = decoder.decode(buffer, &used, body);
        buffer.erase(0, used);
        if (status == http1::BodyDecoder::Status::kDone) break;
        if (status == http1::BodyDecoder::Status::kError) {
          co_await fail(socket, 400, decoder.error().detail);
          co_return;
        }
        if (body.size() > kMaxRequestBody) {
          co_await fail(socket, 413, "request body too large");
          co_return;
        }
        if (!co_await readMore()) co_return;
      }
    }

    const std::string method(parser.headers().getOr(http::headers::kMethod));
    const std::string path(parser.headers().getOr(http::headers::kPath));
    const bool head_only = method == "HEAD";
    bool quit = false;
    Response response = handlers.handle(head_only ? "GET" : method, path, body, &quit);
    const bool keep_alive = parser.keepAlive() && !quit && !closed;
    std::string out = serialize(response, parser.versionMinor(), keep_alive, head_only);
    auto [ec, n] = co_await asio::async_write(socket, asio::buffer(out), kToken);
    if (quit && !closed) handlers.context().quit();
    if (ec || !keep_alive) {
      std::error_code ignored;
      socket.shutdown(tcp::socket::shutdown_send, ignored);
      co_return;
    }
  }
}

void AdminServer::Impl::close() {
  if (closed) return;
  closed = true;
  std::error_code ignored;
  acceptor.close(ignored);
  for (tcp::socket* socket : connections) socket->close(ignored);
}

AdminServer::AdminServer(asio::io_context& loop, const asio::ip::tcp::endpoint& endpoint,
                         AdminContext& context)
    : impl_(std::make_shared<Impl>(loop, endpoint, context)) {
  asio::co_spawn(loop, impl_->acceptLoop(impl_), [](std::exception_ptr) {});
}

AdminServer::~AdminServer() {
  impl_->close();
}

asio::ip::tcp::endpoint AdminServer::localEndpoint() const {
  std::error_code ec;
  return impl_->acceptor.local_endpoint(ec);
}

void AdminServer::close() {
  impl_->close();
}

AdminServer::Response AdminServer::handle(std::string_view method, std::string_view path_and_query,
                                          std::string_view body) {
  bool quit = false;
  Response response = impl_->handlers.handle(method, path_and_query, body, &quit);
  if (quit) {
    asio::post(impl_->loop, [impl = impl_] {
      if (!impl->closed) impl->handlers.context().quit();
    });
  }
  return response;
}

}  // namespace skiff::server
