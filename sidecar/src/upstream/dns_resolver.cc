// c-ares driven from an asio loop: socket readiness via posix descriptors, c-ares timeouts via one timer.
#include "skiff/upstream/dns_resolver.h"

#include <ares.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <asio/posix/stream_descriptor.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>

#include <algorithm>
#include <stdexcept>
#include <unordered_map>

#include "skiff/common/logging.h"

namespace skiff::upstream {

struct DnsResolver::Impl : std::enable_shared_from_this<Impl> {
  struct Watch {
    explicit Watch(asio::io_context& loop, int fd) : descriptor(loop, fd) {}
    asio::posix::stream_descriptor descriptor;  // does not own fd: released before c-ares closes it
    bool want_read = false, want_write = false, reading = false, writing = false;
    uint64_t id = 0;
  };

  struct Query {
    std::weak_ptr<Impl> impl;
    DnsLookupFamily family;
    Callback cb;
  };

  explicit Impl(asio::io_context& l) : loop(l), timer(l) {}

  void onSockState(int fd, bool readable, bool writable) {
    if (!readable && !writable) {
      auto it = watches.find(fd);
      if (it == watches.end()) return;
      forget(*it->second);
      watches.erase(it);
      return;
    }
    auto& watch = watches[fd];
    if (!watch) {
      watch = std::make_unique<Watch>(loop, fd);
      watch->id = ++next_watch_id;
    }
    watch->want_read = readable;
    watch->want_write = writable;
    arm(fd, *watch);
  }

  static void forget(Watch& watch) {
    std::error_code ignored;
    watch.descriptor.cancel(ignored);
    watch.descriptor.release();
  }

  void arm(int fd, Watch& watch) {
    if (watch.want_read && !watch.reading) {
      watch.reading = true;
      watch.descriptor.async_wait(asio::posix::stream_descriptor::wait_read,
                                  [weak = weak_from_this(), fd, id = watch.id](const std::error_code& ec) {
                                    if (auto self = weak.lock()) self->onReady(fd, id, ec, true);
                                  });
    }
    if (watch.want_write && !watch.writing) {
      watch.writing = true;
      watch.descriptor.async_wait(asio::posix::stream_descriptor::wait_write,
                                  [weak = weak_from_this(), fd, id = watch.id](const std::error_code& ec) {
                                    if (auto self = weak.lock()) self->onReady(fd, id, ec, false);
                                  });
    }
  }

  void onReady(int fd, uint64_t id, const std::error_code& ec, bool read) {
    auto it = watches.find(fd);
    if (destroying || it == watches.end() || it->second->id != id) return;  // socket gone or reused
    (read ? it->second->reading : it->second->writing) = false;
    if (ec) return;
    ares_process_fd(channel, read ? fd : ARES_SOCKET_BAD, read ? ARES_SOCKET_BAD : fd);
    it = watches.find(fd);  // processing may have closed the socket
    if (it != watches.end() && it->second->id == id) arm(fd, *it->second);
    updateTimer();
  }

