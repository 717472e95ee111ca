// TcpProxySession over real loopback sockets: one io_context runs the proxy, the test clients and the
// upstream servers; tests poll it with a deadline.
#include "server/tcp/tcp_proxy.h"

#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <asio/ip/tcp.hpp>
#include <asio/write.hpp>

#include <fstream>
#include <functional>
#include <random>
#include <sstream>

#include "skiff/upstream/cluster_manager.h"

namespace skiff::server {
namespace {

using asio::ip::tcp;

bool runUntil(asio::io_context& io, const std::function<bool()>& done,
              std::chrono::milliseconds deadline = std::chrono::seconds(10)) {
  const auto end = std::chrono::steady_clock::now() + deadline;
  while (!done() && std::chrono::steady_clock::now() < end) {
    io.restart();
    io.run_one_for(std::chrono::milliseconds(20));
  }
  return done();
}

std::string randomBytes(size_t n) {
  std::mt19937_64 rng(42);
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(rng());
  return out;
}

// An upstream server: per connection, records the peer, echoes (unless `echo` is false: it only collects),
// and answers a FIN with a FIN once everything is written. `paused` holds reading until resume().
class Server {
 public:
  explicit Server(asio::io_context& io, const std::string& address = "127.0.0.1")
      : io_(io), acceptor_(io, tcp::endpoint(asio::ip::make_address(address), 0)) {
    accept();
  }
  tcp::endpoint endpoint() const { return acceptor_.local_endpoint(); }
  std::vector<tcp::endpoint> peers;
  std::string received;
  bool echo = true;
  bool paused = false;
  std::string greeting;  // sent first, followed by a FIN (server half-closes first)
  int eofs = 0;

  void resume() {
    paused = false;
    for (auto& c : conns_) read(c);
  }

 private:
  struct Conn {
    explicit Conn(asio::io_context& io) : socket(io) {}
    tcp::socket socket;
    std::array<char, 65536> buf;
    bool reading = false;
  };
  void accept() {
    auto conn = std::make_shared<Conn>(io_);
    acceptor_.async_accept(conn->socket, [this, conn](std::error_code ec) {
      if (ec) return;
      peers.push_back(conn->socket.remote_endpoint());
      conns_.push_back(conn);
      if (!greeting.empty()) {
        asio::async_write(conn->socket, asio::buffer(greeting), [conn](std::error_code, size_t) {
          std::error_code ignored;
          conn->socket.shutdown(tcp::socket::shutdown_send, ignored);
        });
      }
      if (!paused) read(conn);
      accept();
    });
  }
  void read(const std::shared_ptr<Conn>& conn) {
    if (conn->reading || !conn->socket.is_open()) return;
    conn->reading = true;
    conn->socket.async_read_some(asio::buffer(conn->buf), [this, conn](std::error_code ec, size_t n) {
      conn->reading = false;
      if (ec) {
        ++eofs;
        std::error_code ignored;
        if (echo && greeting.empty()) conn->socket.shutdown(tcp::socket::shutdown_send, ignored);
        return;
      }
      received.append(conn->buf.data(), n);
      if (echo) {
        asio::async_write(conn->socket, asio::buffer(conn->buf.data(), n),
                          [this, conn](std::error_code wec, size_t) {
                            if (!wec && !paused) read(conn);
                          });
      } else if (!paused) {
        read(conn);
      }
    });
  }
  asio::io_context& io_;
  tcp::acceptor acceptor_;
  std::vector<std::shared_ptr<Conn>> conns_;
};

// A downstream client: connects to the proxy, sends `data` then (optionally) FIN, reads until EOF.
struct Client {
  explicit Client(asio::io_context& io) : socket(io) {}
  tcp::socket socket;
  std::string received;
  std::array<char, 65536> buf;
  bool connected = false, sent = false, eof = false;
  std::error_code read_error;

