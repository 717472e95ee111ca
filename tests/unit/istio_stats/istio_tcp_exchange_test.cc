// Istio's TCP metadata exchange: the preface's wire format, the incremental parser (split reads, wrong
// magic, oversized or broken payloads, early end of stream) and the downstream filter's behaviour.
#include <google/protobuf/any.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <asio/io_context.hpp>

#include "filters/istio/istio.h"
#include "filters/istio/tcp_exchange.h"
#include "filters/network/network_filter.h"
#include "skiff/stats/labelled.h"
#include "skiff/stats/stats.h"
#include "skiff/tls/transport.h"

namespace skiff::filters::istio {
namespace {

google::protobuf::Struct metadata(const std::string& json) {
  google::protobuf::Struct s;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &s).ok()) << json;
  return s;
}

uint32_t be32(const std::string& s, size_t at) {
  const auto* b = reinterpret_cast<const uint8_t*>(s.data() + at);
  return (uint32_t(b[0]) << 24) | (uint32_t(b[1]) << 16) | (uint32_t(b[2]) << 8) | uint32_t(b[3]);
}

const char kNode[] = R"({"WORKLOAD_NAME":"ratings-v1","NAMESPACE":"shop","CLUSTER_ID":"Kubernetes",
  "LABELS":{"app":"ratings","version":"v1"},"ISTIO_VERSION":"1.18.0","SERVICE_ACCOUNT":"not-sent"})";

TEST(IstioTcpExchangeTest, PrefaceIsMagicLengthAndAnAnyOfStruct) {
  const std::string preface =
      encodeExchangePreface("sidecar~10.0.0.1~ratings.shop~shop.svc", metadata(kNode));
  ASSERT_GT(preface.size(), 8u);
  EXPECT_EQ(be32(preface, 0), 0x3D230467u);
  EXPECT_EQ(be32(preface, 4), preface.size() - 8);
  google::protobuf::Any any;
  ASSERT_TRUE(any.ParseFromString(preface.substr(8)));
  EXPECT_EQ(any.type_url(), "type.googleapis.com/google.protobuf.Struct");
  google::protobuf::Struct data;
  ASSERT_TRUE(any.UnpackTo(&data));
  EXPECT_EQ(data.fields().at("x-envoy-peer-metadata-id").string_value(),
            "sidecar~10.0.0.1~ratings.shop~shop.svc");
  const auto& node = data.fields().at("x-envoy-peer-metadata").struct_value().fields();
  EXPECT_EQ(node.at("WORKLOAD_NAME").string_value(), "ratings-v1");
  EXPECT_EQ(node.at("LABELS").struct_value().fields().at("app").string_value(), "ratings");
  EXPECT_EQ(node.count("SERVICE_ACCOUNT"), 0u);  // not one of the exchanged keys
  // Deterministic: the same node gives the same bytes.
  EXPECT_EQ(preface, encodeExchangePreface("sidecar~10.0.0.1~ratings.shop~shop.svc", metadata(kNode)));
}

TEST(IstioTcpExchangeTest, ParserTakesThePrefaceAcrossSplitReadsAndLeavesTheRest) {
  const std::string preface = encodeExchangePreface("id-1", metadata(kNode));
  const std::string wire = preface + "hello";
  ExchangeParser p;
  size_t taken = 0;
  // One byte at a time up to the end of the preface.
  for (size_t i = 0; i < preface.size(); ++i) {
    ASSERT_EQ(p.state(), ExchangeParser::State::kReading) << i;
    taken += p.consume(std::string_view(wire).substr(i, 1));
  }
  EXPECT_EQ(taken, preface.size());
  ASSERT_EQ(p.state(), ExchangeParser::State::kDone);
  ASSERT_NE(p.peer(), nullptr);
  EXPECT_EQ(p.peer()->workload_name, "ratings-v1");
  EXPECT_EQ(p.peer()->namespace_name, "shop");
  EXPECT_EQ(p.peer()->version, "v1");
  EXPECT_EQ(p.peerId(), "id-1");
  EXPECT_EQ(p.consume("hello"), 0u);  // done: the application's bytes are not touched

  ExchangeParser whole;
  EXPECT_EQ(whole.consume(wire), preface.size());
  EXPECT_EQ(whole.state(), ExchangeParser::State::kDone);
}

