// FilteredConnection: a downstream connection whose bytes pass the chain's network filters on their way to
// and from an HCM serving the other end of a socketpair (filters in front of http_connection_manager).
#include "server/tcp/network_filter_relay.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio/post.hpp>
#include <asio/steady_timer.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "server/http/http_codec_selection.h"
#include "skiff/common/logging.h"
#include "skiff/upstream/host.h"

namespace skiff::server {
namespace {

using filters::network::FilterStatus;

constexpr size_t kChunk = 16 * 1024;
constexpr size_t kWriteSlice = 64 * 1024;         // a write's progress restarts the delayed-close timer
constexpr std::chrono::seconds kDelayedClose(1);  // Envoy's delayed_close_timeout default
constexpr std::string_view kH2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

std::string endpointText(const asio::ip::tcp::endpoint& e) {
  return e.port() == 0 && e.address().is_unspecified() ? std::string() : upstream::formatEndpoint(e);
}

class FilteredConnection : public DownstreamConnection,
                           public std::enable_shared_from_this<FilteredConnection>,
                           private filters::network::FilterCallbacks {
 public:
  FilteredConnection(WorkerContext& worker, const ListenerConfig& listener, network::Transport client,
                     asio::ip::tcp::socket hcm, network::ConnectionInfoConstSharedPtr info, bool hold_preface)
      : worker_(worker),
        keep_listener_(listener.weak_from_this().lock()),
        client_(std::move(client)),
        hcm_(std::move(hcm)),
        hold_preface_(hold_preface),
        limit_(std::max<size_t>(listener.buffer_limit, 1)),
        close_timer_(worker.io) {
    accepted_by = &listener;
    info_.protocol = "-";
    info_.connection = info;
    info_.connection_id = info->id;
    info_.downstream_local_address = endpointText(info->local);
    info_.downstream_remote_address = endpointText(info->remote);
    info_.downstream_direct_remote_address = info_.downstream_remote_address;
    info_.requested_server_name = info->server_name;
  }
  ~FilteredConnection() override {
    // Normally terminate() ran already; if not (the worker's loop went away), the filters still get their
    // onClose while this object is whole (callbacks from there find closed_ set).
    terminate("");
    worker_.connections.erase(this);
  }

  void setFilters(const std::vector<filters::network::FilterFactorySharedPtr>& factories) {
    for (const auto& factory : factories) {
      if (!factory->runsBeforeHcm()) continue;
      if (auto filter = factory->createFilter()) {
        filter->setCallbacks(*this);
        filters_.push_back(std::move(filter));
      }
    }
  }

  void start() {
    // The connection owns itself until it ends: with both directions held at the limit no operation is
    // in flight to keep it alive. terminate() (also from the worker's close() at shutdown) lets go.
    self_ = shared_from_this();
    worker_.connections.insert(this);
    std::error_code ignored;
    client_.socket().set_option(asio::ip::tcp::no_delay(true), ignored);
    if (!runClientFilters(0)) return;
    readClient();
    readHcm();
  }

  // The HCM drains its own connection; when it closes its end, this one closes too.
  void drain() override {}
  void close() override { terminate("closed by proxy"); }

 private:
  // Bytes on their way to one side.
  struct Side {
    std::string held;     // filters stopped on them (they come again, with the next ones)
    std::string out;      // filtered, waiting for the write
    std::string writing;  // being written, in slices from `offset`
    std::unique_ptr<char[]> chunk;
    bool reading = false;
    bool eof = false;   // the sending side sent its FIN
    bool shut = false;  // the FIN was passed on
    size_t offset = 0;
    size_t written = 0;
    size_t queued() const { return held.size() + out.size() + writing.size(); }
  };

  // filters::network::FilterCallbacks
  asio::io_context& dispatcher() override { return worker_.io; }
  const http::StreamInfo& streamInfo() const override { return info_; }
  upstream::ThreadLocalClusterManager* clusterManager() override { return &worker_.clusters; }
  upstream::ConnPoolMap* connPools() override { return &worker_.pools; }
  void closeConnection(std::string_view details) override {
    if (closed_ || closing_ || pending_close_) return;
    auto self = weak_from_this().lock();
    if (!self) return;  // being destroyed: terminate() runs from the destructor
    pending_close_ = std::string(details);
    asio::post(worker_.io, [self = std::move(self)] { self->beginClose(*self->pending_close_); });
  }
  void continueReading(filters::network::Filter& filter) override {
    size_t index = SIZE_MAX;
    for (size_t i = 0; i < filters_.size(); ++i) {
      if (filters_[i].get() == &filter) index = i;
    }
    if (index == SIZE_MAX || closed_) return;
    auto self = weak_from_this().lock();
    if (!self) return;
    asio::post(worker_.io, [self = std::move(self), index] {  // after the callback that asked
      if (self->closed_ || self->stopped_at_ != index || !self->hcmTakesData()) return;
      if (!self->runClientFilters(index + 1)) return;
      self->flush(self->to_hcm_, self->hcm_);
      self->readClient();
    });
  }

  // The HCM still takes the client's bytes (it has not closed, no write to it failed, no close pending).
  bool hcmTakesData() const { return !hcm_closed_ && !hcm_write_failed_ && !closing_; }

  // The client's bytes through the filters from `from` (onNewConnection for those not started yet); past
  // the last one they are queued for the HCM. False when the connection ended or is closing.
  bool runClientFilters(size_t from) {
    Side& side = to_hcm_;
    bool stopped = false;
    for (size_t i = from; i < filters_.size() && !stopped && !pending_close_; ++i) {
      if (i >= started_) {
        started_ = i + 1;
        stopped = filters_[i]->onNewConnection() == FilterStatus::kStop;
      }
      if (!stopped && !pending_close_ && (!side.held.empty() || side.eof)) {
        stopped = filters_[i]->onDownstreamData(side.held, side.eof) == FilterStatus::kStop;
      }
      if (stopped) stopped_at_ = i;
    }
    if (pending_close_) beginClose(*pending_close_);
    if (closed_ || closing_) return false;
    blocked_ = stopped;
    if (stopped) return true;
    stopped_at_ = SIZE_MAX;
    side.out.append(side.held);
    side.held.clear();
    return true;
  }

  // The HCM's bytes through the filters in reverse order; false when the connection ended or is closing.
  bool runHcmFilters() {
    Side& side = to_client_;
    bool stopped = false;
    for (auto it = filters_.rbegin(); it != filters_.rend() && !stopped && !pending_close_; ++it) {
      stopped = (*it)->onUpstreamData(side.held, side.eof) == FilterStatus::kStop;
    }
    if (pending_close_) beginClose(*pending_close_);
    if (closed_ || closing_) return false;
    if (stopped && !side.eof) return true;  // held: they come again with the next bytes
    side.out.append(side.held);
    side.held.clear();
    return true;
  }

  void readClient() {
    Side& side = to_hcm_;
    if (closed_ || side.reading || side.eof || side.queued() >= limit_) return;
    if (!side.chunk) side.chunk = std::make_unique_for_overwrite<char[]>(kChunk);
    side.reading = true;
    client_.asyncReadSome(asio::buffer(side.chunk.get(), kChunk),
                          [self = shared_from_this()](std::error_code ec, size_t n) {
                            self->to_hcm_.reading = false;
                            if (self->closed_) return;
                            if (!self->hcmTakesData()) {  // the client's bytes are dropped
                              if (!ec) return self->readClient();
                              if (self->closing_) return self->terminate(self->close_details_);
                              if (self->hcm_closed_) return self->terminate("");  // lingering: done
                              if (ec != asio::error::eof) return self->terminate("downstream_reset");
                              self->to_hcm_.eof = true;  // the HCM's answer may still be on its way
                              return;
                            }
                            if (ec && ec != asio::error::eof) return self->terminate("downstream_reset");
                            if (ec) {
                              self->to_hcm_.eof = true;
                            } else {
                              self->to_hcm_.held.append(self->to_hcm_.chunk.get(), n);
                            }
                            if (!self->runClientFilters(0)) return;
                            self->flush(self->to_hcm_, self->hcm_);
                            self->readClient();
                          });
  }

  void readHcm() {
    Side& side = to_client_;
    if (closed_ || closing_ || side.reading || side.eof) return;
    if (side.queued() >= limit_) return watchHcmClose();
    if (!side.chunk) side.chunk = std::make_unique_for_overwrite<char[]>(kChunk);
    side.reading = true;
    hcm_.asyncReadSome(asio::buffer(side.chunk.get(), kChunk),
                       [self = shared_from_this()](std::error_code ec, size_t n) {
                         self->to_client_.reading = false;
                         if (self->closed_ || self->closing_) return;
                         if (ec) {
                           self->to_client_.eof = true;  // the HCM closed the connection
                           self->hcmGone();
                         } else {
                           self->to_client_.held.append(self->to_client_.chunk.get(), n);
                         }
                         if (!self->runHcmFilters()) return;
                         self->flush(self->to_client_, self->client_);
                         self->readHcm();
                       });
  }

  // Not reading the HCM (the client is slow to take its answer): still notice when the HCM closes its end
  // (its idle timeout gave up on the client), so a client that never reads cannot pin the connection.
  void watchHcmClose() {
    if (hcm_gone_ || hup_wait_ || closed_) return;
    pollfd p{hcm_.socket().native_handle(), POLLRDHUP, 0};
    if (::poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR)) != 0) return hcmGone();
    hup_wait_ = true;  // asio completes an error wait on EPOLLHUP/EPOLLERR
    hcm_.socket().async_wait(asio::socket_base::wait_error, [self = shared_from_this()](std::error_code ec) {
      self->hup_wait_ = false;
      if (ec || self->closed_) return;
      if (self->to_client_.eof) return;  // read to the end meanwhile
      self->watchHcmClose();             // gone, or armed again
    });
  }