  void updateTimer() {
    if (destroying) return;
    timeval tv;
    timeval* next = ares_timeout(channel, nullptr, &tv);
    if (next == nullptr) {
      timer.cancel();
      return;
    }
    timer.expires_after(std::chrono::seconds(next->tv_sec) + std::chrono::microseconds(next->tv_usec));
    timer.async_wait([weak = weak_from_this()](const std::error_code& ec) {
      auto self = weak.lock();
      if (ec || !self || self->destroying) return;
      ares_process_fd(self->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
      self->updateTimer();
    });
  }

  static std::vector<DnsResponse> collect(const ares_addrinfo* result, DnsLookupFamily family) {
    std::vector<DnsResponse> v4, v6;
    for (const ares_addrinfo_node* node = result ? result->nodes : nullptr; node; node = node->ai_next) {
      DnsResponse response;
      response.ttl = std::chrono::seconds(std::max(node->ai_ttl, 0));
      if (node->ai_family == AF_INET) {
        const auto* sin = reinterpret_cast<const sockaddr_in*>(node->ai_addr);
        response.address = asio::ip::address_v4(ntohl(sin->sin_addr.s_addr));
      } else if (node->ai_family == AF_INET6) {
        const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(node->ai_addr);
        asio::ip::address_v6::bytes_type bytes;
        std::copy(std::begin(sin6->sin6_addr.s6_addr), std::end(sin6->sin6_addr.s6_addr), bytes.begin());
        response.address = asio::ip::address_v6(bytes, sin6->sin6_scope_id);
      } else {
        continue;
      }
      auto& list = response.address.is_v4() ? v4 : v6;
      const bool duplicate = std::any_of(list.begin(), list.end(),
                                         [&](const DnsResponse& r) { return r.address == response.address; });
      if (!duplicate) list.push_back(response);
    }
    switch (family) {
      case DnsLookupFamily::kAuto:
        return v6.empty() ? v4 : v6;
      case DnsLookupFamily::kV4Preferred:
        return v4.empty() ? v6 : v4;
      case DnsLookupFamily::kV4Only:
        return v4;
      case DnsLookupFamily::kV6Only:
        return v6;
      case DnsLookupFamily::kAll:
        v4.insert(v4.end(), v6.begin(), v6.end());
        return v4;
    }
    return {};
  }

  static void onAddrInfo(void* arg, int status, int /*timeouts*/, ares_addrinfo* result) {
    std::unique_ptr<Query> query(static_cast<Query*>(arg));
    std::vector<DnsResponse> addresses;
    if (status == ARES_SUCCESS) addresses = collect(result, query->family);
    if (result) ares_freeaddrinfo(result);
    auto impl = query->impl.lock();
    if (status == ARES_EDESTRUCTION || !impl || impl->destroying) return;
    if (status != ARES_SUCCESS) {
      SKIFF_LOG(kDns, debug, "dns lookup failed: {}", ares_strerror(status));
    }
    const DnsStatus outcome = addresses.empty() ? DnsStatus::kFailure : DnsStatus::kSuccess;
    // c-ares may answer inline (IP literals, /etc/hosts); callers are promised a later callback.
    asio::post(impl->loop, [weak = query->impl, cb = std::move(query->cb), outcome,
                            addresses = std::move(addresses)]() mutable {
      auto self = weak.lock();
      if (!self || self->destroying) return;
      cb(outcome, std::move(addresses));
    });
  }

  asio::io_context& loop;
  asio::steady_timer timer;
  ares_channel channel = nullptr;
  std::unordered_map<int, std::unique_ptr<Watch>> watches;
  uint64_t next_watch_id = 0;
  bool destroying = false;
};

DnsResolver::DnsResolver(asio::io_context& loop, const DnsResolverOptions& options)
    : impl_(std::make_shared<Impl>(loop)) {
  ares_library_init(ARES_LIB_INIT_ALL);
  ares_options opts{};
  int mask = ARES_OPT_SOCK_STATE_CB;
  opts.sock_state_cb = [](void* data, ares_socket_t fd, int readable, int writable) {
    static_cast<Impl*>(data)->onSockState(fd, readable != 0, writable != 0);
  };
  opts.sock_state_cb_data = impl_.get();
  int flags = 0;
  if (options.use_tcp) flags |= ARES_FLAG_USEVC;
  if (options.no_default_search_domain) flags |= ARES_FLAG_NOSEARCH;
  if (flags != 0) {
    opts.flags = flags;
    mask |= ARES_OPT_FLAGS;
  }
  if (options.timeout_ms > 0) {
    opts.timeout = options.timeout_ms;
    mask |= ARES_OPT_TIMEOUTMS;
  }
  if (options.tries > 0) {
    opts.tries = options.tries;
    mask |= ARES_OPT_TRIES;
  }
  int rc = ares_init_options(&impl_->channel, &opts, mask);
  if (rc != ARES_SUCCESS) {
    ares_library_cleanup();
    throw std::runtime_error(std::string("c-ares init failed: ") + ares_strerror(rc));
  }
  if (!options.servers_csv.empty()) {
    rc = ares_set_servers_ports_csv(impl_->channel, options.servers_csv.c_str());
    if (rc != ARES_SUCCESS) {
      ares_destroy(impl_->channel);
      ares_library_cleanup();
      throw std::runtime_error("c-ares: bad DNS server list '" + options.servers_csv +
                               "': " + ares_strerror(rc));
    }
  }
}

DnsResolver::~DnsResolver() {
  impl_->destroying = true;
  impl_->timer.cancel();
  ares_destroy(impl_->channel);  // pending queries complete with ARES_EDESTRUCTION: dropped
  for (auto& [fd, watch] : impl_->watches) Impl::forget(*watch);
  impl_->watches.clear();
  ares_library_cleanup();
}

void DnsResolver::resolve(const std::string& name, DnsLookupFamily family, Callback cb) {
  ares_addrinfo_hints hints{};
  switch (family) {
    case DnsLookupFamily::kV4Only:
      hints.ai_family = AF_INET;
      break;
    case DnsLookupFamily::kV6Only:
      hints.ai_family = AF_INET6;
      break;
    default:
      hints.ai_family = AF_UNSPEC;
  }
  hints.ai_flags = ARES_AI_NOSORT;
  auto* query = new Impl::Query{impl_, family, std::move(cb)};
  ares_getaddrinfo(impl_->channel, name.c_str(), nullptr, &hints, &Impl::onAddrInfo, query);
  impl_->updateTimer();
}

}  // namespace skiff::upstream
