// tls_inspector's ClientHello reader and http_inspector's request-line recogniser.
#include <gtest/gtest.h>

#include <asio/write.hpp>
#include <chrono>
#include <functional>

#include "server/active_socket.h"
#include "server/listener_filters/http_inspector.h"
#include "server/listener_filters/tls_inspector.h"
#include "skiff/config/yaml_to_proto.h"
#include "skiff/filters/http_filter_registry.h"

namespace skiff::server {
namespace {

void u16(std::string& s, size_t v) {
  s.push_back(static_cast<char>(v >> 8));
  s.push_back(static_cast<char>(v & 0xff));
}
void u24(std::string& s, size_t v) {
  s.push_back(static_cast<char>(v >> 16));
  u16(s, v & 0xffff);
}

// A ClientHello handshake message (type + 24-bit length + body) with optional SNI/ALPN and padding.
std::string handshake(const std::string& sni, const std::vector<std::string>& alpn, size_t padding = 0) {
  std::string body;
  u16(body, 0x0303);
  body.append(32, 'r');
  body.push_back(0);  // session id
  u16(body, 2);
  u16(body, 0x1301);
  body.push_back(1);
  body.push_back(0);
  std::string exts;
  if (!sni.empty()) {
    std::string list;
    list.push_back(0);
    u16(list, sni.size());
    list += sni;
    std::string data;
    u16(data, list.size());
    data += list;
    u16(exts, 0);
    u16(exts, data.size());
    exts += data;
  }
  if (!alpn.empty()) {
    std::string list;
    for (const auto& p : alpn) {
      list.push_back(static_cast<char>(p.size()));
      list += p;
    }
    std::string data;
    u16(data, list.size());
    data += list;
    u16(exts, 16);
    u16(exts, data.size());
    exts += data;
  }
  if (padding > 0) {
    u16(exts, 21);
    u16(exts, padding);
    exts.append(padding, '\0');
  }
  u16(body, exts.size());
  body += exts;
  std::string hs;
  hs.push_back(1);
  u24(hs, body.size());
  return hs + body;
}

// Wraps a handshake in records of at most `max_fragment` bytes.
std::string records(const std::string& hs, size_t max_fragment = 16384) {
  std::string out;
  for (size_t pos = 0; pos < hs.size(); pos += max_fragment) {
    const std::string frag = hs.substr(pos, max_fragment);
    out.push_back(22);
    u16(out, 0x0301);
    u16(out, frag.size());
    out += frag;
  }
  return out;
}

TEST(ClientHelloTest, SniAndAlpn) {
  const auto hello = parseClientHello(records(handshake("API.Example.com", {"h2", "http/1.1"})));
  ASSERT_EQ(hello.result, ClientHello::Result::kTls);
  EXPECT_EQ(hello.server_name, "api.example.com");
  EXPECT_EQ(hello.alpn, (std::vector<std::string>{"h2", "http/1.1"}));
}

TEST(ClientHelloTest, NoExtensions) {
  const auto hello = parseClientHello(records(handshake("", {})));
  ASSERT_EQ(hello.result, ClientHello::Result::kTls);
  EXPECT_TRUE(hello.server_name.empty());
  EXPECT_TRUE(hello.alpn.empty());
}

TEST(ClientHelloTest, EveryTruncationNeedsMore) {
  const std::string full = records(handshake("a.com", {"h2"}));
  for (size_t n = 0; n < full.size(); ++n) {
    EXPECT_EQ(parseClientHello(full.substr(0, n)).result, ClientHello::Result::kNeedMore) << n;
  }
}

TEST(ClientHelloTest, FragmentedAcrossRecords) {
  const auto hello = parseClientHello(records(handshake("frag.example", {"istio"}), 7));
  ASSERT_EQ(hello.result, ClientHello::Result::kTls);
  EXPECT_EQ(hello.server_name, "frag.example");
  EXPECT_EQ(hello.alpn, std::vector<std::string>{"istio"});
}

TEST(ClientHelloTest, GarbageIsNotTls) {
  EXPECT_EQ(parseClientHello("GET / HTTP/1.1\r\n").result, ClientHello::Result::kNotTls);
  EXPECT_EQ(parseClientHello("G").result, ClientHello::Result::kNotTls);
  EXPECT_EQ(parseClientHello(std::string("\x16\x07", 2)).result, ClientHello::Result::kNotTls);
  // A handshake record that is not a ClientHello (ServerHello = 2).
  std::string hs = handshake("a", {});
  hs[0] = 2;
  EXPECT_EQ(parseClientHello(records(hs)).result, ClientHello::Result::kNotTls);
  // Extension length running past the end.
  hs = handshake("abc.com", {});
  hs[hs.size() - 8] = 0x7f;  // the host_name length
  EXPECT_EQ(parseClientHello(records(hs)).result, ClientHello::Result::kNotTls);
  // Empty ALPN entry.
  hs = handshake("", {""});
  EXPECT_EQ(parseClientHello(records(hs)).result, ClientHello::Result::kNotTls);
}

TEST(ClientHelloTest, OversizedIsTooLarge) {
  const std::string big = records(handshake("a.com", {}, 65500));
  EXPECT_EQ(parseClientHello(big).result, ClientHello::Result::kTooLarge);
  // Known from the handshake header alone, before the rest arrives.
  EXPECT_EQ(parseClientHello(big.substr(0, 16)).result, ClientHello::Result::kTooLarge);
  // A large hello under the limit is fine.
  EXPECT_EQ(parseClientHello(records(handshake("a.com", {}, 20000))).result, ClientHello::Result::kTls);
}

TEST(ClientHelloTest, RecordHeaderPastTheLimitIsTooLarge) {
  // 9 records of 100 handshake bytes end at 945; the next header alone would pass a 946-byte limit.
  const std::string base = handshake("a", {});
  const std::string hs = handshake("a", {}, 910 - base.size() - 4);
  ASSERT_EQ(hs.size(), 910u);
  const std::string data = records(hs, 100).substr(0, 9 * 105 + 2);
  EXPECT_EQ(parseClientHello(data, 946).result, ClientHello::Result::kTooLarge);
  EXPECT_EQ(parseClientHello(data, 950).result, ClientHello::Result::kNeedMore);
}

TEST(TlsInspectorTest, SetsConnectionInfoAndCounts) {
  stats::Store store(1);
  TlsInspector inspector(store);
  network::ConnectionInfo info;
  const std::string full = records(handshake("svc.ns", {"istio-peer-exchange", "istio"}));
  EXPECT_EQ(inspector.onAccept(-1, info), ListenerFilterStatus::kNeedData);
  EXPECT_EQ(inspector.onData(full.substr(0, 10), false, info), ListenerFilterStatus::kNeedData);
  EXPECT_EQ(inspector.onData(full, false, info), ListenerFilterStatus::kContinue);
  EXPECT_EQ(info.transport_protocol, "tls");
  EXPECT_EQ(info.server_name, "svc.ns");
  EXPECT_EQ(info.application_protocols.size(), 2u);
  EXPECT_EQ(store.counter("tls_inspector.tls_found").value(), 1u);
  EXPECT_EQ(store.counter("tls_inspector.sni_found").value(), 1u);
  EXPECT_EQ(store.counter("tls_inspector.alpn_found").value(), 1u);

  network::ConnectionInfo plain;
  EXPECT_EQ(inspector.onData("SSH-2.0-x\r\n", false, plain), ListenerFilterStatus::kContinue);
  EXPECT_EQ(plain.transport_protocol, "raw_buffer");
  EXPECT_EQ(store.counter("tls_inspector.tls_not_found").value(), 1u);
  // Half a hello and then the peer stops sending: not TLS as far as matching goes.
  EXPECT_EQ(inspector.onData(full.substr(0, 10), true, plain), ListenerFilterStatus::kContinue);
  EXPECT_EQ(inspector.onData(records(handshake("a", {}, 65500)), false, plain), ListenerFilterStatus::kClose);
  EXPECT_EQ(store.counter("tls_inspector.client_hello_too_large").value(), 1u);
}

struct HttpCase {
  const char* data;
  bool end_stream;
  HttpDetection expected;
};

class HttpDetectTest : public ::testing::TestWithParam<HttpCase> {};

TEST_P(HttpDetectTest, Classifies) {
  const auto& c = GetParam();
  EXPECT_EQ(detectHttp(c.data, c.end_stream), c.expected) << c.data;
}

const HttpCase kHttpCases[] = {
    {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", false, HttpDetection::kHttp11},
    {"POST /x?y=1 HTTP/1.0\r\n", false, HttpDetection::kHttp10},
    {"GET / HTTP/1.1\n", false, HttpDetection::kHttp11},
    {"GET / HTT", false, HttpDetection::kNeedMore},
    {"GET / HTT", true, HttpDetection::kNotHttp},
    {"GET", false, HttpDetection::kNeedMore},
    {"", false, HttpDetection::kNeedMore},
    {"GET / HTTP/2.0\r\n", false, HttpDetection::kNotHttp},
    {"GET / HTTP/1.1x\r\n", false, HttpDetection::kNotHttp},
    {"GET / HTTP/1.1\r", false, HttpDetection::kNeedMore},
    {"GET / HTTP/1.1\rX", false, HttpDetection::kNotHttp},
    {"GET  / HTTP/1.1\r\n", false, HttpDetection::kNotHttp},
    {"\x16\x03\x01\x00", false, HttpDetection::kNotHttp},
    {"SSH-2.0-OpenSSH\r\n", false, HttpDetection::kNotHttp},
    {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false, HttpDetection::kH2c},
    {"PRI * HTTP/2.0\r\n", false, HttpDetection::kNeedMore},
};

// Cases are named by their index: the parameter bytes would make a different test name on every build.
INSTANTIATE_TEST_SUITE_P(Table, HttpDetectTest, ::testing::ValuesIn(kHttpCases),
                         [](const ::testing::TestParamInfo<HttpCase>& info) {
                           return "case" + std::to_string(info.index);
                         });

TEST(HttpInspectorTest, SetsApplicationProtocolsAndCounts) {
  stats::Store store(1);
  HttpInspector inspector(store);
  network::ConnectionInfo info;
  EXPECT_EQ(inspector.onAccept(-1, info), ListenerFilterStatus::kNeedData);
  EXPECT_EQ(inspector.onData("GET / HTTP/1.1\r\n", false, info), ListenerFilterStatus::kContinue);
  EXPECT_EQ(info.application_protocols, std::vector<std::string>{"http/1.1"});
  network::ConnectionInfo h2;
  EXPECT_EQ(inspector.onData("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false, h2), ListenerFilterStatus::kContinue);
  EXPECT_EQ(h2.application_protocols, std::vector<std::string>{"h2c"});
  network::ConnectionInfo other;
  EXPECT_EQ(inspector.onData("\x01\x02", false, other), ListenerFilterStatus::kContinue);
  EXPECT_TRUE(other.application_protocols.empty());
  EXPECT_EQ(store.counter("http_inspector.http11_found").value(), 1u);
  EXPECT_EQ(store.counter("http_inspector.http2_found").value(), 1u);
  EXPECT_EQ(store.counter("http_inspector.http_not_found").value(), 1u);
  // TLS already detected: nothing to sniff.
  network::ConnectionInfo tls;
  tls.transport_protocol = "tls";
  EXPECT_EQ(inspector.onAccept(-1, tls), ListenerFilterStatus::kContinue);
}

// ActiveSocket driving tls_inspector over a real loopback socket.
class ActiveSocketTest : public ::testing::Test {
 protected:
  ActiveSocketTest() : store_(2), worker_(io_, 0), acceptor_(io_) {
    filters::registerAllHttpFilters();
    envoy::config::listener::v3::Listener proto;
    std::vector<std::string> warnings;
    // The only chain never matches: the connection is closed once the filters are done.
    config::loadMessageYaml(
        "{name: l, address: {socket_address: {address: 127.0.0.1, port_value: 1}}, listener_filters_timeout: "
        "0s, "
        "listener_filters: [{name: envoy.filters.listener.tls_inspector, typed_config: {'@type': "
        "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}}], "
        "filter_chains: [{filter_chain_match: {destination_port: 1}, filters: [{name: "
        "envoy.filters.network.http_connection_manager, typed_config: {'@type': "
        "type.googleapis.com/"
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager, "
        "stat_prefix: s, route_config: {name: r}, http_filters: [{name: envoy.filters.http.router}]}}]}]}",
        proto, warnings);
    listener_ = std::make_unique<ListenerConfig>(proto, "listener", store_, 1);
    const asio::ip::tcp::endpoint any(asio::ip::make_address("127.0.0.1"), 0);
    acceptor_.open(any.protocol());
    acceptor_.bind(any);
    acceptor_.listen();
  }

  // Connects a client, writes `first` before the listener sees the socket, and starts the filters.
  asio::ip::tcp::socket accept(const std::string& first) {
    asio::ip::tcp::socket client(io_);
    client.connect(acceptor_.local_endpoint());
    if (!first.empty()) asio::write(client, asio::buffer(first));
    asio::ip::tcp::socket server(io_);
    acceptor_.accept(server);
    onAccepted(worker_, index_, *listener_, std::move(server));
    return client;
  }

  // Runs the loop until `done` holds; false after a 5 s deadline.
  bool runUntil(const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      io_.restart();
      io_.run_one_for(std::chrono::milliseconds(20));
    }
    return true;
  }
  // Runs every handler (and reactor event) that is ready now, without waiting for more.
  void drainReady() {
    for (int idle = 0; idle < 3;) {
      io_.restart();
      idle = io_.poll() == 0 ? idle + 1 : 0;
    }
  }

  uint64_t counter(const std::string& name) { return store_.counter(name).value(); }

  asio::io_context io_;
  stats::Store store_;
  WorkerContext worker_;
  ListenerIndex index_;
  std::unique_ptr<ListenerConfig> listener_;
  asio::ip::tcp::acceptor acceptor_;
};

TEST_F(ActiveSocketTest, HelloSplitOverTwoSegmentsIsTls) {
  const std::string hello = records(handshake("svc.ns", {"h2"}));
  auto client = accept(hello.substr(0, 20));
  // The first part is peeked; the readiness edge it left behind must not read as a FIN.
  ASSERT_TRUE(runUntil([&] { return listener_->stats.downstream_pre_cx_active.value() == 1; }));
  drainReady();
  EXPECT_EQ(counter("tls_inspector.tls_not_found"), 0u);
  asio::write(client, asio::buffer(hello.substr(20)));
  ASSERT_TRUE(runUntil([&] { return counter("tls_inspector.tls_found") == 1; }));
  EXPECT_EQ(counter("tls_inspector.tls_not_found"), 0u);
  EXPECT_EQ(counter("tls_inspector.sni_found"), 1u);
}

TEST_F(ActiveSocketTest, HalfHelloThenFinIsNotTls) {
  const std::string hello = records(handshake("svc.ns", {}));
  auto client = accept(hello.substr(0, 20));
  ASSERT_TRUE(runUntil([&] { return listener_->stats.downstream_pre_cx_active.value() == 1; }));
  client.shutdown(asio::socket_base::shutdown_send);
  ASSERT_TRUE(runUntil([&] { return counter("tls_inspector.tls_not_found") == 1; }));
  EXPECT_EQ(counter("tls_inspector.tls_found"), 0u);
}

TEST_F(ActiveSocketTest, FullPeekWindowMakesTheFilterDecide) {
  listener_->max_peek_bytes = 64;  // smaller than the hello: the filter can never see all of it
  const std::string hello = records(handshake("svc.ns", {}, 200));
  auto client = accept(hello);
  ASSERT_TRUE(runUntil([&] { return counter("tls_inspector.tls_not_found") == 1; }));
  EXPECT_EQ(counter("tls_inspector.tls_found"), 0u);
  EXPECT_EQ(listener_->stats.downstream_pre_cx_active.value(), 0);
}

}  // namespace
}  // namespace skiff::server
