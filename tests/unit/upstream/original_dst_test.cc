// ORIGINAL_DST clusters (host from the connection or a header, on-demand hosts and their cleanup), the
// BlackHole (empty STATIC) cluster, and upstream socket sourcing (bind config, original_src, pool keys).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <asio/ip/tcp.hpp>

#include "skiff/upstream/conn_pool.h"
#include "skiff/upstream/load_balancer.h"
#include "skiff/upstream/thread_local_cluster.h"
#include "skiff/upstream/upstream_socket.h"
#include "test_util.h"

namespace skiff::upstream {
namespace {

using test::clusterFromJson;

std::shared_ptr<const ClusterInfo> makeInfo(stats::Store& store, const std::string& json) {
  return std::make_shared<const ClusterInfo>(clusterFromJson(json), store, false, "");
}

network::ConnectionInfo restored(const std::string& ip, uint16_t port) {
  network::ConnectionInfo c;
  c.local = asio::ip::tcp::endpoint(asio::ip::make_address(ip), port);
  c.local_restored = true;
  c.remote = asio::ip::tcp::endpoint(asio::ip::make_address("10.0.0.9"), 40000);
  return c;
}

constexpr const char* kPassthrough =
    R"({"name": "p", "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED"})";

TEST(OriginalDstTest, HostIsTheRestoredDestination) {
  stats::Store store(1);
  auto info = makeInfo(store, kPassthrough);
  ThreadLocalCluster cluster(info, nullptr);
  const auto conn = restored("10.1.2.3", 8080);
  LbContext ctx;
  ctx.connection = &conn;
  auto host = cluster.chooseHost(ctx);
  ASSERT_TRUE(host);
  EXPECT_EQ(host->address(), "10.1.2.3:8080");
  EXPECT_EQ(cluster.chooseHost(ctx), host);  // the same host object is reused

  const auto v6 = restored("fd00::1", 443);
  ctx.connection = &v6;
  EXPECT_EQ(cluster.chooseHost(ctx)->address(), "[fd00::1]:443");
}

TEST(OriginalDstTest, NoDestinationMeansNoHost) {
  stats::Store store(1);
  auto info = makeInfo(store, kPassthrough);
  ThreadLocalCluster cluster(info, nullptr);
  EXPECT_EQ(cluster.chooseHost(LbContext{}), nullptr);
  network::ConnectionInfo not_restored = restored("10.1.2.3", 80);
  not_restored.local_restored = false;
  LbContext ctx;
  ctx.connection = &not_restored;
  EXPECT_EQ(cluster.chooseHost(ctx), nullptr);
}

TEST(OriginalDstTest, HttpHeaderWhenEnabled) {
  stats::Store store(1);
  auto with_header = makeInfo(store, R"({"name": "h", "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED",
      "original_dst_lb_config": {"use_http_header": true}})");
  EXPECT_EQ(with_header->original_dst->http_header_name, "x-envoy-original-dst-host");
  OriginalDstLoadBalancer lb(*with_header);
  const auto conn = restored("10.1.2.3", 80);
  LbContext ctx;
  ctx.connection = &conn;
  ctx.override_host = "127.0.0.1:9999";
  EXPECT_EQ(lb.chooseHost(ctx)->address(), "127.0.0.1:9999");
  ctx.override_host = "[::1]:81";
  EXPECT_EQ(lb.chooseHost(ctx)->address(), "[::1]:81");
  ctx.override_host = "not-an-ip:80";  // unusable header: the connection's destination
  EXPECT_EQ(lb.chooseHost(ctx)->address(), "10.1.2.3:80");

  auto without = makeInfo(store, kPassthrough);
  OriginalDstLoadBalancer plain(*without);
  ctx.override_host = "127.0.0.1:9999";  // ignored unless use_http_header
  EXPECT_EQ(plain.chooseHost(ctx)->address(), "10.1.2.3:80");
}

TEST(OriginalDstTest, CustomHeaderNameAndPortOverride) {
  stats::Store store(1);
  auto info = makeInfo(store, R"({"name": "h", "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED",
      "original_dst_lb_config": {"use_http_header": true, "http_header_name": "X-Dest",
                                 "upstream_port_override": 7000}})");
  EXPECT_EQ(info->original_dst->http_header_name, "x-dest");
  OriginalDstLoadBalancer lb(*info);
  LbContext ctx;
  ctx.override_host = "10.9.9.9:80";
  EXPECT_EQ(lb.chooseHost(ctx)->address(), "10.9.9.9:7000");
}

