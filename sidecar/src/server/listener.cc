// Listener configs, the per-worker listener index, socket setup (SO_REUSEPORT, IP_TRANSPARENT,
// IP_FREEBIND) and the accept loop.
#include "server/listener.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include "server/active_socket.h"
#include "skiff/common/logging.h"
#include "skiff/upstream/host.h"

namespace skiff::server {

namespace {

std::string statAddress(const asio::ip::tcp::endpoint& ep) {
  // Envoy's listener stat names use "<ip>_<port>" (IPv6 without brackets).
  return ep.address().to_string() + "_" + std::to_string(ep.port());
}

asio::ip::tcp::endpoint parseEndpoint(const envoy::config::listener::v3::Listener& proto,
                                      const std::string& path) {
  if (!proto.has_address() || !proto.address().has_socket_address()) {
    throw std::invalid_argument(path + ".address.socket_address: must be set");
  }
  const auto& sa = proto.address().socket_address();
  std::error_code ec;
  auto address = asio::ip::make_address(sa.address(), ec);
  if (ec) {
    throw std::invalid_argument(path + ".address.socket_address.address: '" + sa.address() +
                                "' is not an IP address");
  }
  if (sa.port_value() > 65535)
    throw std::invalid_argument(path + ".address.socket_address.port_value: out of range");
  return asio::ip::tcp::endpoint(address, static_cast<uint16_t>(sa.port_value()));
}

}  // namespace

ListenerConfig::ListenerConfig(const envoy::config::listener::v3::Listener& p, const std::string& path,
                               stats::Store& store, uint32_t workers)
    : name(p.name()),
      endpoint(parseEndpoint(p, path)),
      stats(store, "listener." +
                       (p.stat_prefix().empty() ? statAddress(parseEndpoint(p, path)) : p.stat_prefix()) +
                       "."),
      proto(p) {
  if (p.has_bind_to_port()) bind_to_port = p.bind_to_port().value();
  inbound = p.traffic_direction() == envoy::config::core::v3::INBOUND;
  use_original_dst = p.has_use_original_dst() && p.use_original_dst().value();
  transparent = p.has_transparent() && p.transparent().value();
  freebind = p.has_freebind() && p.freebind().value();
  if (p.has_per_connection_buffer_limit_bytes()) buffer_limit = p.per_connection_buffer_limit_bytes().value();
  if (p.has_tcp_backlog_size()) backlog = p.tcp_backlog_size().value();

  // Listener filters. use_original_dst implies an original_dst filter, as in Envoy.
  bool has_original_dst = false;
  for (int i = 0; i < p.listener_filters_size(); ++i) {
    listener_filters.push_back(buildListenerFilter(
        p.listener_filters(i), path + ".listener_filters[" + std::to_string(i) + "]", store, transparent));
    const auto& lf = p.listener_filters(i);
    has_original_dst = has_original_dst || lf.name() == "envoy.filters.listener.original_dst" ||
                       lf.typed_config().type_url().ends_with(".listener.original_dst.v3.OriginalDst");
  }
  if (use_original_dst && !has_original_dst) {
    listener_filters.insert(listener_filters.begin(),
                            ListenerFilterEntry{"envoy.filters.listener.original_dst",
                                                makeOriginalDstFilter(transparent), std::nullopt});
  }
  for (const auto& f : listener_filters) max_peek_bytes = std::max(max_peek_bytes, f.filter->maxReadBytes());
  if (p.has_listener_filters_timeout()) {
    const auto& d = p.listener_filters_timeout();
    if (d.seconds() < 0 || d.nanos() < 0)
      throw std::invalid_argument(path + ".listener_filters_timeout: must not be negative");
    listener_filters_timeout = std::chrono::milliseconds(d.seconds() * 1000 + d.nanos() / 1000000);
  }
  continue_on_listener_filters_timeout = p.continue_on_listener_filters_timeout();

  // Filter chains.
  if (p.filter_chains_size() == 0 && !p.has_default_filter_chain())
    throw std::invalid_argument(path + ".filter_chains: at least one (or default_filter_chain) is required");
  std::vector<const envoy::config::listener::v3::FilterChainMatch*> matches;
  std::vector<std::string> match_paths;
  // TLS chains count listener.<addr>.ssl.* and the handshake timeout under the listener's prefix.
  const std::string stat_prefix =
      "listener." + (p.stat_prefix().empty() ? statAddress(endpoint) : p.stat_prefix()) + ".";
  for (int i = 0; i < p.filter_chains_size(); ++i) {
    const std::string chain_path = path + ".filter_chains[" + std::to_string(i) + "]";
    const auto& chain = p.filter_chains(i);
    filter_chains.push_back(buildFilterChain(chain, chain_path, store, workers, buffer_limit, stat_prefix));
    matches.push_back(chain.has_filter_chain_match() ? &chain.filter_chain_match() : nullptr);
    match_paths.push_back(chain_path + ".filter_chain_match");
  }
  matcher = FilterChainMatcher(matches, match_paths);
  if (p.has_default_filter_chain()) {
    default_chain = buildFilterChain(p.default_filter_chain(), path + ".default_filter_chain", store, workers,
                                     buffer_limit, stat_prefix);
  }
}

const FilterChainConfig* ListenerConfig::selectChain(const network::ConnectionInfo& info) const {
  if (auto i = matcher.match(info)) return filter_chains[*i].get();
  return default_chain.get();
}

void ListenerConfig::forEachHcm(const std::function<void(const ConnectionManagerConfig&)>& fn) const {
  for (const auto& c : filter_chains) {
    if (c->hcm) fn(*c->hcm);
  }
  if (default_chain && default_chain->hcm) fn(*default_chain->hcm);
}

ListenerIndex::Key ListenerIndex::keyOf(const asio::ip::address& ip, uint16_t port) {
  Key k;
  k.port = port;
  k.v6 = ip.is_v6();
  if (k.v6) {
    k.ip = ip.to_v6().to_bytes();
  } else {
    const auto b = ip.to_v4().to_bytes();
    std::copy(b.begin(), b.end(), k.ip.begin());
  }
  return k;
}

size_t ListenerIndex::KeyHash::operator()(const Key& k) const {
  uint64_t h = 1469598103934665603ull ^ (static_cast<uint64_t>(k.port) << 1 | k.v6);
  for (uint8_t b : k.ip) h = (h ^ b) * 1099511628211ull;
  return static_cast<size_t>(h);
}

void ListenerIndex::add(const ListenerConfigSharedPtr& config, const asio::ip::tcp::endpoint& address) {
  all_.push_back(config);
  by_address_.emplace(keyOf(address.address(), address.port()), config.get());
}

bool ListenerIndex::remove(const ListenerConfig* config) {
  auto it = std::find_if(all_.begin(), all_.end(), [&](const auto& c) { return c.get() == config; });
  if (it == all_.end()) return false;
  all_.erase(it);
  std::erase_if(by_address_, [&](const auto& entry) { return entry.second == config; });
  return true;
}

const ListenerConfig* ListenerIndex::find(const asio::ip::tcp::endpoint& address) const {
  auto it = by_address_.find(keyOf(address.address(), address.port()));
  if (it != by_address_.end()) return it->second;
  const asio::ip::address any = address.address().is_v6() ? asio::ip::address(asio::ip::address_v6::any())
                                                          : asio::ip::address(asio::ip::address_v4::any());
  it = by_address_.find(keyOf(any, address.port()));
  return it != by_address_.end() ? it->second : nullptr;
}

std::vector<int> bindListenerSockets(const ListenerConfig& config, uint32_t count,
                                     asio::ip::tcp::endpoint* bound) {
  std::vector<int> fds;
  asio::ip::tcp::endpoint target = config.endpoint;
  auto fail = [&](const char* what) {
    const int err = errno;
    for (int fd : fds) ::close(fd);
    throw std::system_error(
        err, std::generic_category(),
        std::string(what) + " " + upstream::formatEndpoint(target) + " for listener '" + config.name + "'");
  };
  for (uint32_t i = 0; i < count; ++i) {
    const int family = target.address().is_v6() ? AF_INET6 : AF_INET;
    int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) fail("socket");
    fds.push_back(fd);
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (family == AF_INET6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    // TPROXY: accept connections addressed to any IP; the local address is the original destination.
    if (config.transparent &&
        (family == AF_INET6 ? ::setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one))
                            : ::setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one))) != 0)
      fail("cannot set IP_TRANSPARENT (needs CAP_NET_ADMIN) on");
    if (config.freebind &&
        (family == AF_INET6 ? ::setsockopt(fd, SOL_IPV6, IPV6_FREEBIND, &one, sizeof(one))
                            : ::setsockopt(fd, SOL_IP, IP_FREEBIND, &one, sizeof(one))) != 0)
      fail("cannot set IP_FREEBIND on");
    if (::bind(fd, target.data(), static_cast<socklen_t>(target.size())) != 0) fail("cannot bind");
    if (::listen(fd, static_cast<int>(config.backlog)) != 0) fail("cannot listen on");
    if (i == 0) {
      // Port 0: every other worker binds the port the kernel chose for the first.
      asio::ip::tcp::endpoint actual;
      socklen_t len = static_cast<socklen_t>(actual.capacity());
      ::getsockname(fd, actual.data(), &len);
      actual.resize(len);
      target = actual;
    }
  }
  *bound = target;
  return fds;
}