  void connect(const tcp::endpoint& to) {
    socket.async_connect(to, [this](std::error_code ec) {
      connected = !ec;
      if (!ec) read();
    });
  }
  void send(const std::string& data, bool fin) {
    asio::async_write(socket, asio::buffer(data), [this, fin](std::error_code ec, size_t) {
      sent = !ec;
      std::error_code ignored;
      if (fin) socket.shutdown(tcp::socket::shutdown_send, ignored);
    });
  }
  void read() {
    socket.async_read_some(asio::buffer(buf), [this](std::error_code ec, size_t n) {
      if (ec) {
        eof = true;
        read_error = ec;
        return;
      }
      received.append(buf.data(), n);
      read();
    });
  }
};

class TcpProxyTest : public ::testing::Test {
 protected:
  TcpProxyTest()
      : store_(2),
        worker_(io_, 0),
        listener_stats_(store_, "listener.test."),
        cm_(io_, store_),
        acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    cm_.setUpdateCallback([this](const std::string& name, upstream::ClusterInfoConstSharedPtr info,
                                 upstream::HostSetConstSharedPtr hosts) {
      worker_.clusters.update(name, std::move(info), std::move(hosts));
    });
    cm_.start();
    log_path_ = ::testing::TempDir() + "tcp_proxy_" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".log";
    std::remove(log_path_.c_str());
    accept();
  }