TEST(IstioTcpExchangeTest, WrongMagicGivesEveryByteBack) {
  ExchangeParser p;
  // "\x3D\x23" matches the magic so far; the next read proves it is not a preface.
  EXPECT_EQ(p.consume(std::string("\x3D\x23", 2)), 2u);
  EXPECT_EQ(p.state(), ExchangeParser::State::kReading);
  EXPECT_EQ(p.consume("GET / HTTP/1.1\r\n"), 0u);
  EXPECT_EQ(p.state(), ExchangeParser::State::kInvalid);
  EXPECT_EQ(p.error(), "magic");
  EXPECT_EQ(p.takeRaw(), std::string("\x3D\x23", 2));

  ExchangeParser plain;
  EXPECT_EQ(plain.consume("SSH-2.0-OpenSSH\r\n"), 0u);
  EXPECT_EQ(plain.state(), ExchangeParser::State::kInvalid);
  EXPECT_EQ(plain.takeRaw(), "");
}

TEST(IstioTcpExchangeTest, OversizedBrokenOrTruncatedPrefacesAreInvalid) {
  std::string huge("\x3D\x23\x04\x67", 4);
  huge += std::string("\x7f\xff\xff\xff", 4);
  ExchangeParser big;
  EXPECT_EQ(big.consume(huge + "xyz"), huge.size() + 3);  // the announced bytes are the preface's
  EXPECT_EQ(big.state(), ExchangeParser::State::kReading);
  big.finish();
  EXPECT_EQ(big.state(), ExchangeParser::State::kInvalid);
  EXPECT_EQ(big.error(), "size");

  std::string broken("\x3D\x23\x04\x67\x00\x00\x00\x03", 8);
  broken += "\xff\xff\xff";
  ExchangeParser bad;
  EXPECT_EQ(bad.consume(broken), broken.size());
  EXPECT_EQ(bad.state(), ExchangeParser::State::kInvalid);
  EXPECT_EQ(bad.error(), "payload");

  const std::string preface = encodeExchangePreface("id", metadata(kNode));
  ExchangeParser cut;
  cut.consume(preface.substr(0, preface.size() - 1));
  EXPECT_EQ(cut.state(), ExchangeParser::State::kReading);
  cut.finish();
  EXPECT_EQ(cut.state(), ExchangeParser::State::kInvalid);
  EXPECT_EQ(cut.error(), "eof");
}

// The exchange counters bind to the first store they see (a process has one): one store for all tests.
stats::Store& testStore() {
  static auto* store = new stats::Store(2);
  return *store;
}

// A TCP session as the downstream filter sees it.
class Session : public filters::network::FilterCallbacks {
 public:
  explicit Session(std::string alpn) {
    auto c = std::make_shared<skiff::network::ConnectionInfo>();
    c->alpn = std::move(alpn);
    info.connection = c;
  }
  asio::io_context& dispatcher() override { return io; }
  const http::StreamInfo& streamInfo() const override { return info; }
  http::StreamInfo* mutableStreamInfo() override { return &info; }
  void closeConnection(std::string_view) override { closed = true; }
  void writeDownstream(std::string_view bytes) override { written += bytes; }

  asio::io_context io;
  http::StreamInfo info;
  std::string written;
  bool closed = false;
};

std::unique_ptr<filters::network::Filter> exchangeFilter(stats::Store& store) {
  registerIstioTcpExchange();
  const auto* reg = filters::network::findNetworkFilter(
      "type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange", "istio.metadata_exchange");
  EXPECT_NE(reg, nullptr);
  google::protobuf::Any any;
  any.set_type_url("type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange");
  auto factory = reg->create(any, store, "filters[0]");
  EXPECT_NE(factory, nullptr);
  return factory->createFilter();
}

TEST(IstioTcpExchangeFilterTest, StripsTheClientsPrefaceRecordsThePeerAndAnswers) {
  stats::Store& store = testStore();
  Session s("istio-peer-exchange");
  auto f = exchangeFilter(store);
  f->setCallbacks(s);
  EXPECT_EQ(f->onNewConnection(), filters::network::FilterStatus::kContinue);
  const std::string preface = encodeExchangePreface("client-id", metadata(kNode));
  std::string first = preface.substr(0, 5);
  f->onDownstreamData(first, false);
  EXPECT_EQ(first, "");
  EXPECT_EQ(s.written, "");  // not before the client proved it speaks the protocol
  ASSERT_NE(findTcpPeers(s.info), nullptr);
  EXPECT_FALSE(findTcpPeers(s.info)->downstream_settled);
  std::string rest = preface.substr(5) + "ping";
  f->onDownstreamData(rest, false);
  EXPECT_EQ(rest, "ping");
  EXPECT_EQ(s.written, localExchangePreface());
  const TcpPeers* peers = findTcpPeers(s.info);
  ASSERT_TRUE(peers->downstream_settled);
  ASSERT_NE(peers->downstream, nullptr);
  EXPECT_EQ(peers->downstream->workload_name, "ratings-v1");
  // The server's own bytes are not touched once its preface went out.
  std::string reply = "pong";
  f->onUpstreamData(reply, false);
  EXPECT_EQ(reply, "pong");
}