ActiveListener::ActiveListener(WorkerContext& worker, const ListenerIndex& index,
                               ListenerConfigSharedPtr config, int fd, std::string bound_address)
    : worker_(worker),
      index_(index),
      config_(std::move(config)),
      acceptor_(worker.io),
      bound_address_(std::move(bound_address)) {
  acceptor_.assign(config_->endpoint.protocol(), fd);
}

void ActiveListener::start() {
  accept();
}

void ActiveListener::stop() {
  stopped_ = true;
  std::error_code ignored;
  acceptor_.close(ignored);
}

void ActiveListener::accept() {
  if (stopped_) return;
  auto self = shared_from_this();
  acceptor_.async_accept(worker_.io, [self](std::error_code ec, asio::ip::tcp::socket socket) {
    if (ec) {
      if (self->stopped_ || ec == asio::error::operation_aborted) return;
      SKIFF_LOG(kConnection, debug, "accept on {} failed: {}", self->bound_address_, ec.message());
      self->accept();
      return;
    }
    if (self->stopped_) {
      self->onAcceptedAfterStop(std::move(socket));
      return;
    }
    onAccepted(self->worker_, self->index_, *self->config_, std::move(socket));
    self->accept();
  });
}

// The accept completed before stop() (an LDS update replaced this listener in the same loop turn): the
// connection is established and the client may be sending already. Dropping it would reset it; the
// listener that now owns the address on this worker serves it instead (none: the listener was removed or
// the server is shutting down, and the connection goes as a queued one would).
void ActiveListener::onAcceptedAfterStop(asio::ip::tcp::socket socket) {
  std::error_code ec;
  const auto local = socket.local_endpoint(ec);
  if (ec || worker_.draining) return;
  const ListenerConfig* current = index_.find(local);
  if (current == nullptr || current == config_.get()) return;
  SKIFF_LOG(kConnection, debug, "listener '{}' stopped with a connection accepted: handed to its successor",
            config_->name);
  onAccepted(worker_, index_, *current, std::move(socket));
}

}  // namespace skiff::server