  void addCluster(const std::string& json) {
    envoy::config::cluster::v3::Cluster cluster;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &cluster).ok()) << json;
    cm_.addOrUpdateCluster(cluster);
  }
  static std::string staticCluster(const std::string& name, const tcp::endpoint& ep,
                                   const std::string& extra = "") {
    return R"({"name": ")" + name +
           R"(", "connect_timeout": "1s", "load_assignment": {"endpoints": [{"lb_endpoints": [
        {"endpoint": {"address": {"socket_address": {"address": ")" +
           ep.address().to_string() + R"(", "port_value": )" + std::to_string(ep.port()) + "}}}}]}]}" +
           extra + "}";
  }

  void configure(const std::string& extra_json) {
    TcpProxyConfig::Proto proto;
    const std::string json = R"({"stat_prefix": "tp", )" + extra_json +
                             R"(, "access_log": [{"name": "envoy.access_loggers.file", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
        "path": ")" + log_path_ +
                             R"(", "log_format": {"text_format_source": {"inline_string":
        "%RESPONSE_FLAGS% %UPSTREAM_HOST% %UPSTREAM_CLUSTER% %BYTES_RECEIVED% %BYTES_SENT% %PROTOCOL% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\"\n"}}}}]})";
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &proto).ok()) << json;
    config_ = std::make_shared<const TcpProxyConfig>(proto, "test", store_);
  }

  void accept() {
    acceptor_.async_accept([this](std::error_code ec, tcp::socket socket) {
      if (ec) return;
      auto info = std::make_shared<network::ConnectionInfo>();
      info->id = WorkerContext::nextConnectionId();
      info->local = socket.local_endpoint();
      info->remote = socket.remote_endpoint();
      if (original_dst_) {
        info->local = *original_dst_;
        info->local_restored = true;
      }
      auto session = std::make_shared<TcpProxySession>(worker_, std::move(socket), config_, listener_stats_,
                                                       std::move(info));
      session->start();
      accept();
    });
  }

  // Servers and clients belong to the fixture so that their handlers can still run in the destructor.
  Client* connectClient() {
    clients_.push_back(std::make_unique<Client>(io_));
    Client* client = clients_.back().get();
    client->connect(acceptor_.local_endpoint());
    EXPECT_TRUE(runUntil(io_, [&] { return client->connected; }));
    return client;
  }
  Server& makeServer() {
    servers_.push_back(std::make_unique<Server>(io_));
    return *servers_.back();
  }

  ~TcpProxyTest() override {
    std::error_code ignored;
    acceptor_.close(ignored);
    std::vector<DownstreamConnection*> open(worker_.connections.begin(), worker_.connections.end());
    for (auto* c : open) c->close();
    for (auto& c : clients_) c->socket.close(ignored);
    // Aborted handlers run now, while everything they touch is alive; sessions die with their last one.
    io_.restart();
    io_.poll();
  }

  uint64_t counter(const std::string& name) { return store_.counter(name).value(); }
  // The log file after the worker's periodic flush.
  std::string logText() {
    config_->flushAccessLogs(worker_.index);
    return fileText();
  }
  std::string fileText() {
    std::ifstream in(log_path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  static tcp::endpoint unusedPort(asio::io_context& io) {
    tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    return a.local_endpoint();  // closed when `a` goes away: nothing listens there
  }

  asio::io_context io_;
  stats::Store store_;
  WorkerContext worker_;
  ListenerStats listener_stats_;
  upstream::ClusterManager cm_;
  tcp::acceptor acceptor_;
  TcpProxyConfigSharedPtr config_;
  std::optional<tcp::endpoint> original_dst_;
  std::string log_path_;
  std::vector<std::unique_ptr<Server>> servers_;
  std::vector<std::unique_ptr<Client>> clients_;
};

TEST_F(TcpProxyTest, EchoesMegabytesExactlyWithHalfClose) {
  Server& server = makeServer();
  addCluster(staticCluster("echo", server.endpoint()));
  configure(R"("cluster": "echo")");
  const std::string payload = randomBytes(4 * 1024 * 1024 + 123);
  auto client = connectClient();
  client->send(payload, /*fin=*/true);
  // The client's FIN reaches the server, which keeps echoing what is left and then closes its side.
  ASSERT_TRUE(runUntil(
      io_, [&] { return client->eof; }, std::chrono::seconds(30)));
  EXPECT_EQ(client->read_error, asio::error::eof);
  EXPECT_TRUE(client->received == payload) << client->received.size() << " of " << payload.size();
  EXPECT_TRUE(server.received == payload);
  ASSERT_TRUE(runUntil(io_, [&] { return worker_.connections.empty(); }));
  EXPECT_EQ(counter("tcp.tp.downstream_cx_total"), 1u);
  EXPECT_EQ(counter("tcp.tp.downstream_cx_rx_bytes_total"), payload.size());
  EXPECT_EQ(counter("tcp.tp.downstream_cx_tx_bytes_total"), payload.size());
  EXPECT_EQ(counter("cluster.echo.upstream_cx_tx_bytes_total"), payload.size());
  EXPECT_EQ(counter("cluster.echo.upstream_cx_rx_bytes_total"), payload.size());
  EXPECT_EQ(counter("cluster.echo.upstream_cx_total"), 1u);
  EXPECT_EQ(store_.gauge("cluster.echo.upstream_cx_active").value(), 0);
  EXPECT_EQ(store_.gauge("listener.test.downstream_cx_active").value(), 0);
  const std::string size = std::to_string(payload.size());
  EXPECT_EQ(logText(), "- " + server.endpoint().address().to_string() + ":" +
                           std::to_string(server.endpoint().port()) + " echo " + size + " " + size +
                           " - \"-\"\n");
}

TEST_F(TcpProxyTest, ServerFinFirstKeepsClientToServerOpen) {
  Server& server = makeServer();
  server.echo = false;
  server.greeting = "hello";
  addCluster(staticCluster("s", server.endpoint()));
  configure(R"("cluster": "s")");
  auto client = connectClient();
  ASSERT_TRUE(runUntil(io_, [&] { return client->eof; }));
  EXPECT_EQ(client->received, "hello");
  EXPECT_EQ(client->read_error, asio::error::eof);
  // The server half-closed; the client's bytes still reach it.
  client->send("world", true);
  ASSERT_TRUE(runUntil(io_, [&] { return server.received == "world" && server.eofs == 1; }));
  ASSERT_TRUE(runUntil(io_, [&] { return worker_.connections.empty(); }));
}

TEST_F(TcpProxyTest, UpstreamRefusedClosesDownstreamWithUF) {
  addCluster(staticCluster("dead", unusedPort(io_)));
  configure(R"("cluster": "dead", "max_connect_attempts": 2)");
  auto client = connectClient();
  ASSERT_TRUE(runUntil(io_, [&] { return client->eof; }));
  EXPECT_TRUE(client->received.empty());
  EXPECT_EQ(counter("cluster.dead.upstream_cx_connect_fail"), 2u);
  EXPECT_EQ(counter("cluster.dead.upstream_cx_connect_attempts_exceeded"), 1u);
  ASSERT_TRUE(runUntil(io_, [&] { return !logText().empty(); }));
  EXPECT_EQ(logText().substr(0, 3), "UF ");
  EXPECT_NE(logText().find("Connection refused"), std::string::npos) << logText();
  EXPECT_EQ(store_.gauge("cluster.dead.upstream_cx_active").value(), 0);
}

TEST_F(TcpProxyTest, IdleTimeoutCloses) {
  Server& server = makeServer();
  addCluster(staticCluster("echo", server.endpoint()));
  configure(R"("cluster": "echo", "idle_timeout": "0.2s")");
  auto client = connectClient();
  client->send("ping", false);
  ASSERT_TRUE(runUntil(io_, [&] { return client->received == "ping"; }));
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(runUntil(io_, [&] { return client->eof; }));
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(150));
  EXPECT_EQ(counter("tcp.tp.idle_timeout"), 1u);
}