  // The HCM closed its end: from now on the client has kDelayedClose between write progress to take the
  // rest of the answer (Envoy's delayed close), or the connection ends.
  void hcmGone() {
    if (hcm_gone_) return;
    hcm_gone_ = true;
    armCloseTimer();
  }

  void armCloseTimer() {
    close_timer_.expires_after(kDelayedClose);
    close_timer_.async_wait([self = shared_from_this()](std::error_code ec) {
      if (ec || self->closed_) return;
      self->terminate(self->closing_ ? self->close_details_ : std::string());
    });
  }

  // Writes what is queued for `side` to `to`; passes the FIN on once everything before it is written.
  void flush(Side& side, network::Transport& to) {
    const bool to_hcm = &side == &to_hcm_;
    if (closed_ || !side.writing.empty() || (to_hcm && !hcmTakesData())) return;
    if (to_hcm && hold_preface_ && side.written == 0 && !side.eof && side.out.size() < kH2Preface.size() &&
        kH2Preface.substr(0, side.out.size()) == side.out) {
      // The HCM sniffs the first bytes for the HTTP/2 preface: give it all of it, or what rules it out, at
      // once (a socketpair wakes its reader for every byte, so a partial preface would spin its sniffer).
      return;
    }
    if (side.out.empty()) {
      if (!to_hcm && closing_) return terminate(close_details_);  // flushed: the plugin's close
      const bool held = to_hcm ? blocked_ || !side.held.empty() : !side.held.empty();
      if (side.eof && !side.shut && !held) {
        side.shut = true;
        if (!to_hcm) return linger();  // the HCM closed: so does the connection, once flushed
        to.shutdownWrite();
      }
      return;
    }
    side.writing.swap(side.out);
    side.offset = 0;
    writeSlice(side, to);
  }

