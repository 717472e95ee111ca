// Interop with real peers: our client against `openssl s_server`, and `openssl s_client` against our
// server, both with mutual TLS and SPIFFE workload certificates.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <asio/ip/tcp.hpp>

#include "skiff/certs/pem.h"
#include "unit/tls/tls_test_util.h"

namespace skiff::tls::testing {
namespace {

std::string readText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A child process we started; killed (by pid) and reaped when the test ends.
class Child {
 public:
  Child(std::vector<std::string> argv, const std::string& stdin_path, const std::string& log_path) {
    pid_ = ::fork();
    if (pid_ == 0) {
      int in = ::open(stdin_path.empty() ? "/dev/null" : stdin_path.c_str(), O_RDONLY);
      int out = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(in, 0);
      ::dup2(out, 1);
      ::dup2(out, 2);
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      ::execvp(args[0], args.data());
      ::_exit(127);
    }
  }
  ~Child() {
    if (running()) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  bool running() {
    if (exited_) return false;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      exited_ = true;
      status_ = status;
    }
    return !exited_;
  }
  int status() const { return status_; }

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  int status_ = 0;
};

class InteropTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::system("openssl version >/dev/null 2>&1") != 0) GTEST_SKIP() << "openssl CLI not installed";
    server_dir_ = pki_.workload("server", "shop", "cart");
    client_dir_ = pki_.workload("client", "shop", "frontend");
    splitChain(server_dir_, "server");
    splitChain(client_dir_, "client");
  }

  // openssl's -cert takes one certificate; the intermediate goes to -cert_chain.
  void splitChain(const std::string& dir, const std::string& name) {
    auto certs = certs::readCertsFile(dir + "/cert-chain.pem");
    ASSERT_TRUE(certs.ok()) << certs.error();
    ASSERT_EQ(certs->size(), 2u);
    pki_.write(name + "-leaf.pem", certs::certToPem(certs.value()[0].get()));
    pki_.write(name + "-inter.pem", certs::certToPem(certs.value()[1].get()));
  }

  static uint16_t freePort(asio::io_context& io) {
    asio::ip::tcp::acceptor a(io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    return a.local_endpoint().port();
  }

  Pki pki_;
  std::string server_dir_, client_dir_;
  asio::io_context io_;
  stats::Store store_{1};
};

TEST_F(InteropTest, OurClientAgainstOpensslServer) {
  const uint16_t port = freePort(io_);
  const std::string log = pki_.path("s_server.log");
  Child server({"openssl", "s_server", "-accept", "127.0.0.1:" + std::to_string(port), "-cert",
                pki_.path("server-leaf.pem"), "-cert_chain", pki_.path("server-inter.pem"), "-key",
                server_dir_ + "/key.pem", "-CAfile", pki_.root(), "-Verify", "3", "-verify_return_error",
                "-rev", "-naccept", "1"},
               "", log);
  ASSERT_TRUE(runUntil(io_, [&] {
    return readText(log).find("ACCEPT") != std::string::npos || !server.running();
  })) << readText(log);
  ASSERT_TRUE(server.running()) << readText(log);

  auto client = clientContext(
      "common_tls_context: {" + certYaml(client_dir_) + ", validation_context: {trusted_ca: {filename: \"" +
          pki_.root() + "\"}, match_typed_subject_alt_names: [{san_type: URI, matcher: {exact: \"" +
          spiffe("shop", "cart") +
          "\"}}]}, tls_params: {tls_maximum_protocol_version: TLSv1_3}}\nsni: cart.shop\n",
      store_);
  asio::ip::tcp::socket socket(io_);
  socket.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  TlsTransport tls(socket, client->current(), TlsTransport::Role::kClient);
  std::optional<std::error_code> hs;
  std::string echoed;
  std::optional<std::error_code> done;
  asio::co_spawn(
      io_,
      [&]() -> asio::awaitable<void> {
        hs = co_await tls.handshake();
        if (*hs) co_return;
        if (auto ec = co_await tls.write(asio::buffer(std::string("hello skiff\n")))) {
          done = ec;
          co_return;
        }
        char buf[256];
        while (echoed.find("ffiks olleh") == std::string::npos) {
          auto [ec, n] = co_await tls.readSome(asio::buffer(buf));
          if (ec) {
            done = ec;
            co_return;
          }
          echoed.append(buf, n);
        }
        done = co_await tls.shutdown();
      },
      asio::detached);
  ASSERT_TRUE(runUntil(
      io_, [&] { return (hs && *hs) || done.has_value(); }, 10000ms))
      << readText(log);
  ASSERT_FALSE(*hs) << tls.failureReason() << "\n" << readText(log);
  EXPECT_FALSE(*done) << done->message();
  EXPECT_NE(echoed.find("ffiks olleh"), std::string::npos);
  EXPECT_EQ(tls.info().tls_version, "TLSv1.3");
  EXPECT_EQ(tls.info().uri_san_peer, std::vector<std::string>{spiffe("shop", "cart")});
}