TEST(OriginalDstTest, UnusedHostsAreCleanedUp) {
  stats::Store store(1);
  auto info = makeInfo(store, R"({"name": "p", "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED",
      "cleanup_interval": "60s"})");
  EXPECT_EQ(info->original_dst->cleanup_interval, std::chrono::seconds(60));
  OriginalDstLoadBalancer lb(*info);
  const auto a = restored("10.0.0.1", 80), b = restored("10.0.0.2", 80);
  LbContext ctx;
  ctx.connection = &a;
  auto host_a = lb.chooseHost(ctx);
  ctx.connection = &b;
  lb.chooseHost(ctx);
  EXPECT_EQ(lb.hostCount(), 2u);
  auto now = std::chrono::steady_clock::now();
  lb.cleanup(now);  // both were used since the last cleanup: kept
  EXPECT_EQ(lb.hostCount(), 2u);
  ctx.connection = &a;
  EXPECT_EQ(lb.chooseHost(ctx), host_a);
  lb.cleanup(now + std::chrono::seconds(60));  // b unused for a whole interval
  EXPECT_EQ(lb.hostCount(), 1u);
  lb.cleanup(now + std::chrono::seconds(120));
  EXPECT_EQ(lb.hostCount(), 0u);
  EXPECT_EQ(host_a->address(), "10.0.0.1:80");  // a holder keeps its host alive
}