  void writeSlice(Side& side, network::Transport& to) {
    const size_t n = std::min(kWriteSlice, side.writing.size() - side.offset);
    to.asyncWrite(asio::buffer(side.writing.data() + side.offset, n),
                  [self = shared_from_this(), &side, &to](std::error_code ec, size_t written) {
                    if (self->closed_) return;
                    const bool to_hcm = &side == &self->to_hcm_;
                    if (ec) return to_hcm ? self->hcmWriteFailed() : self->terminate("downstream_reset");
                    if (to_hcm && !self->hcmTakesData()) return;
                    if (!to_hcm && (self->hcm_gone_ || self->closing_)) self->armCloseTimer();  // progress
                    side.offset += written;
                    if (side.offset < side.writing.size()) return self->writeSlice(side, to);
                    side.written += side.writing.size();
                    side.writing.clear();
                    side.offset = 0;
                    self->flush(side, to);
                    if (to_hcm) {
                      self->readClient();
                    } else {
                      self->readHcm();
                    }
                  });
  }

  // The HCM stopped reading (it answered early and closed, e.g. a 413 during an upload): the client's bytes
  // are dropped from now on, and the HCM is still read so its answer and EOF reach the client (linger()).
  void hcmWriteFailed() {
    if (hcm_write_failed_ || closing_) return;
    hcm_write_failed_ = true;
    to_hcm_.held.clear();
    to_hcm_.out.clear();
    to_hcm_.writing.clear();
    to_hcm_.offset = 0;
    readClient();
    readHcm();
  }