TEST_F(InteropTest, OpensslClientAgainstOurServer) {
  auto server =
      serverContext("common_tls_context: {" + certYaml(server_dir_) +
                        ", alpn_protocols: [h2, http/1.1], "
                        "validation_context: {trusted_ca: {filename: \"" +
                        pki_.root() +
                        "\"}, match_typed_subject_alt_names: [{san_type: URI, matcher: {prefix: "
                        "\"spiffe://cluster.local/ns/shop/\"}}]}}\nrequire_client_certificate: true\n",
                    store_);
  asio::ip::tcp::acceptor acceptor(io_, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const uint16_t port = acceptor.local_endpoint().port();
  pki_.write("stdin.txt", "hello skiff\n");
  const std::string log = pki_.path("s_client.log");
  Child client({"openssl", "s_client", "-connect", "127.0.0.1:" + std::to_string(port), "-cert",
                pki_.path("client-leaf.pem"), "-cert_chain", pki_.path("client-inter.pem"), "-key",
                client_dir_ + "/key.pem", "-CAfile", pki_.root(), "-verify_return_error", "-servername",
                "cart.shop", "-alpn", "http/1.1,h2", "-ign_eof"},
               pki_.path("stdin.txt"), log);

  asio::ip::tcp::socket socket(io_);
  std::unique_ptr<TlsTransport> tls;
  std::optional<std::error_code> hs, done;
  std::string got;
  asio::co_spawn(
      io_,
      [&]() -> asio::awaitable<void> {
        co_await acceptor.async_accept(socket, asio::use_awaitable);
        tls = std::make_unique<TlsTransport>(socket, server->current(), TlsTransport::Role::kServer);
        hs = co_await tls->handshake();
        if (*hs) co_return;
        char buf[256];
        while (got.find('\n') == std::string::npos) {
          auto [ec, n] = co_await tls->readSome(asio::buffer(buf));
          if (ec) {
            done = ec;
            co_return;
          }
          got.append(buf, n);
        }
        if (auto ec = co_await tls->write(asio::buffer(std::string("world from skiff\n")))) {
          done = ec;
          co_return;
        }
        done = co_await tls->shutdown();
        socket.close();
      },
      asio::detached);
  ASSERT_TRUE(runUntil(
      io_, [&] { return (hs && *hs) || (done && !client.running()); }, 15000ms))
      << readText(log);
  ASSERT_FALSE(*hs) << tls->failureReason() << "\n" << readText(log);
  EXPECT_FALSE(*done);
  EXPECT_EQ(got, "hello skiff\n");
  const std::string out = readText(log);
  EXPECT_NE(out.find("world from skiff"), std::string::npos) << out;
  EXPECT_NE(out.find("Verification: OK"), std::string::npos) << out;
  EXPECT_EQ(tls->info().sni, "cart.shop");
  EXPECT_EQ(tls->info().alpn, "h2");
  EXPECT_EQ(tls->info().uri_san_peer, std::vector<std::string>{spiffe("shop", "frontend")});
  EXPECT_EQ(counter(store_, "listener.test.ssl.handshake"), 1u);
}

TEST_F(InteropTest, OpensslTls11ClientRefused) {
  auto server = serverContext("common_tls_context: {" + certYaml(server_dir_) + "}", store_);
  asio::ip::tcp::acceptor acceptor(io_, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const uint16_t port = acceptor.local_endpoint().port();
  const std::string log = pki_.path("s_client11.log");
  // SECLEVEL=0: Debian's OpenSSL would otherwise refuse TLS 1.1 before sending anything.
  Child client({"openssl", "s_client", "-connect", "127.0.0.1:" + std::to_string(port), "-tls1_1", "-cipher",
                "DEFAULT@SECLEVEL=0"},
               "", log);
  asio::ip::tcp::socket socket(io_);
  std::unique_ptr<TlsTransport> tls;
  std::optional<std::error_code> hs;
  asio::co_spawn(
      io_,
      [&]() -> asio::awaitable<void> {
        co_await acceptor.async_accept(socket, asio::use_awaitable);
        tls = std::make_unique<TlsTransport>(socket, server->current(), TlsTransport::Role::kServer);
        hs = co_await tls->handshake();
        socket.close();
      },
      asio::detached);
  ASSERT_TRUE(runUntil(
      io_, [&] { return hs.has_value() && !client.running(); }, 10000ms))
      << readText(log);
  EXPECT_TRUE(*hs);
  EXPECT_NE(tls->failureReason().find("UNSUPPORTED_PROTOCOL"), std::string::npos) << tls->failureReason();
  EXPECT_EQ(counter(store_, "listener.test.ssl.connection_error"), 1u);
  EXPECT_NE(client.status(), 0);
}

}  // namespace
}  // namespace skiff::tls::testing