TEST_F(TcpProxyTest, MaxDownstreamConnectionDurationCloses) {
  Server& server = makeServer();
  addCluster(staticCluster("echo", server.endpoint()));
  configure(R"("cluster": "echo", "max_downstream_connection_duration": "0.1s")");
  auto client = connectClient();
  ASSERT_TRUE(runUntil(io_, [&] { return client->eof; }));
  EXPECT_EQ(counter("tcp.tp.max_downstream_connection_duration"), 1u);
}

TEST_F(TcpProxyTest, MaxConnectionsOverflowClosesWithUO) {
  Server& server = makeServer();
  addCluster(staticCluster("echo", server.endpoint(),
                           R"(, "circuit_breakers": {"thresholds": [{"max_connections": 1}]})"));
  configure(R"("cluster": "echo")");
  auto first = connectClient();
  first->send("a", false);
  ASSERT_TRUE(runUntil(io_, [&] { return first->received == "a"; }));
  auto second = connectClient();
  ASSERT_TRUE(runUntil(io_, [&] { return second->eof; }));
  EXPECT_EQ(counter("cluster.echo.upstream_cx_overflow"), 1u);
  EXPECT_FALSE(first->eof);
  ASSERT_TRUE(runUntil(io_, [&] { return logText().find("UO ") == 0; })) << logText();
  // The first session still works.
  first->send("b", true);
  ASSERT_TRUE(runUntil(io_, [&] { return first->eof; }));
  EXPECT_EQ(first->received, "ab");
}

TEST_F(TcpProxyTest, UpstreamBindConfigSetsSourceAddress) {
  Server& server = makeServer();
  addCluster(staticCluster(
      "inbound", server.endpoint(),
      R"(, "upstream_bind_config": {"source_address": {"address": "127.0.0.6", "port_value": 0}})"));
  configure(R"("cluster": "inbound")");
  auto client = connectClient();
  client->send("x", true);
  ASSERT_TRUE(runUntil(io_, [&] { return client->eof; }));
  ASSERT_EQ(server.peers.size(), 1u);
  EXPECT_EQ(server.peers[0].address().to_string(), "127.0.0.6");
}

TEST_F(TcpProxyTest, BadBindAddressFailsWithUFAndReason) {
  Server& server = makeServer();
  // 192.0.2.1 (TEST-NET-1) is not a local address: bind() fails without IP_TRANSPARENT.
  addCluster(staticCluster(
      "inbound", server.endpoint(),
      R"(, "upstream_bind_config": {"source_address": {"address": "192.0.2.1", "port_value": 0}})"));
  configure(R"("cluster": "inbound")");
  auto client = connectClient();
  ASSERT_TRUE(runUntil(io_, [&] { return client->eof; }));
  ASSERT_TRUE(runUntil(io_, [&] { return !logText().empty(); }));
  EXPECT_EQ(logText().substr(0, 3), "UF ");
  EXPECT_NE(logText().find("bind to 192.0.2.1:0"), std::string::npos) << logText();
  EXPECT_EQ(counter("cluster.inbound.bind_errors"), 1u);
  EXPECT_TRUE(server.peers.empty());
}

TEST_F(TcpProxyTest, OriginalDstClusterConnectsToRestoredDestination) {
  Server& server = makeServer();
  addCluster(R"({"name": "PassthroughCluster", "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED"})");
  configure(R"("cluster": "PassthroughCluster")");
  original_dst_ = server.endpoint();
  auto client = connectClient();
  client->send("through", true);
  ASSERT_TRUE(runUntil(io_, [&] { return client->eof; }));
  EXPECT_EQ(client->received, "through");
  EXPECT_NE(logText().find(" " + server.endpoint().address().to_string() + ":" +
                           std::to_string(server.endpoint().port()) + " PassthroughCluster "),
            std::string::npos)
      << logText();
}

