// The TCP istio.stats filter with the downstream exchange: when the connection is counted as opened (not
// before the client's preface, even when the server speaks first) and byte counters without the prefaces.
#include <google/protobuf/any.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <asio/io_context.hpp>
#include <sstream>

#include "filters/istio/istio.h"
#include "filters/istio/tcp_exchange.h"
#include "filters/network/network_filter.h"
#include "skiff/stats/stats.h"

namespace skiff::filters::istio {
namespace {

namespace net = filters::network;

class InboundSession : public net::FilterCallbacks {
 public:
  InboundSession() {
    auto c = std::make_shared<skiff::network::ConnectionInfo>();
    c->alpn = "istio-peer-exchange";
    c->listener_name = "virtualInbound";
    info.connection = c;
  }
  asio::io_context& dispatcher() override { return io; }
  const http::StreamInfo& streamInfo() const override { return info; }
  http::StreamInfo* mutableStreamInfo() override { return &info; }
  void closeConnection(std::string_view) override {}
  void writeDownstream(std::string_view bytes) override { written += bytes; }

  asio::io_context io;
  http::StreamInfo info;
  std::string written;
};

std::unique_ptr<net::Filter> makeFilter(stats::Store& store, std::string_view type, std::string_view name) {
  registerIstioNetworkFilters();
  const auto* reg = net::findNetworkFilter(type, name);
  EXPECT_NE(reg, nullptr) << name;
  if (reg == nullptr) return nullptr;
  google::protobuf::Any any;
  any.set_type_url(std::string(type));
  auto factory = reg->create(any, store, "filters[0]");
  EXPECT_NE(factory, nullptr) << name;
  return factory ? factory->createFilter() : nullptr;
}

// The value of the one `family` series whose labels contain `label`; -1 when there is none.
int64_t seriesValue(stats::Store& store, const std::string& family, const std::string& label) {
  std::istringstream lines(stats::renderPrometheus(store.snapshot()));
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(family + "{", 0) != 0 || line.find(label) == std::string::npos) continue;
    return std::stoll(line.substr(line.rfind(' ') + 1));
  }
  return -1;
}

TEST(IstioTcpStatsTest, AServerFirstConnectionOpensOnlyOnceTheClientsPeerIsKnown) {
  stats::Store store(1);
  InboundSession s;
  auto mx = makeFilter(store, "type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange",
                       "istio.metadata_exchange");
  auto st = makeFilter(store, "type.googleapis.com/stats.PluginConfig", "istio.stats");
  ASSERT_TRUE(mx && st);
  mx->setCallbacks(s);
  st->setCallbacks(s);
  mx->onNewConnection();
  st->onNewConnection();

  // The server's greeting runs through the chain in reverse: istio.stats, then the exchange.
  std::string greeting = "220 ready\r\n";
  st->onUpstreamData(greeting, false);
  mx->onUpstreamData(greeting, false);
  EXPECT_EQ(greeting, localExchangePreface() + "220 ready\r\n");
  const std::string peer = "source_workload=\"ratings-v1\"";
  EXPECT_EQ(seriesValue(store, "istio_tcp_connections_opened_total", "reporter=\"destination\""), -1)
      << "labels fixed before the client's preface";

  google::protobuf::Struct md;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(
                  R"({"WORKLOAD_NAME":"ratings-v1","NAMESPACE":"shop","LABELS":{"app":"ratings"}})", &md)
                  .ok());
  const std::string preface = encodeExchangePreface("client-id", md);
  std::string in = preface + "ping";
  mx->onDownstreamData(in, false);
  st->onDownstreamData(in, false);
  EXPECT_EQ(in, "ping");
  EXPECT_EQ(seriesValue(store, "istio_tcp_connections_opened_total", peer), 1);

  // The session's byte counts include both prefaces; Istio's counters do not.
  s.info.bytes_received = preface.size() + 4;
  s.info.bytes_sent = greeting.size();
  st->onClose("");
  EXPECT_EQ(seriesValue(store, "istio_tcp_connections_closed_total", peer), 1);
  EXPECT_EQ(seriesValue(store, "istio_tcp_received_bytes_total", peer), 4);
  EXPECT_EQ(seriesValue(store, "istio_tcp_sent_bytes_total", peer), 11);
}

TEST(IstioTcpStatsTest, AConnectionThatClosesBeforeThePeerIsKnownStillOpens) {
  stats::Store store(1);
  InboundSession s;
  auto mx = makeFilter(store, "type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange",
                       "istio.metadata_exchange");
  auto st = makeFilter(store, "type.googleapis.com/stats.PluginConfig", "istio.stats");
  ASSERT_TRUE(mx && st);
  mx->setCallbacks(s);
  st->setCallbacks(s);
  mx->onNewConnection();
  st->onNewConnection();
  std::string greeting = "hello";
  st->onUpstreamData(greeting, false);
  EXPECT_EQ(seriesValue(store, "istio_tcp_connections_opened_total", "reporter=\"destination\""), -1);
  s.info.bytes_sent = 5;
  st->onClose("");
  EXPECT_EQ(seriesValue(store, "istio_tcp_connections_opened_total", "source_workload=\"unknown\""), 1);
  EXPECT_EQ(seriesValue(store, "istio_tcp_sent_bytes_total", "source_workload=\"unknown\""), 5);
}

}  // namespace
}  // namespace skiff::filters::istio
