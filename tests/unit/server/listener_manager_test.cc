// ListenerManager (LDS add/update/remove, NACK texts, stats, drains) and ListenerIndex::remove.
#include "server/xds/listener_manager.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio/connect.hpp>
#include <chrono>
#include <thread>

#include "skiff/common/init_target.h"
#include "skiff/config/yaml_to_proto.h"
#include "skiff/filters/http_filter_registry.h"

namespace skiff::server {
namespace {

constexpr const char* kHcm = R"({name: envoy.filters.network.http_connection_manager, typed_config: {
    "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager,
    stat_prefix: s, drain_timeout: 0.2s, route_config: {name: r},
    http_filters: [{name: envoy.filters.http.router}]}})";

envoy::config::listener::v3::Listener listenerProto(const std::string& name, uint16_t port,
                                                    const std::string& extra = "") {
  envoy::config::listener::v3::Listener proto;
  std::vector<std::string> warnings;
  config::loadMessageYaml("{name: " + name + ", address: {socket_address: {address: 127.0.0.1, port_value: " +
                              std::to_string(port) + "}}, filter_chains: [{filters: [" + kHcm + "]}]" +
                              extra + "}",
                          proto, warnings);
  return proto;
}

template <typename F>
bool waitFor(F predicate, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!predicate()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

uint16_t portOf(const std::string& address) {
  return static_cast<uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
}

// A blocking client connection to 127.0.0.1:port; -1 when refused.
int connectTo(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// True once the server closed `fd` (EOF or reset) within the timeout; bytes before that are discarded.
bool closedByPeer(int fd, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  char buf[4096];
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) != 1) return false;
    if (::recv(fd, buf, sizeof(buf), 0) <= 0) return true;
  }
}

// Sends one request on `fd` and waits for the response head: the connection is then known to be served by
// the listener that accepted it (not still in the kernel's backlog).
bool roundTrip(int fd) {
  const std::string request = "GET / HTTP/1.1\r\nhost: a\r\n\r\n";
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size()))
    return false;
  std::string got;
  char buf[4096];
  while (got.find("\r\n\r\n") == std::string::npos) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 5000) != 1) return false;
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return false;
    got.append(buf, static_cast<size_t>(n));
  }
  return true;
}

class ListenerManagerTest : public ::testing::Test {
 protected:
  ListenerManagerTest() : store_(4) {
    filters::registerAllHttpFilters();
    for (uint32_t i = 0; i < 2; ++i) workers_.push_back(std::make_unique<Worker>(i));
    manager_ = std::make_unique<ListenerManager>(store_, workers_, std::chrono::seconds(10));
  }
  ~ListenerManagerTest() override {
    manager_.reset();
    workers_.clear();
  }
  void start() {
    for (auto& w : workers_) w->start();
  }
  uint64_t counter(const std::string& name) { return store_.counter("listener_manager." + name).value(); }
  int64_t gauge(const std::string& name) { return store_.gauge("listener_manager." + name).value(); }
  uint16_t port(const std::string& name) {
    for (const auto& [n, address] : manager_->addresses()) {
      if (n == name) return portOf(address);
    }
    return 0;
  }

  stats::Store store_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<ListenerManager> manager_;
};

TEST_F(ListenerManagerTest, AddUpdateRemove) {
  manager_->addStatic(listenerProto("static", 0), "static_resources.listeners[0]");
  start();
  EXPECT_EQ(manager_->addOrUpdateListener(listenerProto("dyn", 0), "1"), "");
  EXPECT_EQ(counter("listener_added"), 2u);
  EXPECT_EQ(counter("listener_create_success"), 4u);  // per worker
  EXPECT_EQ(gauge("total_listeners_active"), 2);
  const uint16_t first = port("dyn");
  ASSERT_NE(first, 0);
  int fd = connectTo(first);
  ASSERT_GE(fd, 0);
  ::close(fd);

  // Same bytes: nothing happens.
  EXPECT_EQ(manager_->addOrUpdateListener(listenerProto("dyn", 0), "2"), "");
  EXPECT_EQ(counter("listener_modified"), 0u);

  // A changed listener on the same (now fixed) port: an idle connection of the old one is closed once the
  // HCM's drain_timeout (0.2 s here) has passed without a request.
  int idle = connectTo(first);
  ASSERT_GE(idle, 0);
  ASSERT_TRUE(roundTrip(idle));  // accepted by the old listener, now idle
  EXPECT_EQ(manager_->addOrUpdateListener(
                listenerProto("dyn", first, ", per_connection_buffer_limit_bytes: 4096"), "3"),
            "");
  EXPECT_EQ(counter("listener_modified"), 1u);
  EXPECT_EQ(port("dyn"), first);
  EXPECT_TRUE(closedByPeer(idle, 5000));
  ::close(idle);
  EXPECT_TRUE(waitFor([&] { return gauge("total_listeners_draining") == 0; }));
  fd = connectTo(first);
  EXPECT_GE(fd, 0);  // the new listener accepts on the same port
  if (fd >= 0) ::close(fd);

  EXPECT_TRUE(manager_->removeListener("dyn"));
  EXPECT_FALSE(manager_->removeListener("dyn"));
  EXPECT_FALSE(manager_->removeListener("static"));  // not an LDS listener
  EXPECT_EQ(counter("listener_removed"), 1u);
  EXPECT_EQ(gauge("total_listeners_active"), 1);
  EXPECT_TRUE(waitFor([&] {
    int c = connectTo(first);
    if (c >= 0) ::close(c);
    return c < 0;
  }));
}