TEST(OriginalDstTest, ConfigErrorsNameTheField) {
  stats::Store store(1);
  auto expect_error = [&](const std::string& json, const std::string& fragment) {
    try {
      makeInfo(store, json);
      ADD_FAILURE() << "accepted: " << json;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  expect_error(R"({"name": "o", "type": "ORIGINAL_DST"})", "lb_policy: ROUND_ROBIN is not valid");
  expect_error(R"({"name": "o", "type": "ORIGINAL_DST", "lb_policy": "RANDOM"})", "lb_policy");
  expect_error(R"({"name": "s", "type": "STATIC", "lb_policy": "CLUSTER_PROVIDED"})",
               "CLUSTER_PROVIDED is only valid with cluster type ORIGINAL_DST");
  expect_error(R"({"name": "s", "original_dst_lb_config": {"use_http_header": true}})",
               "original_dst_lb_config");
  expect_error(
      R"({"name": "o", "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED", "cleanup_interval": "0s"})",
      "cleanup_interval");
}

TEST(BlackHoleTest, EmptyStaticClusterLoadsAndHasNoHost) {
  stats::Store store(1);
  auto info = makeInfo(store, R"({"name": "BlackHoleCluster", "type": "STATIC", "connect_timeout": "10s"})");
  ThreadLocalCluster cluster(info, std::make_shared<const HostSet>());
  EXPECT_EQ(cluster.chooseHost(LbContext{}), nullptr);
}

TEST(UpstreamSourceTest, OriginalSourceWinsOverBindConfig) {
  stats::Store store(1);
  auto info = makeInfo(store, R"({"name": "in", "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED",
      "upstream_bind_config": {"source_address": {"address": "127.0.0.6", "port_value": 0}}})");
  auto plain = upstreamSourceFor(*info, nullptr);
  ASSERT_TRUE(plain.address);
  EXPECT_EQ(plain.address->to_string(), "127.0.0.6");
  EXPECT_FALSE(plain.transparent);
  EXPECT_EQ(plain.key(), "127.0.0.6:0");

  auto conn = restored("10.1.2.3", 80);
  conn.original_source = network::ConnectionInfo::OriginalSource{1337, false};
  auto tproxy = upstreamSourceFor(*info, &conn);
  EXPECT_EQ(tproxy.address->to_string(), "10.0.0.9");
  EXPECT_EQ(tproxy.port, 0);
  EXPECT_TRUE(tproxy.transparent);
  EXPECT_EQ(tproxy.mark, 1337u);
  EXPECT_EQ(tproxy.key(), "10.0.0.9:0/t/m1337");
  conn.original_source->bind_port = true;
  EXPECT_EQ(upstreamSourceFor(*info, &conn).port, 40000);
}

TEST(UpstreamSourceTest, BindsBeforeConnect) {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  asio::ip::tcp::socket socket(io);
  UpstreamSource source;
  source.address = asio::ip::make_address("127.0.0.6");
  std::string reason;
  ASSERT_TRUE(openUpstreamSocket(socket, acceptor.local_endpoint(), source, &reason)) << reason;
  // Port 0: the port is picked at connect() (IP_BIND_ADDRESS_NO_PORT), not reserved by bind().
  int no_port = 0;
  socklen_t len = sizeof(no_port);
  ASSERT_EQ(::getsockopt(socket.native_handle(), IPPROTO_IP, 24, &no_port, &len), 0);
  EXPECT_EQ(no_port, 1);
  socket.connect(acceptor.local_endpoint());
  auto peer = acceptor.accept();
  EXPECT_EQ(peer.remote_endpoint().address().to_string(), "127.0.0.6");

  asio::ip::tcp::socket bad(io);
  source.address = asio::ip::make_address("192.0.2.1");  // not local, no IP_TRANSPARENT
  EXPECT_FALSE(openUpstreamSocket(bad, acceptor.local_endpoint(), source, &reason));
  EXPECT_NE(reason.find("bind to 192.0.2.1:0"), std::string::npos) << reason;
  EXPECT_FALSE(bad.is_open());
}

TEST(ConnPoolSourceTest, ConnectionsWithDifferentSourcesAreNotShared) {
  asio::io_context io;
  stats::Store store(1);
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  std::vector<asio::ip::tcp::endpoint> peers;
  std::vector<std::shared_ptr<asio::ip::tcp::socket>> accepted;
  std::function<void()> accept = [&] {
    auto s = std::make_shared<asio::ip::tcp::socket>(io);
    acceptor.async_accept(*s, [&, s](std::error_code ec) {
      if (ec) return;
      peers.push_back(s->remote_endpoint());
      accepted.push_back(s);
      accept();
    });
  };
  accept();
  auto info = makeInfo(store, R"({"name": "c"})");
  auto host = std::make_shared<Host>();
  host->endpoint = acceptor.local_endpoint();
  ConnPool pool(io, info);

  auto get = [&](const UpstreamSource& source) {
    UpstreamConnectionPtr got;
    bool done = false;
    auto acquired = pool.acquire(
        host,
        [&](UpstreamConnectionPtr c, PoolFailure, std::string_view) {
          got = std::move(c);
          done = true;
        },
        source);
    if (acquired.conn) return std::move(acquired.conn);
    EXPECT_TRUE(test::runUntil(io, [&] { return done; }));
    return got;
  };
  UpstreamSource six;
  six.address = asio::ip::make_address("127.0.0.6");
  UpstreamSource seven;
  seven.address = asio::ip::make_address("127.0.0.7");

  auto c6 = get(six);
  ASSERT_TRUE(c6);
  pool.release(std::move(c6), true);
  auto c7 = get(seven);  // the idle 127.0.0.6 connection must not be used
  ASSERT_TRUE(c7);
  EXPECT_EQ(c7->socket.local_endpoint().address().to_string(), "127.0.0.7");
  auto again6 = get(six);  // reuses the idle one
  ASSERT_TRUE(again6);
  EXPECT_EQ(again6->socket.local_endpoint().address().to_string(), "127.0.0.6");
  ASSERT_TRUE(test::runUntil(io, [&] { return peers.size() == 2; }));
  EXPECT_EQ(store.counter("cluster.c.upstream_cx_total").value(), 2u);
}

// original_src makes one pool key per client address: keys with nothing idle or waiting must not pile up.
TEST(ConnPoolSourceTest, EmptyHostKeysAreErased) {
  asio::io_context io;
  stats::Store store(1);
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  std::vector<std::shared_ptr<asio::ip::tcp::socket>> accepted;
  std::function<void()> accept = [&] {
    auto s = std::make_shared<asio::ip::tcp::socket>(io);
    acceptor.async_accept(*s, [&, s](std::error_code ec) {
      if (ec) return;
      accepted.push_back(s);
      accept();
    });
  };
  accept();
  auto info = makeInfo(store, R"({"name": "c"})");
  auto host = std::make_shared<Host>();
  host->endpoint = acceptor.local_endpoint();
  ConnPool pool(io, info);
  auto get = [&](const UpstreamSource& source) {
    UpstreamConnectionPtr got;
    bool done = false;
    auto acquired = pool.acquire(
        host,
        [&](UpstreamConnectionPtr c, PoolFailure, std::string_view) {
          got = std::move(c);
          done = true;
        },
        source);
    if (acquired.conn) return std::move(acquired.conn);
    EXPECT_TRUE(test::runUntil(io, [&] { return done; }));
    return got;
  };
  constexpr int kSources = 20;
  for (int i = 0; i < kSources; ++i) {
    UpstreamSource source;
    source.address = asio::ip::make_address("127.0.1." + std::to_string(10 + i));
    auto conn = get(source);
    ASSERT_TRUE(conn);
    EXPECT_EQ(pool.hostKeyCount(), static_cast<size_t>(i));  // connecting leaves no entry behind
    pool.release(std::move(conn), true);
  }
  EXPECT_EQ(pool.hostKeyCount(), static_cast<size_t>(kSources));
  EXPECT_EQ(pool.idleCount(), static_cast<size_t>(kSources));
  // Reusing the last idle connection of a key empties it.
  UpstreamSource first;
  first.address = asio::ip::make_address("127.0.1.10");
  auto reused = get(first);
  ASSERT_TRUE(reused);
  EXPECT_EQ(pool.hostKeyCount(), static_cast<size_t>(kSources - 1));
  reused.reset();
  // The upstream closes its side: the idle sweep drops the connections and their keys.
  ASSERT_TRUE(test::runUntil(io, [&] { return accepted.size() == kSources; }));
  for (auto& s : accepted) s->close();
  ASSERT_TRUE(test::runUntil(io, [&] {
    pool.closeIdle(false);
    return pool.hostKeyCount() == 0;
  }));
  EXPECT_EQ(pool.idleCount(), 0u);
}

// The cluster's own upstream_bind_config is the pool's default: passing it or nothing shares connections.
TEST(ConnPoolSourceTest, ClusterBindConfigIsTheDefaultKey) {
  asio::io_context io;
  stats::Store store(1);
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  std::vector<std::shared_ptr<asio::ip::tcp::socket>> accepted;
  std::function<void()> accept = [&] {
    auto s = std::make_shared<asio::ip::tcp::socket>(io);
    acceptor.async_accept(*s, [&, s](std::error_code ec) {
      if (ec) return;
      accepted.push_back(s);
      accept();
    });
  };
  accept();
  auto info = makeInfo(store, R"({"name": "c", "upstream_bind_config": {"source_address":
      {"address": "127.0.0.8", "port_value": 0}}})");
  auto host = std::make_shared<Host>();
  host->endpoint = acceptor.local_endpoint();
  ConnPool pool(io, info);
  auto get = [&](const UpstreamSource& source) {
    UpstreamConnectionPtr got;
    bool done = false;
    auto acquired = pool.acquire(
        host,
        [&](UpstreamConnectionPtr c, PoolFailure, std::string_view) {
          got = std::move(c);
          done = true;
        },
        source);
    if (acquired.conn) return std::move(acquired.conn);
    EXPECT_TRUE(test::runUntil(io, [&] { return done; }));
    return got;
  };
  auto first = get(upstreamSourceFor(*info, nullptr));
  ASSERT_TRUE(first);
  EXPECT_EQ(first->socket.local_endpoint().address().to_string(), "127.0.0.8");
  EXPECT_EQ(first->pool_key, (PoolKey{host->endpoint, ""}));  // no per-request source key
  pool.release(std::move(first), true);
  auto second = get({});
  ASSERT_TRUE(second);
  EXPECT_EQ(store.counter("cluster.c.upstream_cx_total").value(), 1u);
  pool.release(std::move(second), true);
  // A new bind config: the idle connection made from the old source is not handed out.
  pool.updateCluster(makeInfo(store, R"({"name": "c", "upstream_bind_config": {"source_address":
      {"address": "127.0.0.9", "port_value": 0}}})"));
  EXPECT_EQ(pool.idleCount(), 0u);
  EXPECT_EQ(pool.hostKeyCount(), 0u);
}

}  // namespace
}  // namespace skiff::upstream
