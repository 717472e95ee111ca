// Upstream socket sourcing: choosing the source (bind config / original_src) and binding before connect.
#include "skiff/upstream/upstream_socket.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include "skiff/upstream/host.h"

namespace skiff::upstream {

std::string UpstreamSource::key() const {
  if (empty() && sni.empty()) return {};
  std::string out = address ? formatEndpoint({*address, port}) : std::string("*");
  if (transparent) out += "/t";
  if (mark != 0) out += "/m" + std::to_string(mark);
  if (!sni.empty()) out += "/sni=" + sni;
  return out;
}

UpstreamSource upstreamSourceFor(const ClusterInfo& cluster, const network::ConnectionInfo* connection) {
  UpstreamSource source;
  if (connection != nullptr && connection->original_source) {
    source.address = connection->remote.address();
    source.port = connection->original_source->bind_port ? connection->remote.port() : 0;
    source.transparent = true;
    source.mark = connection->original_source->mark;
    return source;
  }
  if (cluster.source_address) {
    source.address = cluster.source_address;
    source.port = cluster.source_port;
  }
  return source;
}

namespace {

constexpr int kIpBindAddressNoPort = 24;  // IP_BIND_ADDRESS_NO_PORT (linux/in.h)

bool setIntOption(int fd, int level, int name, int value, const char* what, std::string* reason) {
  if (::setsockopt(fd, level, name, &value, sizeof(value)) == 0) return true;
  *reason =
      std::string("setsockopt(") + what + "): " + std::error_code(errno, std::generic_category()).message();
  return false;
}

}  // namespace

bool openUpstreamSocket(asio::ip::tcp::socket& socket, const asio::ip::tcp::endpoint& destination,
                        const UpstreamSource& source, std::string* reason) {
  std::error_code ec;
  socket.open(destination.protocol(), ec);
  if (ec) {
    *reason = "socket: " + ec.message();
    return false;
  }
  const int fd = socket.native_handle();
  bool ok = true;
  if (source.transparent) {
    ok = destination.address().is_v6()
             ? setIntOption(fd, SOL_IPV6, IPV6_TRANSPARENT, 1, "IPV6_TRANSPARENT", reason)
             : setIntOption(fd, SOL_IP, IP_TRANSPARENT, 1, "IP_TRANSPARENT", reason);
  }
  if (ok && source.mark != 0) {
    ok = setIntOption(fd, SOL_SOCKET, SO_MARK, static_cast<int>(source.mark), "SO_MARK", reason);
  }
  if (ok && source.address) {
    if (source.port != 0) {
      socket.set_option(asio::socket_base::reuse_address(true), ec);
    } else {
      // Defer the port choice to connect(): bind(ip:0) would reserve a port per source IP alone and run
      // out under TIME_WAIT, while connect() can reuse one for different destinations. IPPROTO_IP level
      // applies to IPv6 sockets too. Best effort: old kernels lack it.
      const int one = 1;
      ::setsockopt(fd, IPPROTO_IP, kIpBindAddressNoPort, &one, sizeof(one));
    }
    const asio::ip::tcp::endpoint local(*source.address, source.port);
    socket.bind(local, ec);
    if (ec) {
      *reason = "bind to " + formatEndpoint(local) + ": " + ec.message();
      ok = false;
    }
  }
  if (ok) socket.set_option(asio::ip::tcp::no_delay(true), ec);
  if (!ok) socket.close(ec);
  return ok;
}

}  // namespace skiff::upstream