TEST_F(ListenerManagerTest, ErrorsNameTheListenerAndField) {
  manager_->addStatic(listenerProto("static", 0), "static_resources.listeners[0]");
  start();
  const uint16_t taken = port("static");
  EXPECT_NE(manager_->addOrUpdateListener(listenerProto("static", 0), "1").find("static listener"),
            std::string::npos);
  const std::string dup = manager_->addOrUpdateListener(listenerProto("dup", taken), "1");
  EXPECT_NE(dup.find("listener.address"), std::string::npos) << dup;
  EXPECT_NE(dup.find("'static'"), std::string::npos) << dup;

  auto no_chains = listenerProto("bad", 0);
  no_chains.clear_filter_chains();
  const std::string bad = manager_->addOrUpdateListener(no_chains, "1");
  EXPECT_NE(bad.find("listener.filter_chains"), std::string::npos) << bad;

  // A port another socket holds without SO_REUSEPORT cannot be bound.
  asio::io_context io;
  asio::ip::tcp::acceptor holder(io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const std::string bind =
      manager_->addOrUpdateListener(listenerProto("held", holder.local_endpoint().port()), "1");
  EXPECT_NE(bind.find("cannot bind"), std::string::npos) << bind;
  EXPECT_EQ(manager_->activeCount(), 1u);
  EXPECT_EQ(counter("listener_added"), 1u);

  manager_->stopUpdates();
  EXPECT_NE(manager_->addOrUpdateListener(listenerProto("late", 0), "1").find("draining"), std::string::npos);
}

// A connection of a removed listener may outlive it and the workers' listeners: stopping the workers with
// the request half sent must not touch freed listener state (run under ASan).
TEST_F(ListenerManagerTest, ConnectionsOfRemovedListenersOutliveIt) {
  start();
  ASSERT_EQ(manager_->addOrUpdateListener(listenerProto("dyn", 0), "1"), "");
  int fd = connectTo(port("dyn"));
  ASSERT_GE(fd, 0);
  const char partial[] = "GET / HTTP/1.1\r\nhost: x\r\n";
  ASSERT_EQ(::send(fd, partial, sizeof(partial) - 1, 0), static_cast<ssize_t>(sizeof(partial) - 1));
  // Wait until the worker has read the partial head, so the connection is busy rather than idle.
  stats::Counter rx = store_.counter("http.s.downstream_cx_rx_bytes_total");
  EXPECT_TRUE(waitFor([&] { return rx.value() == sizeof(partial) - 1; }));
  EXPECT_TRUE(manager_->removeListener("dyn"));
  EXPECT_EQ(gauge("total_listeners_draining"), 1);  // the busy connection holds the drain open
  EXPECT_FALSE(closedByPeer(fd, 200));
  manager_.reset();
  workers_.clear();  // closes the connection
  EXPECT_TRUE(closedByPeer(fd, 5000));
  ::close(fd);
}

// Sockets still in listener filters are not connections yet; a drained listener closes them instead of
// leaving them to its removed config.
TEST_F(ListenerManagerTest, PendingSocketsOfARemovedListenerAreClosed) {
  start();
  const std::string inspector =
      ", listener_filters: [{name: envoy.filters.listener.tls_inspector, typed_config: {'@type': "
      "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}}]";
  ASSERT_EQ(manager_->addOrUpdateListener(listenerProto("dyn", 0, inspector), "1"), "");
  int fd = connectTo(port("dyn"));
  ASSERT_GE(fd, 0);
  stats::Gauge pending = store_.gauge("listener.127.0.0.1_0.downstream_pre_cx_active");
  ASSERT_TRUE(waitFor([&] { return pending.value() == 1; }));
  EXPECT_TRUE(manager_->removeListener("dyn"));
  EXPECT_TRUE(closedByPeer(fd, 5000));
  ::close(fd);
  EXPECT_TRUE(waitFor([&] { return pending.value() == 0 && gauge("total_listeners_draining") == 0; }));
}

// A test HTTP filter that registers an init target (as a remote Wasm plugin does) named after its
// StringValue config; the markers are kept here so the test decides when each target is ready.
std::vector<std::function<void()>>& initMarkers() {
  static std::vector<std::function<void()>> markers;
  return markers;
}

struct NoFilters : http::FilterFactory {
  void createFilters(http::FilterChainBuilder&) const override {}
};

void registerInitTargetFilter() {
  filters::registerHttpFilter(
      {"skiff.test.init_target", "type.googleapis.com/google.protobuf.StringValue",
       [](const google::protobuf::Any&, const filters::FactoryContext&) -> http::FilterFactorySharedPtr {
         if (auto* targets = init::InitScope::current()) initMarkers().push_back(targets->add("test target"));
         return std::make_shared<NoFilters>();
       }});
}

// A listener whose HCM has the init-target filter before the router: it warms until the marker runs.
envoy::config::listener::v3::Listener warmingProto(const std::string& name, const std::string& tag) {
  envoy::config::listener::v3::Listener proto;
  std::vector<std::string> warnings;
  config::loadMessageYaml(
      "{name: " + name +
          ", address: {socket_address: {address: 127.0.0.1, port_value: 0}}, filter_chains: [{filters: "
          "[{name: "
          "envoy.filters.network.http_connection_manager, typed_config: {'@type': "
          "type.googleapis.com/"
          "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager, stat_prefix: " +
          tag +
          ", route_config: {name: r}, http_filters: [{name: t, typed_config: {'@type': "
          "type.googleapis.com/google.protobuf.StringValue, value: x}}, {name: "
          "envoy.filters.http.router}]}}]}]}",
      proto, warnings);
  return proto;
}

// Readiness waits on warmingOnTargets(); it must be told when a listener warming on a target is removed or
// replaced by one that starts at once, not only when a listener is installed after warming.
TEST_F(ListenerManagerTest, RemovingOrReplacingATargetWarmingListenerNotifies) {
  registerInitTargetFilter();
  initMarkers().clear();
  start();
  int calls = 0;
  manager_->setWarmedCallback([&] { ++calls; });

  ASSERT_EQ(manager_->addOrUpdateListener(warmingProto("a", "a1"), "1"), "");
  ASSERT_EQ(initMarkers().size(), 1u);
  EXPECT_EQ(manager_->warmingOnTargets(), 1u);
  EXPECT_EQ(calls, 0);
  EXPECT_TRUE(manager_->removeListener("a"));
  EXPECT_EQ(manager_->warmingOnTargets(), 0u);
  EXPECT_EQ(calls, 1);
  initMarkers()[0]();  // the removed listener's target finishing later is harmless
  EXPECT_EQ(manager_->activeCount(), 0u);

  ASSERT_EQ(manager_->addOrUpdateListener(warmingProto("b", "b1"), "1"), "");
  EXPECT_EQ(manager_->warmingOnTargets(), 1u);
  ASSERT_EQ(manager_->addOrUpdateListener(listenerProto("b", 0), "2"), "");  // no target: installed at once
  EXPECT_EQ(manager_->warmingOnTargets(), 0u);
  EXPECT_EQ(manager_->activeCount(), 1u);
  EXPECT_EQ(calls, 2);

  // Replaced by another warming version: a notification too (the count is looked at again).
  ASSERT_EQ(manager_->addOrUpdateListener(warmingProto("c", "c1"), "1"), "");
  ASSERT_EQ(manager_->addOrUpdateListener(warmingProto("c", "c2"), "2"), "");
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(manager_->warmingOnTargets(), 1u);
  initMarkers().back()();  // the current version's target: installed
  EXPECT_EQ(manager_->warmingOnTargets(), 0u);
  EXPECT_EQ(manager_->activeCount(), 2u);
  EXPECT_EQ(calls, 4);
}

// Once shutdown began, a listener that finishes warming is dropped rather than bound.
TEST_F(ListenerManagerTest, WarmingListenersAreNotInstalledAfterShutdownBegan) {
  registerInitTargetFilter();
  initMarkers().clear();
  start();
  ASSERT_EQ(manager_->addOrUpdateListener(warmingProto("w", "w1"), "1"), "");
  ASSERT_EQ(initMarkers().size(), 1u);
  EXPECT_EQ(gauge("total_listeners_warming"), 1);
  manager_->stopUpdates();
  initMarkers()[0]();
  EXPECT_EQ(manager_->activeCount(), 0u);
  EXPECT_EQ(manager_->warmingCount(), 0u);
  EXPECT_EQ(gauge("total_listeners_warming"), 0);
}

TEST(ListenerIndexRemoveTest, RemoveForgetsTheAddress) {
  stats::Store store(1);
  filters::registerAllHttpFilters();
  auto make = [&](const std::string& name, const std::string& ip) {
    auto proto = listenerProto(name, 80, ", bind_to_port: false");
    proto.mutable_address()->mutable_socket_address()->set_address(ip);
    return std::make_shared<const ListenerConfig>(proto, "l", store, 1);
  };
  ListenerIndex index;
  auto exact = make("exact", "10.0.0.5");
  auto wild = make("wild", "0.0.0.0");
  index.add(exact, exact->endpoint);
  index.add(wild, wild->endpoint);
  const asio::ip::tcp::endpoint ep(asio::ip::make_address("10.0.0.5"), 80);
  EXPECT_EQ(index.find(ep), exact.get());
  EXPECT_TRUE(index.remove(exact.get()));
  EXPECT_FALSE(index.remove(exact.get()));
  EXPECT_EQ(index.find(ep), wild.get());
  EXPECT_EQ(index.all().size(), 1u);
  EXPECT_TRUE(index.remove(wild.get()));
  EXPECT_EQ(index.find(ep), nullptr);
}

}  // namespace
}  // namespace skiff::server