TEST_F(TcpProxyTest, OriginalDstWithoutRestoredDestinationIsUH) {
  addCluster(R"({"name": "PassthroughCluster", "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED"})");
  configure(R"("cluster": "PassthroughCluster")");
  auto client = connectClient();
  ASSERT_TRUE(runUntil(io_, [&] { return client->eof; }));
  ASSERT_TRUE(runUntil(io_, [&] { return !logText().empty(); }));
  EXPECT_EQ(logText().substr(0, 3), "UH ");
  EXPECT_EQ(counter("cluster.PassthroughCluster.upstream_cx_none_healthy"), 1u);
}

TEST_F(TcpProxyTest, BlackHoleClusterClosesWithUH) {
  addCluster(R"({"name": "BlackHoleCluster", "type": "STATIC", "connect_timeout": "10s"})");
  configure(R"("cluster": "BlackHoleCluster")");
  auto client = connectClient();
  ASSERT_TRUE(runUntil(io_, [&] { return client->eof; }));
  ASSERT_TRUE(runUntil(io_, [&] { return !logText().empty(); }));
  EXPECT_EQ(logText().substr(0, 3), "UH ");
}

TEST_F(TcpProxyTest, UnknownClusterIsNoRoute) {
  configure(R"("cluster": "missing")");
  auto client = connectClient();
  ASSERT_TRUE(runUntil(io_, [&] { return client->eof; }));
  EXPECT_EQ(counter("tcp.tp.downstream_cx_no_route"), 1u);
  ASSERT_TRUE(runUntil(io_, [&] { return !logText().empty(); }));
  EXPECT_EQ(logText().substr(0, 3), "NC ");
}

TEST_F(TcpProxyTest, FlowControlPausesDownstreamReadingAndLosesNothing) {
  Server& server = makeServer();
  server.echo = false;
  server.paused = true;
  addCluster(staticCluster("slow", server.endpoint(), R"(, "per_connection_buffer_limit_bytes": 16384)"));
  configure(R"("cluster": "slow")");
  const std::string payload = randomBytes(16 * 1024 * 1024);
  auto client = connectClient();
  client->send(payload, true);
  ASSERT_TRUE(runUntil(
      io_, [&] { return counter("tcp.tp.downstream_flow_control_paused_reading_total") > 0; },
      std::chrono::seconds(30)));
  EXPECT_FALSE(client->sent);  // the proxy stopped reading, so the client's write is stuck
  server.resume();
  ASSERT_TRUE(runUntil(
      io_, [&] { return server.eofs == 1; }, std::chrono::seconds(30)));
  EXPECT_TRUE(server.received == payload) << server.received.size();
  EXPECT_GE(counter("tcp.tp.downstream_flow_control_resumed_reading_total"), 1u);
}

TEST_F(TcpProxyTest, CloseEndsTheSession) {
  Server& server = makeServer();
  addCluster(staticCluster("echo", server.endpoint()));
  configure(R"("cluster": "echo")");
  auto client = connectClient();
  client->send("a", false);
  ASSERT_TRUE(runUntil(io_, [&] { return client->received == "a"; }));
  ASSERT_EQ(worker_.connections.size(), 1u);
  (*worker_.connections.begin())->close();
  EXPECT_TRUE(worker_.connections.empty());
  ASSERT_TRUE(runUntil(io_, [&] { return client->eof; }));
}

TEST_F(TcpProxyTest, AccessLogIsWrittenByTheWorkerFlushNotPerSession) {
  Server& server = makeServer();
  addCluster(staticCluster("echo", server.endpoint()));
  configure(R"("cluster": "echo")");
  auto client = connectClient();
  client->send("ab", true);
  ASSERT_TRUE(runUntil(io_, [&] { return client->eof; }));
  ASSERT_TRUE(runUntil(io_, [&] { return worker_.connections.empty(); }));
  EXPECT_EQ(fileText(), "");                    // buffered: no write(2) per session
  config_->flushAccessLogs(worker_.index + 1);  // another worker's sinks hold nothing of it
  EXPECT_EQ(fileText(), "");
  config_->flushAccessLogs(worker_.index);
  EXPECT_NE(fileText().find(" echo 2 2 "), std::string::npos) << fileText();
}

}  // namespace
}  // namespace skiff::server