TEST(IstioTcpExchangeFilterTest, AServerThatSpeaksFirstGetsThePrefaceAheadOfItsBytes) {
  stats::Store& store = testStore();
  Session s("istio-peer-exchange");
  auto f = exchangeFilter(store);
  f->setCallbacks(s);
  f->onNewConnection();
  std::string greeting = "220 ready\r\n";
  f->onUpstreamData(greeting, false);
  EXPECT_EQ(greeting, localExchangePreface() + "220 ready\r\n");
  std::string preface = encodeExchangePreface("client-id", metadata(kNode));
  f->onDownstreamData(preface, false);
  EXPECT_EQ(preface, "");
  EXPECT_EQ(s.written, "");  // already sent with the greeting
}

TEST(IstioTcpExchangeFilterTest, WithoutTheAlpnOrFromAPeerWithoutTheFilterBytesPassUnchanged) {
  stats::Store& store = testStore();
  {
    Session s("h2");
    auto f = exchangeFilter(store);
    f->setCallbacks(s);
    f->onNewConnection();
    std::string data = encodeExchangePreface("x", metadata(kNode));
    const std::string copy = data;
    f->onDownstreamData(data, false);
    EXPECT_EQ(data, copy);
    std::string up = "reply";
    f->onUpstreamData(up, false);
    EXPECT_EQ(up, "reply");
    EXPECT_TRUE(findTcpPeers(s.info)->downstream_settled);
    EXPECT_EQ(findTcpPeers(s.info)->downstream, nullptr);
  }
  {
    // Negotiated, but the client is a plain HTTP/1 client: its request reaches the server intact and it
    // never sees a preface.
    Session s("istio-peer-exchange");
    auto f = exchangeFilter(store);
    f->setCallbacks(s);
    f->onNewConnection();
    std::string a = "G";
    f->onDownstreamData(a, false);
    EXPECT_EQ(a, "G");
    std::string b = "ET / HTTP/1.1\r\n\r\n";
    f->onDownstreamData(b, false);
    EXPECT_EQ(b, "ET / HTTP/1.1\r\n\r\n");
    std::string reply = "HTTP/1.1 200 OK\r\n";
    f->onUpstreamData(reply, false);
    EXPECT_EQ(reply, "HTTP/1.1 200 OK\r\n");
    EXPECT_EQ(s.written, "");
    EXPECT_TRUE(findTcpPeers(s.info)->downstream_settled);
  }
  EXPECT_GE(store.counter("metadata_exchange.alpn_protocol_not_found").value(), 1u);
  EXPECT_GE(store.counter("metadata_exchange.initial_header_not_found").value(), 1u);
}

// A header announcing more than 64 KiB: that many bytes are dropped (never buffered, never passed on to the
// application), then the rest flows and the peer is unknown.
TEST(IstioTcpExchangeTest, AnOversizedPayloadIsDroppedThenTheRestFlows) {
  const uint32_t size = kMaxExchangePayload + 1;
  std::string header("\x3D\x23\x04\x67", 4);
  header.push_back(static_cast<char>(size >> 24));
  header.push_back(static_cast<char>(size >> 16));
  header.push_back(static_cast<char>(size >> 8));
  header.push_back(static_cast<char>(size));
  ExchangeParser p;
  const std::string first = header + std::string(40000, 'p');
  EXPECT_EQ(p.consume(first), first.size());
  EXPECT_EQ(p.state(), ExchangeParser::State::kReading);
  const std::string second = std::string(size - 40000, 'p') + "app";
  EXPECT_EQ(p.consume(second), second.size() - 3);
  EXPECT_EQ(p.state(), ExchangeParser::State::kInvalid);
  EXPECT_EQ(p.error(), "size");
  EXPECT_EQ(p.takeRaw(), "");

  // Through the downstream filter: the application sees only what follows the dropped payload.
  Session s("istio-peer-exchange");
  auto f = exchangeFilter(testStore());
  f->setCallbacks(s);
  f->onNewConnection();
  std::string a = first;
  f->onDownstreamData(a, false);
  EXPECT_EQ(a, "");
  std::string b = second;
  f->onDownstreamData(b, false);
  EXPECT_EQ(b, "app");
  EXPECT_TRUE(findTcpPeers(s.info)->downstream_settled);
  EXPECT_EQ(findTcpPeers(s.info)->downstream, nullptr);
  EXPECT_EQ(s.written, "");
}

