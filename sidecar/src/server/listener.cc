// Listener configs, SO_REUSEPORT socket setup and the per-worker accept loop.
#include "server/listener.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <stdexcept>
#include <system_error>

#include "server/http/http1_server_connection.h"
#include "skiff/common/logging.h"
#include "skiff/upstream/host.h"

namespace skiff::server {

namespace {

std::string statAddress(const asio::ip::tcp::endpoint& ep) {
  // Envoy's listener stat names use "<ip>_<port>" (IPv6 without brackets).
  return ep.address().to_string() + "_" + std::to_string(ep.port());
}

}  // namespace

static asio::ip::tcp::endpoint parseEndpoint(const envoy::config::listener::v3::Listener& proto,
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
  if (p.has_per_connection_buffer_limit_bytes()) buffer_limit = p.per_connection_buffer_limit_bytes().value();
  if (p.has_tcp_backlog_size()) backlog = p.tcp_backlog_size().value();
  if (p.filter_chains_size() == 0)
    throw std::invalid_argument(path + ".filter_chains: at least one is required");
  if (p.filter_chains_size() > 1) {
    SKIFF_LOG(kConfig, warn,
              "{}.filter_chains: filter_chain_match is not supported yet; using the first chain", path);
  }
  const auto& chain = p.filter_chains(0);
  const std::string chain_path = path + ".filter_chains[0]";
  if (chain.filters_size() != 1) {
    throw std::invalid_argument(
        chain_path + ".filters: exactly one network filter (http_connection_manager) is supported");
  }
  const auto& filter = chain.filters(0);
  ConnectionManagerConfig::Proto hcm_proto;
  if (!filter.typed_config().UnpackTo(&hcm_proto)) {
    throw std::invalid_argument(
        chain_path + ".filters[0]: network filter '" +
        (filter.typed_config().type_url().empty() ? filter.name() : filter.typed_config().type_url()) +
        "' is not supported yet (only envoy.filters.network.http_connection_manager)");
  }
  hcm = std::make_shared<const ConnectionManagerConfig>(hcm_proto, chain_path + ".filters[0].typed_config",
                                                        store, workers, buffer_limit);
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

ActiveListener::ActiveListener(WorkerContext& worker, ListenerConfigSharedPtr config, int fd,
                               std::string bound_address)
    : worker_(worker),
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
    if (self->stopped_) return;
    if (ec) {
      if (ec == asio::error::operation_aborted) return;
      SKIFF_LOG(kConnection, debug, "accept on {} failed: {}", self->bound_address_, ec.message());
      self->accept();
      return;
    }
    auto conn = std::make_shared<Http1ServerConnection>(self->worker_, std::move(socket), self->config_->hcm,
                                                        self->config_->stats, self->bound_address_);
    conn->start();
    self->accept();
  });
}

}  // namespace skiff::server