  // Like Envoy's delayed close: FIN to the client, then read (and drop) until it closes or a second passes,
  // so a close with unread bytes does not reset the connection before the client has read the answer.
  void linger() {
    hcm_closed_ = true;
    if (to_hcm_.eof) return terminate("");  // the client is done already
    to_hcm_.held.clear();
    to_hcm_.out.clear();
    client_.shutdownWrite();
    armCloseTimer();
    readClient();
  }

  // A filter closed the connection: as Envoy's FlushWrite, what the filters passed on to the client is
  // written first (bounded by the delayed-close timer); the HCM's end closes at once.
  void beginClose(const std::string& details) {
    if (closed_ || closing_) return;
    closing_ = true;
    close_details_ = details;
    hcm_.close();
    to_hcm_.held.clear();
    to_hcm_.out.clear();
    to_client_.held.clear();
    if (to_client_.writing.empty() && to_client_.out.empty()) return terminate(details);
    armCloseTimer();
    flush(to_client_, client_);
    readClient();  // dropped, but a client reset ends it
  }

  void terminate(std::string_view details) {
    if (closed_) return;
    closed_ = true;
    auto keep = std::move(self_);  // released when this returns
    close_timer_.cancel();
    worker_.connections.erase(this);
    client_.close();
    hcm_.close();
    const std::string why(details);
    for (auto& f : filters_) f->onClose(why);
  }

  WorkerContext& worker_;
  const std::shared_ptr<const ListenerConfig> keep_listener_;  // null only for unowned test configs
  network::Transport client_;
  network::Transport hcm_;
  const bool hold_preface_;
  const size_t limit_;  // the listener's per_connection_buffer_limit_bytes, per direction
  asio::steady_timer close_timer_;
  std::shared_ptr<FilteredConnection> self_;
  bool hcm_gone_ = false;          // the HCM closed its end (read to EOF or seen hung up)
  bool hup_wait_ = false;          // waiting for the HCM's hang-up while not reading it
  bool hcm_closed_ = false;        // the HCM's EOF was passed on: lingering for the client's close
  bool hcm_write_failed_ = false;  // a write to the HCM failed: the client's bytes are dropped
  bool closing_ = false;           // a filter closed the connection: flushing to the client
  std::string close_details_;
  http::StreamInfo info_;
  std::vector<std::unique_ptr<filters::network::Filter>> filters_;
  Side to_hcm_, to_client_;
  size_t started_ = 0;            // filters whose onNewConnection has run
  size_t stopped_at_ = SIZE_MAX;  // the filter holding the client's bytes
  bool blocked_ = false;          // the client's chain is stopped (its FIN is not passed on)
  std::optional<std::string> pending_close_;
  bool closed_ = false;
};

}  // namespace

void startFilteredHttpConnection(WorkerContext& worker, const ListenerConfig& listener,
                                 const FilterChainConfig& chain, network::Transport transport,
                                 network::ConnectionInfoConstSharedPtr info) {
  bool any = false;
  for (const auto& f : chain.network_filters) any = any || f->runsBeforeHcm();
  if (!any) {  // only tcp_proxy-style filters (e.g. Istio's metadata exchange): the HCM alone, as before
    startHttpConnection(worker, listener, chain.hcm, std::move(transport), std::move(info));
    return;
  }
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
    SKIFF_LOG(kConnection, warn, "[C{}] socketpair for the network filters failed: {}", info->id,
              std::strerror(errno));
    transport.close();
    return;
  }
  // asio only needs a stream descriptor; the HCM reads the addresses from `info`, never from the socket.
  asio::ip::tcp::socket ours(worker.io), theirs(worker.io);
  std::error_code ec;
  ours.assign(asio::ip::tcp::v4(), fds[0], ec);
  if (!ec) theirs.assign(asio::ip::tcp::v4(), fds[1], ec);
  if (ec) {
    if (!ours.is_open()) ::close(fds[0]);
    ::close(fds[1]);
    transport.close();
    return;
  }
  const bool sniff =
      selectHttpCodec(*chain.hcm, *info, false, runsHttpInspector(listener)) == HttpCodecChoice::kSniff;
  auto relay = std::make_shared<FilteredConnection>(worker, listener, std::move(transport), std::move(ours),
                                                    info, sniff);
  relay->setFilters(chain.network_filters);
  startHttpConnection(worker, listener, chain.hcm, network::Transport(std::move(theirs)), std::move(info));
  relay->start();
}

}  // namespace skiff::server