// The upstream sent bytes that matched the magic's first bytes and then did not (or then closed): they are
// the application's and come back from takeRestored(), to go before the rest of the read.
TEST(IstioTcpExchangeTest, UpstreamHalfGivesBackAMagicPrefixThatWasNoPreface) {
  {
    http::StreamInfo info;
    UpstreamExchange up(info);
    std::string first("\x3D\x23", 2);
    EXPECT_EQ(up.onUpstreamRead(first.data(), first.size(), false), 0u);
    EXPECT_FALSE(up.done());
    std::string second = "XYZ";
    EXPECT_EQ(up.onUpstreamRead(second.data(), second.size(), false), 3u);
    EXPECT_EQ(second, "XYZ");
    ASSERT_TRUE(up.done());
    EXPECT_EQ(up.takeRestored(), std::string("\x3D\x23", 2));
    EXPECT_TRUE(findTcpPeers(info)->upstream_settled);
    EXPECT_EQ(findTcpPeers(info)->upstream, nullptr);
  }
  {
    // Magic and part of the length, then the FIN (an empty read): Istio passes those 7 bytes on.
    http::StreamInfo info;
    UpstreamExchange up(info);
    std::string first("\x3D\x23\x04\x67\x00\x00\x01", 7);
    EXPECT_EQ(up.onUpstreamRead(first.data(), first.size(), false), 0u);
    EXPECT_FALSE(up.done());
    char none[1];
    EXPECT_EQ(up.onUpstreamRead(none, 0, true), 0u);
    ASSERT_TRUE(up.done());
    EXPECT_EQ(up.takeRestored(), std::string("\x3D\x23\x04\x67\x00\x00\x01", 7));
  }
  {
    // A whole header then a broken payload: those were a preface's bytes, nothing comes back.
    http::StreamInfo info;
    UpstreamExchange up(info);
    std::string broken("\x3D\x23\x04\x67\x00\x00\x00\x02\xff\xffrest", 14);
    const size_t left = up.onUpstreamRead(broken.data(), broken.size(), false);
    EXPECT_EQ(std::string(broken.data(), left), "rest");
    ASSERT_TRUE(up.done());
    EXPECT_EQ(up.takeRestored(), "");
  }
}

TEST(IstioTcpExchangeTest, UpstreamHalfStripsInPlaceAndSettlesTheUpstreamPeer) {
  http::StreamInfo info;
  UpstreamExchange up(info);
  const std::string preface = encodeExchangePreface("server-id", metadata(kNode));
  std::string wire = preface + "data";
  // Two reads: a partial preface, then the rest with application bytes.
  std::string first = wire.substr(0, 3);
  EXPECT_EQ(up.onUpstreamRead(first.data(), first.size(), false), 0u);
  EXPECT_FALSE(up.done());
  std::string second = wire.substr(3);
  const size_t left = up.onUpstreamRead(second.data(), second.size(), false);
  EXPECT_EQ(std::string(second.data(), left), "data");
  EXPECT_TRUE(up.done());
  const TcpPeers* peers = findTcpPeers(info);
  ASSERT_NE(peers, nullptr);
  EXPECT_TRUE(peers->upstream_settled);
  ASSERT_NE(peers->upstream, nullptr);
  EXPECT_EQ(peers->upstream->app, "ratings");
}

}  // namespace
}  // namespace skiff::filters::istio

namespace skiff::filters::istio {
namespace {

// The client side's principals come from the upstream TLS session (Istio's ClientSidecar rule), not from
// the downstream one (the local application's plaintext connection).
TEST(IstioStatsRecorderPrincipals, SourceReporterReadsTheUpstreamCertificate) {
  stats::Store store(1);
  StatsConfig config;
  config.reporter = Reporter::kSource;
  StatsRecorder recorder(config, store);
  http::HeaderMap request;
  request.add(":authority", "server.team-b");
  http::StreamInfo info;
  info.request_headers = &request;
  info.response_code = 200;
  auto tls = std::make_shared<tls::TlsConnectionInfo>();
  tls->uri_san_peer = {"spiffe://cluster.local/ns/team-b/sa/server"};
  tls->uri_san_local = {"spiffe://cluster.local/ns/team-a/sa/client"};
  info.upstream_tls = tls;
  recorder.recordHttp(info, nullptr, false);
  const std::string prom = stats::renderPrometheus(store.snapshot());
  EXPECT_NE(prom.find("source_principal=\"spiffe://cluster.local/ns/team-a/sa/client\""), std::string::npos)
      << prom;
  EXPECT_NE(prom.find("destination_principal=\"spiffe://cluster.local/ns/team-b/sa/server\""),
            std::string::npos)
      << prom;
  // The namespace comes from the SAN when no peer metadata says it.
  EXPECT_NE(prom.find("destination_workload_namespace=\"team-b\""), std::string::npos) << prom;
  EXPECT_NE(prom.find("connection_security_policy=\"unknown\""), std::string::npos) << prom;
}

}  // namespace
}  // namespace skiff::filters::istio
