// HTTP codec selection for a downstream connection: codec_type, ALPN, and the h2c prior-knowledge sniffer.
#include "server/http/http_codec_selection.h"

#include <poll.h>
#include <sys/socket.h>

#include <asio/steady_timer.hpp>

#include <algorithm>
#include <string_view>

#include "server/http/http1_server_connection.h"
#include "server/http/http2_server_connection.h"
#include "skiff/common/logging.h"

namespace skiff::server {

namespace {

constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

std::shared_ptr<DownstreamConnection> startCodec(WorkerContext& worker, const ListenerConfig* listener,
                                                 ConnectionManagerConfigSharedPtr hcm,
                                                 network::Transport transport,
                                                 network::ConnectionInfoConstSharedPtr info, bool h2) {
  if (h2) {
    auto conn = std::make_shared<Http2ServerConnection>(worker, std::move(transport), std::move(hcm),
                                                        listener->stats, std::move(info));
    conn->accepted_by = listener;
    conn->start();
    return conn;
  }
  auto conn = std::make_shared<Http1ServerConnection>(worker, std::move(transport), std::move(hcm),
                                                      listener->stats, std::move(info));
  conn->accepted_by = listener;
  conn->start();
  return conn;
}

// Waits for the first bytes of a plaintext AUTO connection and peeks (never consumes) them: the HTTP/2
// client preface means h2c prior knowledge, anything else HTTP/1.1. Registered with the worker meanwhile,
// so drains and shutdown close it.
class PrefaceSniffer : public DownstreamConnection, public std::enable_shared_from_this<PrefaceSniffer> {
 public:
  PrefaceSniffer(WorkerContext& worker, const ListenerConfig& listener, ConnectionManagerConfigSharedPtr hcm,
                 network::Transport transport, network::ConnectionInfoConstSharedPtr info)
      : worker_(worker),
        listener_(listener),
        keep_listener_(listener.weak_from_this().lock()),
        hcm_(std::move(hcm)),
        transport_(std::move(transport)),
        info_(std::move(info)),
        timer_(worker.io) {}
  ~PrefaceSniffer() override { worker_.connections.erase(this); }

  void start() {
    accepted_by = &listener_;
    worker_.connections.insert(this);
    if (hcm_->idle_timeout.count() > 0) {
      // Nothing arrives: the HCM's idle timeout applies, as it would to an HTTP/1 connection.
      timer_.expires_after(hcm_->idle_timeout);
      timer_.async_wait([weak = weak_from_this()](std::error_code ec) {
        auto self = weak.lock();
        if (ec || !self || self->done_) return;
        self->hcm_->stats.downstream_cx_idle_timeout.inc();
        self->close();
      });
    }
    wait();
  }
  // Server shutdown closes at once; a listener drain lets the first request in (the codec then drains),
  // and the worker closes the socket when the drain time is up.
  void drain() override {
    if (worker_.draining) {
      close();
      return;
    }
    drain_requested_ = true;
  }
  void close() override {
    if (done_) return;
    done_ = true;
    worker_.connections.erase(this);
    timer_.cancel();
    transport_.close();
  }

 private:
  void wait() {
    transport_.socket().async_wait(asio::ip::tcp::socket::wait_read,
                                   [self = shared_from_this()](std::error_code ec) { self->onReadable(ec); });
  }

  void onReadable(std::error_code ec) {
    if (done_) return;
    if (ec) {
      close();
      return;
    }
    char buf[kPreface.size()];
    const ssize_t n = ::recv(transport_.socket().native_handle(), buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      wait();
      return;
    }
    const size_t got = n > 0 ? static_cast<size_t>(n) : 0;
    const bool prefix = got > 0 && kPreface.substr(0, got) == std::string_view(buf, got);
    // A FIN after part of the preface keeps the socket readable with the same bytes: that is the end, not
    // "more to come" (waiting again would spin).
    if (prefix && got < kPreface.size() && !peerClosed()) {
      // Part of the preface: wake only once all of it (or a FIN) is there, so the wait does not spin.
      setLowWater(static_cast<int>(kPreface.size()));
      wait();
      return;
    }
    setLowWater(1);
    done_ = true;
    timer_.cancel();
    worker_.connections.erase(this);
    // A closed or reset socket (got == 0) goes to HTTP/1, which sees the end and cleans up.
    auto conn = startCodec(worker_, &listener_, std::move(hcm_), std::move(transport_), std::move(info_),
                           prefix && got == kPreface.size());
    if (drain_requested_) conn->drain();
  }

  bool peerClosed() {
    pollfd p{transport_.socket().native_handle(), POLLRDHUP, 0};
    return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
  }

  void setLowWater(int value) {
    ::setsockopt(transport_.socket().native_handle(), SOL_SOCKET, SO_RCVLOWAT, &value, sizeof(value));
  }

  WorkerContext& worker_;
  const ListenerConfig& listener_;
  const std::shared_ptr<const ListenerConfig> keep_listener_;
  ConnectionManagerConfigSharedPtr hcm_;
  network::Transport transport_;
  network::ConnectionInfoConstSharedPtr info_;
  asio::steady_timer timer_;
  bool done_ = false;
  bool drain_requested_ = false;
};

}  // namespace

HttpCodecChoice selectHttpCodec(const ConnectionManagerConfig& hcm, const network::ConnectionInfo& info,
                                bool tls, bool http_inspected) {
  using CodecType = ConnectionManagerConfig::CodecType;
  if (hcm.codec_type == CodecType::kHttp1) return HttpCodecChoice::kHttp1;
  if (hcm.codec_type == CodecType::kHttp2) return HttpCodecChoice::kHttp2;
  if (tls) return info.alpn == "h2" ? HttpCodecChoice::kHttp2 : HttpCodecChoice::kHttp1;
  const auto& protocols = info.application_protocols;
  if (std::find(protocols.begin(), protocols.end(), "h2c") != protocols.end()) return HttpCodecChoice::kHttp2;
  // http_inspector already looked at the first bytes (or timed out): what it did not call h2c is HTTP/1.
  if (http_inspected) return HttpCodecChoice::kHttp1;
  if (std::find(protocols.begin(), protocols.end(), "http/1.1") != protocols.end() ||
      std::find(protocols.begin(), protocols.end(), "http/1.0") != protocols.end()) {
    return HttpCodecChoice::kHttp1;
  }
  return HttpCodecChoice::kSniff;
}

bool runsHttpInspector(const ListenerConfig& listener) {
  for (const auto& f : listener.listener_filters) {
    if (f.name.find("http_inspector") != std::string::npos) return true;
  }
  return false;
}

void startHttpConnection(WorkerContext& worker, const ListenerConfig& listener,
                         ConnectionManagerConfigSharedPtr hcm, network::Transport transport,
                         network::ConnectionInfoConstSharedPtr info) {
  const HttpCodecChoice choice =
      selectHttpCodec(*hcm, *info, transport.tls() != nullptr, runsHttpInspector(listener));
  if (choice == HttpCodecChoice::kSniff) {
    std::make_shared<PrefaceSniffer>(worker, listener, std::move(hcm), std::move(transport), std::move(info))
        ->start();
    return;
  }
  startCodec(worker, &listener, std::move(hcm), std::move(transport), std::move(info),
             choice == HttpCodecChoice::kHttp2);
}

}  // namespace skiff::server
