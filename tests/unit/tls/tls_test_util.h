// Test helpers for the TLS library: a temporary mesh PKI made with skiff-certs' library, loopback socket
// pairs, TLS contexts from YAML, and a deadline-bounded driver for coroutines on an io_context.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>

#include "envoy/extensions/transport_sockets/tls/v3/tls.pb.h"
#include "skiff/certs/issue.h"
#include "skiff/certs/layout.h"
#include "skiff/config/yaml_to_proto.h"
#include "skiff/stats/stats.h"
#include "skiff/tls/context.h"
#include "skiff/tls/context_config.h"
#include "skiff/tls/transport.h"

namespace skiff::tls::testing {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

inline std::string spiffe(const std::string& ns, const std::string& sa) {
  return "spiffe://cluster.local/ns/" + ns + "/sa/" + sa;
}

// root/ (root CA), inter/ (intermediate), other-root/ (an unrelated CA) and workload dirs on demand.
class Pki {
 public:
  Pki() {
    char tmpl[] = "/tmp/skiff-tls-test-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    certs::CaOptions ca;
    EXPECT_TRUE(certs::initRootCa(path("root"), ca, false).ok());
    EXPECT_TRUE(certs::initIntermediateCa(path("root"), path("inter"), certs::CaOptions{}, false).ok());
    EXPECT_TRUE(certs::initRootCa(path("other-root"), ca, false).ok());
  }
  ~Pki() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& rel) const { return dir_ + "/" + rel; }
  std::string root() const { return path("root/root-cert.pem"); }
  std::string otherRoot() const { return path("other-root/root-cert.pem"); }

  // A workload in `name`/ issued by the intermediate; returns its directory.
  std::string workload(const std::string& name, const std::string& ns, const std::string& sa,
                       std::chrono::seconds backdate = 0s, std::vector<std::string> dns = {}) {
    certs::WorkloadOptions options;
    options.identity.uris = {spiffe(ns, sa)};
    options.identity.dns = std::move(dns);
    options.backdate = backdate;
    auto leaf = certs::issueWorkloadToDir(path("inter"), path(name), options);
    EXPECT_TRUE(leaf.ok()) << leaf.error();
    return path(name);
  }
  bool renew(const std::string& name) {
    certs::RenewOptions options;
    options.force = true;
    auto r = certs::renewWorkloadDir(path("inter"), path(name), options);
    EXPECT_TRUE(r.ok()) << r.error();
    return r.ok() && r->renewed;
  }
  void write(const std::string& rel, const std::string& text) const { std::ofstream(path(rel)) << text; }

 private:
  std::string dir_;
};

// "tls_certificates: [...]" (flow YAML) for a workload directory.
inline std::string certYaml(const std::string& dir) {
  return "tls_certificates: [{certificate_chain: {filename: \"" + dir +
         "/cert-chain.pem\"}, private_key: {filename: \"" + dir + "/key.pem\"}}]";
}

template <typename Proto>
Proto parseYaml(const std::string& yaml) {
  Proto proto;
  std::vector<std::string> warnings;
  config::loadMessageYaml(yaml, proto, warnings);
  return proto;
}

inline TlsContextSharedPtr serverContext(const std::string& yaml, stats::Store& store,
                                         SecretManager* secrets = nullptr,
                                         const std::string& prefix = "listener.test.ssl.") {
  auto proto = parseYaml<envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext>(yaml);
  return TlsContext::makeServer(parseServerConfig(proto, secrets), store, prefix);
}

inline TlsContextSharedPtr clientContext(const std::string& yaml, stats::Store& store,
                                         SecretManager* secrets = nullptr,
                                         const std::string& prefix = "cluster.test.ssl.") {
  auto proto = parseYaml<envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext>(yaml);
  return TlsContext::makeClient(parseClientConfig(proto, secrets), store, prefix);
}

// Runs `io` until `done()` or the deadline; true when done.
inline bool runUntil(asio::io_context& io, const std::function<bool()>& done,
                     std::chrono::milliseconds limit = 5000ms) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  io.restart();
  while (!done() && std::chrono::steady_clock::now() < deadline) io.run_one_for(20ms);
  return done();
}

// A connected loopback TCP pair.
struct SocketPair {
  explicit SocketPair(asio::io_context& io) : client(io), server(io) {
    asio::ip::tcp::acceptor acceptor(io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    client.connect(acceptor.local_endpoint());
    acceptor.accept(server);
  }
  asio::ip::tcp::socket client;
  asio::ip::tcp::socket server;
};

// A client and a server transport over one socket pair, with their handshake results.
struct Connection {
  Connection(asio::io_context& io, const TlsContextSharedPtr& client_ctx,
             const TlsContextSharedPtr& server_ctx, HandshakeOptions options = {})
      : sockets(io),
        client(sockets.client, client_ctx->current(), TlsTransport::Role::kClient, std::move(options)),
        server(sockets.server, server_ctx->current(), TlsTransport::Role::kServer) {}

  // Both handshakes, concurrently; a side that fails closes its socket so the other never hangs.
  bool handshake(asio::io_context& io) {
    auto run = [this](TlsTransport& t, asio::ip::tcp::socket& s, std::optional<std::error_code>& out) {
      asio::co_spawn(
          s.get_executor(),
          [&t, &s, &out]() -> asio::awaitable<void> {
            auto ec = co_await t.handshake();
            if (ec) {
              std::error_code ignored;
              s.shutdown(asio::socket_base::shutdown_both, ignored);
            }
            out = ec;
          },
          asio::detached);
    };
    run(client, sockets.client, client_ec);
    run(server, sockets.server, server_ec);
    return runUntil(io, [this] { return client_ec.has_value() && server_ec.has_value(); });
  }

  // Writes `text` from `from` and reads it at `to`; returns what was read ("" + error text on failure).
  std::string exchange(asio::io_context& io, TlsTransport& from, TlsTransport& to, const std::string& text) {
    std::optional<std::error_code> write_ec;
    std::string received;
    std::optional<std::error_code> read_ec;
    asio::co_spawn(
        io, [&]() -> asio::awaitable<void> { write_ec = co_await from.write(asio::buffer(text)); },
        asio::detached);
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          char buf[4096];
          while (received.size() < text.size()) {
            auto [ec, n] = co_await to.readSome(asio::buffer(buf));
            if (ec) {
              read_ec = ec;
              co_return;
            }
            received.append(buf, n);
          }
          read_ec = std::error_code();
        },
        asio::detached);
    runUntil(io, [&] { return write_ec.has_value() && read_ec.has_value(); });
    if (!read_ec || *read_ec) return "<read error: " + (read_ec ? read_ec->message() : "timeout") + ">";
    return received;
  }

  SocketPair sockets;
  TlsTransport client;
  TlsTransport server;
  std::optional<std::error_code> client_ec;
  std::optional<std::error_code> server_ec;
};

inline uint64_t counter(stats::Store& store, const std::string& name) {
  return store.counter(name).value();
}

}  // namespace skiff::tls::testing
