// network::Transport (plain and TLS, callback style, large writes, moves) and the upstream transport
// choice (transport_socket_matches on endpoint then locality metadata, auto_sni / auto_san_validation).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "envoy/config/cluster/v3/cluster.pb.h"
#include "skiff/network/transport.h"
#include "skiff/upstream/host.h"
#include "skiff/upstream/transport_socket.h"
#include "skiff/upstream/upstream_socket.h"
#include "tls_test_util.h"

namespace skiff::tls::testing {
namespace {

// Reads until `want` bytes arrived or an error; returns what was read.
std::string readAll(asio::io_context& io, network::Transport& t, size_t want, std::error_code* error) {
  std::string got;
  std::vector<char> buf(8192);
  bool done = false;
  std::function<void()> next = [&] {
    t.asyncReadSome(asio::buffer(buf), [&](std::error_code ec, size_t n) {
      got.append(buf.data(), n);
      if (ec || got.size() >= want) {
        *error = ec;
        done = true;
        return;
      }
      next();
    });
  };
  next();
  runUntil(io, [&] { return done; });
  return got;
}

TEST(NetworkTransport, PlainTcpReadsAndWrites) {
  asio::io_context io;
  SocketPair pair(io);
  network::Transport a(std::move(pair.client)), b(std::move(pair.server));
  EXPECT_EQ(a.tls(), nullptr);
  EXPECT_EQ(a.tlsInfo(), nullptr);
  std::string text(100000, 'x');
  bool written = false;
  a.asyncWrite(asio::buffer(text), [&](std::error_code ec, size_t n) {
    EXPECT_FALSE(ec);
    EXPECT_EQ(n, text.size());
    written = true;
  });
  std::error_code ec;
  EXPECT_EQ(readAll(io, b, text.size(), &ec), text);
  EXPECT_TRUE(runUntil(io, [&] { return written; }));
  a.shutdownWrite();
  readAll(io, b, 1, &ec);
  EXPECT_EQ(ec, asio::error::eof);
}

TEST(NetworkTransport, TlsHandshakeLargeWritesAndCloseNotify) {
  Pki pki;
  auto server_dir = pki.workload("server", "shop", "cart");
  auto client_dir = pki.workload("client", "shop", "frontend");
  stats::Store store(1);
  auto server_ctx = serverContext("common_tls_context: {" + certYaml(server_dir) + "}\n", store);
  auto client_ctx = clientContext(
      "common_tls_context: {validation_context: {trusted_ca: {filename: \"" + pki.root() + "\"}}}\n", store);
  (void)client_dir;
  asio::io_context io;
  SocketPair pair(io);
  network::Transport client(std::move(pair.client)), server(std::move(pair.server));
  client.attachTls(
      std::make_unique<TlsTransport>(client.socket(), client_ctx->current(), TlsTransport::Role::kClient));
  server.attachTls(
      std::make_unique<TlsTransport>(server.socket(), server_ctx->current(), TlsTransport::Role::kServer));
  std::optional<std::error_code> c, s;
  client.asyncHandshake([&](std::error_code ec) { c = ec; });
  server.asyncHandshake([&](std::error_code ec) { s = ec; });
  ASSERT_TRUE(runUntil(io, [&] { return c && s; }));
  ASSERT_FALSE(*c) << client.tls()->failureReason();
  ASSERT_FALSE(*s) << server.tls()->failureReason();
  EXPECT_EQ(client.tlsInfo()->tls_version, "TLSv1.2");  // Envoy's client default maximum
  EXPECT_EQ(server.tlsInfo()->uri_san_local, std::vector<std::string>{spiffe("shop", "cart")});

  // Moving a transport while idle keeps its TLS session on the moved socket.
  network::Transport moved(std::move(server));
  std::string text(300000, 'y');
  for (size_t i = 0; i < text.size(); i += 7) text[i] = static_cast<char>('a' + i % 26);
  bool written = false;
  client.asyncWrite(asio::buffer(text), [&](std::error_code ec, size_t n) {
    EXPECT_FALSE(ec);
    EXPECT_EQ(n, text.size());
    written = true;
  });
  std::error_code ec;
  EXPECT_EQ(readAll(io, moved, text.size(), &ec), text);
  EXPECT_TRUE(runUntil(io, [&] { return written; }));
  client.shutdownWrite();  // close_notify + FIN
  readAll(io, moved, 1, &ec);
  EXPECT_EQ(ec, asio::error::eof);
}

// A transport whose socket was closed must never run OpenSSL on the descriptor number again: the kernel
// hands that number to the next socket, and a late close_notify (or write) there corrupts another
// connection's TLS stream (seen as bad_record_mac by its client).
TEST(NetworkTransport, NoTlsIoAfterCloseEvenWhenTheFdNumberIsReused) {
  Pki pki;
  auto server_dir = pki.workload("server", "shop", "cart");
  stats::Store store(1);
  auto server_ctx = serverContext("common_tls_context: {" + certYaml(server_dir) + "}\n", store);
  auto client_ctx = clientContext("{}", store);
  asio::io_context io;
  SocketPair pair(io);
  network::Transport client(std::move(pair.client)), server(std::move(pair.server));
  client.attachTls(
      std::make_unique<TlsTransport>(client.socket(), client_ctx->current(), TlsTransport::Role::kClient));
  server.attachTls(
      std::make_unique<TlsTransport>(server.socket(), server_ctx->current(), TlsTransport::Role::kServer));
  std::optional<std::error_code> c, s;
  client.asyncHandshake([&](std::error_code ec) { c = ec; });
  server.asyncHandshake([&](std::error_code ec) { s = ec; });
  ASSERT_TRUE(runUntil(io, [&] { return c && s; }));
  ASSERT_FALSE(*c);
  ASSERT_FALSE(*s);

  const int old_fd = server.socket().native_handle();
  server.close();
  SocketPair victim(io);  // the lowest free descriptor: very likely old_fd again
  const bool reused = victim.client.native_handle() == old_fd || victim.server.native_handle() == old_fd;
  // Make sure the number is reused, or the test would pass trivially: old_fd becomes another descriptor
  // of the victim's server end.
  int forced_fd = -1;
  if (!reused) {
    ASSERT_EQ(::dup2(victim.server.native_handle(), old_fd), old_fd) << std::strerror(errno);
    forced_fd = old_fd;
  }
  victim.client.non_blocking(true);  // a stray OpenSSL read there must fail the test, not block it
  victim.server.non_blocking(true);
  server.shutdownWrite();  // late close_notify: must not reach the victim
  std::optional<std::error_code> w;
  server.asyncWrite(asio::buffer(std::string("late")), [&](std::error_code ec, size_t) { w = ec; });
  ASSERT_TRUE(runUntil(io, [&] { return w.has_value(); }));
  EXPECT_TRUE(*w);
  std::optional<std::error_code> r;
  std::vector<char> buf(64);
  server.asyncReadSome(asio::buffer(buf), [&](std::error_code ec, size_t) { r = ec; });
  ASSERT_TRUE(runUntil(io, [&] { return r.has_value(); }));
  EXPECT_TRUE(*r);
  for (auto* sock : {&victim.client, &victim.server}) {
    std::error_code ec;
    char byte;
    EXPECT_EQ(sock->receive(asio::buffer(&byte, 1), 0, ec), 0u);
    EXPECT_EQ(ec, asio::error::would_block)
        << "bytes leaked into another connection (fd reused: " << reused << ")";
  }
  if (forced_fd >= 0) ::close(forced_fd);
}

// The coroutine API (TlsTransport::readSome): the wait for readability completes, but before the read
// resumes another handler closes the socket and its descriptor number goes to another connection. The
// read must fail with bad_descriptor instead of running SSL_read on the other connection's bytes.
TEST(TlsTransportCoroutines, NoSslReadAfterTheSocketIsClosedDuringTheWait) {
  Pki pki;
  auto server_dir = pki.workload("server", "shop", "cart");
  stats::Store store(1);
  auto server_ctx = serverContext("common_tls_context: {" + certYaml(server_dir) + "}\n", store);
  auto client_ctx = clientContext("{}", store);
  asio::io_context io;
  Connection conn(io, client_ctx, server_ctx);
  ASSERT_TRUE(conn.handshake(io));
  ASSERT_FALSE(*conn.client_ec);
  ASSERT_FALSE(*conn.server_ec);
  ASSERT_EQ(conn.exchange(io, conn.client, conn.server, "warm"), "warm");

  SocketPair victim(io);
  const std::string victim_bytes = "victim's own bytes";
  asio::write(victim.client, asio::buffer(victim_bytes));
  asio::ip::tcp::socket& sock = conn.sockets.server;
  const int old_fd = sock.native_handle();
  int forced_fd = -1;
  // Registered before the read's own wait, so it runs first when both complete in one reactor pass.
  sock.async_wait(asio::socket_base::wait_read, [&](std::error_code ec) {
    if (ec) return;
    std::error_code ignored;
    sock.close(ignored);
    if (::dup2(victim.server.native_handle(), old_fd) == old_fd) forced_fd = old_fd;
  });
  std::optional<std::pair<std::error_code, size_t>> r;
  char buf[64];
  asio::co_spawn(
      io, [&]() -> asio::awaitable<void> { r = co_await conn.server.readSome(asio::buffer(buf)); },
      asio::detached);
  io.poll();  // the read finds nothing and waits
  io.restart();
  ASSERT_FALSE(r.has_value());
  std::optional<std::error_code> w;
  asio::co_spawn(
      io, [&]() -> asio::awaitable<void> { w = co_await conn.client.write(asio::buffer(std::string("x"))); },
      asio::detached);
  ASSERT_TRUE(runUntil(io, [&] { return r.has_value() && w.has_value(); }));
  ASSERT_GE(forced_fd, 0) << "the guard did not run or dup2 failed: " << std::strerror(errno);
  EXPECT_EQ(r->first, asio::error::bad_descriptor) << r->first.message();
  // The other connection's bytes are all still there.
  std::string left(victim_bytes.size(), '\0');
  std::error_code ec;
  victim.server.non_blocking(true);
  EXPECT_EQ(victim.server.receive(asio::buffer(left), 0, ec), victim_bytes.size()) << ec.message();
  EXPECT_EQ(left, victim_bytes);
  ::close(forced_fd);
}

TEST(NetworkTransport, TlsHandshakeAgainstPlaintextPeerFails) {
  Pki pki;
  auto server_dir = pki.workload("server", "shop", "cart");
  stats::Store store(1);
  auto server_ctx = serverContext("common_tls_context: {" + certYaml(server_dir) + "}\n", store);
  asio::io_context io;
  SocketPair pair(io);
  network::Transport server(std::move(pair.server));
  server.attachTls(
      std::make_unique<TlsTransport>(server.socket(), server_ctx->current(), TlsTransport::Role::kServer));
  std::string request = "GET / HTTP/1.1\r\nhost: x\r\n\r\n";
  asio::write(pair.client, asio::buffer(request));
  std::optional<std::error_code> s;
  server.asyncHandshake([&](std::error_code ec) { s = ec; });
  ASSERT_TRUE(runUntil(io, [&] { return s.has_value(); }));
  EXPECT_EQ(*s, make_error_code(TlsError::kHandshakeFailed));
  EXPECT_NE(server.tls()->failureReason().find("TLS_error:"), std::string::npos);
  EXPECT_EQ(counter(store, "listener.test.ssl.connection_error"), 1u);
}

envoy::config::cluster::v3::Cluster clusterYaml(const std::string& yaml) {
  return parseYaml<envoy::config::cluster::v3::Cluster>(yaml);
}

// Host holds atomics (not movable): tests keep it on the heap.
std::unique_ptr<upstream::Host> hostWith(const std::string& labels_yaml, const std::string& hostname = "") {
  auto host = std::make_unique<upstream::Host>();
  host->hostname = hostname;
  if (!labels_yaml.empty()) {
    host->metadata = parseYaml<envoy::config::core::v3::Metadata>(
        "filter_metadata: {envoy.transport_socket_match: " + labels_yaml + "}");
  }
  return host;
}

TEST(UpstreamTransportFactory, MatchesPickPerEndpointMetadata) {
  Pki pki;
  stats::Store store(1);
  auto cluster = clusterYaml(
      "name: mesh\n"
      "transport_socket_matches:\n"
      "- name: tlsMode-istio\n"
      "  match: {tlsMode: istio}\n"
      "  transport_socket: {name: envoy.transport_sockets.tls, typed_config: {\"@type\": "
      "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext, "
      "common_tls_context: {validation_context: {trusted_ca: {filename: \"" +
      pki.root() +
      "\"}}}}}\n"
      "- name: tlsMode-disabled\n"
      "  match: {}\n"
      "  transport_socket: {name: envoy.transport_sockets.raw_buffer}\n");
  auto factory = upstream::makeUpstreamTransportFactory(cluster, store, "cluster.mesh.");
  ASSERT_TRUE(factory);
  const auto& istio = factory->select(*hostWith("{tlsMode: istio, other: x}"));
  EXPECT_EQ(istio.name, "tlsMode-istio");
  EXPECT_TRUE(istio.context);
  EXPECT_EQ(istio.index, 1u);
  const auto& plain = factory->select(*hostWith(""));
  EXPECT_EQ(plain.name, "tlsMode-disabled");
  EXPECT_FALSE(plain.context);
  EXPECT_EQ(factory->select(*hostWith("{tlsMode: disabled}")).index, 2u);
}

// A host of a locality whose LocalityLbEndpoints.metadata carries `labels_yaml` (and the endpoint's own).
std::unique_ptr<upstream::Host> hostInLocality(const std::string& labels_yaml, const std::string& own = "") {
  auto host = hostWith(own);
  auto locality = std::make_shared<upstream::HostLocality>();
  locality->zone = "z1";
  locality->metadata = parseYaml<envoy::config::core::v3::Metadata>(
      "filter_metadata: {envoy.transport_socket_match: " + labels_yaml + "}");
  host->locality = std::move(locality);
  return host;
}

// Envoy: every match is tried against the endpoint's labels first, and only when none matched against the
// locality's (LocalityLbEndpoints.metadata).
TEST(UpstreamTransportFactory, LocalityMetadataIsTheFallbackAfterEveryEndpointMatch) {
  Pki pki;
  stats::Store store(1);
  const std::string tls =
      "{name: envoy.transport_sockets.tls, typed_config: {\"@type\": "
      "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext, "
      "common_tls_context: {validation_context: {trusted_ca: {filename: \"" +
      pki.root() + "\"}}}}}";
  auto cluster = clusterYaml(
      "name: mesh\n"
      "transport_socket_matches:\n"
      "- {name: tlsMode-istio, match: {tlsMode: istio}, transport_socket: " +
      tls +
      "}\n"
      "- {name: zone-b, match: {zone: b}, transport_socket: {name: envoy.transport_sockets.raw_buffer}}\n");
  auto factory = upstream::makeUpstreamTransportFactory(cluster, store, "cluster.mesh.");
  ASSERT_TRUE(factory);
  // Only the locality is labelled: its label picks the match.
  EXPECT_EQ(factory->select(*hostInLocality("{tlsMode: istio}")).name, "tlsMode-istio");
  EXPECT_EQ(factory->select(*hostInLocality("{zone: b}")).name, "zone-b");
  // The endpoint's own label wins over the locality's, whatever their order in the list.
  EXPECT_EQ(factory->select(*hostInLocality("{tlsMode: istio}", "{zone: b}")).name, "zone-b");
  EXPECT_EQ(factory->select(*hostInLocality("{zone: b}", "{tlsMode: istio}")).name, "tlsMode-istio");
  // Neither matches: the cluster's transport_socket (plaintext, index 0).
  const auto& none = factory->select(*hostInLocality("{tlsMode: disabled}", "{zone: c}"));
  EXPECT_EQ(none.index, 0u);
  EXPECT_FALSE(none.context);
  // A locality without metadata (zone only) changes nothing.
  auto zoned = hostWith("");
  zoned->locality = std::make_shared<upstream::HostLocality>(upstream::HostLocality{"r", "z", "s", {}});
  EXPECT_EQ(factory->select(*zoned).index, 0u);

  // Istio's list ends with an empty match, which every endpoint passes: the locality is never consulted.
  auto istio = clusterYaml(
      "name: mesh\n"
      "transport_socket_matches:\n"
      "- {name: tlsMode-istio, match: {tlsMode: istio}, transport_socket: " +
      tls +
      "}\n"
      "- {name: tlsMode-disabled, match: {}, transport_socket: {name: "
      "envoy.transport_sockets.raw_buffer}}\n");
  auto istio_factory = upstream::makeUpstreamTransportFactory(istio, store, "cluster.mesh2.");
  EXPECT_EQ(istio_factory->select(*hostInLocality("{tlsMode: istio}")).name, "tlsMode-disabled");
}

TEST(UpstreamTransportFactory, PlaintextClustersHaveNoFactoryAndBadFilesAreErrors) {
  stats::Store store(1);
  EXPECT_FALSE(upstream::makeUpstreamTransportFactory(clusterYaml("name: a\n"), store, "cluster.a."));
  EXPECT_FALSE(upstream::makeUpstreamTransportFactory(
      clusterYaml("name: a\ntransport_socket: {name: envoy.transport_sockets.raw_buffer}\n"), store,
      "cluster.a."));
  try {
    upstream::makeUpstreamTransportFactory(
        clusterYaml(
            "name: a\ntransport_socket: {name: envoy.transport_sockets.tls, typed_config: {\"@type\": "
            "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext, "
            "common_tls_context: {validation_context: {trusted_ca: {filename: /nonexistent/ca.pem}}}}}\n"),
        store, "cluster.a.");
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("transport_socket"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("/nonexistent/ca.pem"), std::string::npos) << e.what();
  }
}

TEST(UpstreamTransportFactory, AutoSniUsesTheHostNameNeverAnAddress) {
  stats::Store store(1);
  auto cluster = clusterYaml(
      "name: ext\n"
      "transport_socket: {name: envoy.transport_sockets.tls, typed_config: {\"@type\": "
      "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext}}\n"
      "upstream_http_protocol_options: {auto_sni: true, auto_san_validation: true}\n");
  auto factory = upstream::makeUpstreamTransportFactory(cluster, store, "cluster.ext.");
  ASSERT_TRUE(factory);
  auto options = factory->handshakeOptions(*hostWith("", "api.example.com"));
  EXPECT_EQ(options.sni, "api.example.com");
  EXPECT_EQ(options.extra_dns_san_matches, std::vector<std::string>{"api.example.com"});
  EXPECT_EQ(factory->handshakeOptions(*hostWith("", "10.0.0.1")).sni, "");
  EXPECT_EQ(factory->handshakeOptions(*hostWith("", ""), "shop.example.com:8443").sni, "shop.example.com");
}

TEST(UpstreamTransportFactory, RequestSniFromTheAuthorityOrTheOverrideHeader) {
  stats::Store store(1);
  const std::string tls =
      "transport_socket: {name: envoy.transport_sockets.tls, typed_config: {\"@type\": "
      "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext}}\n";
  auto factory = upstream::makeUpstreamTransportFactory(
      clusterYaml("name: ext\n" + tls + "upstream_http_protocol_options: {auto_sni: true}\n"), store,
      "cluster.ext.");
  ASSERT_TRUE(factory);
  EXPECT_TRUE(factory->autoSni());
  EXPECT_EQ(factory->autoSniHeader(), ":authority");
  EXPECT_EQ(factory->requestSni("Shop.Example.com:8443"), "shop.example.com");
  EXPECT_EQ(factory->requestSni("shop.example.com."), "shop.example.com");
  EXPECT_EQ(factory->requestSni("10.1.2.3:80"), "");
  EXPECT_EQ(factory->requestSni("[::1]:443"), "");
  EXPECT_EQ(factory->requestSni("::1"), "");
  EXPECT_EQ(factory->requestSni(""), "");
  // No SAN check unless auto_san_validation.
  EXPECT_TRUE(factory->handshakeOptions(*hostWith(""), "a.example").extra_dns_san_matches.empty());

  auto typed = upstream::makeUpstreamTransportFactory(
      clusterYaml(
          "name: ext\n" + tls +
          "typed_extension_protocol_options:\n"
          "  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n"
          "    \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n"
          "    upstream_http_protocol_options: {auto_sni: true, auto_san_validation: true, "
          "override_auto_sni_header: X-SNI}\n"
          "    explicit_http_config: {http_protocol_options: {}}\n"),
      store, "cluster.ext.");
  ASSERT_TRUE(typed);
  EXPECT_EQ(typed->autoSniHeader(), "x-sni");
  EXPECT_EQ(typed->handshakeOptions(*hostWith(""), typed->requestSni("b.example")).extra_dns_san_matches,
            std::vector<std::string>{"b.example"});

  auto off = upstream::makeUpstreamTransportFactory(clusterYaml("name: ext\n" + tls), store, "cluster.ext.");
  ASSERT_TRUE(off);
  EXPECT_FALSE(off->autoSni());
  EXPECT_EQ(off->requestSni("shop.example.com"), "");
}

TEST(UpstreamSource, SniIsPartOfThePoolKeyButNotASocketOption) {
  upstream::UpstreamSource source;
  EXPECT_EQ(source.key(), "");
  source.sni = "a.example";
  EXPECT_TRUE(source.empty());
  upstream::UpstreamSource other;
  other.sni = "b.example";
  EXPECT_NE(source.key(), other.key());
  EXPECT_NE(source.key(), "");
}

}  // namespace
}  // namespace skiff::tls::testing
