// istio.metadata_exchange → istio.stats peer hand-off: each stream keeps its own peer, however many are in
// flight and whatever their ids.
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <asio/io_context.hpp>
#include <cstdlib>

#include "filters/istio/istio.h"
#include "filters/istio/workload.h"

namespace skiff::filters::istio {
namespace {

// Just enough of a stream for filters that only read headers, the stream id and StreamInfo.
class Stream : public http::DecoderFilterCallbacks, public http::EncoderFilterCallbacks {
 public:
  explicit Stream(uint64_t id) : id_(id) {}
  http::StreamInfo& streamInfo() override { return info; }
  const router::RouteEntry* route() override { return nullptr; }
  void clearRouteCache() override {}
  asio::io_context& dispatcher() override { return io_; }
  upstream::ThreadLocalClusterManager& clusterManager() override { std::abort(); }
  upstream::ConnPoolMap& connPools() override { std::abort(); }
  uint64_t streamId() const override { return id_; }
  void sendLocalReply(uint32_t, std::string_view, std::string_view,
                      const std::function<void(http::HeaderMap&)>&) override {}
  void resetStream() override {}
  void continueDecoding() override {}
  http::HeaderMap& requestHeaders() override { return request; }
  http::Buffer* decodingBuffer() override { return nullptr; }
  void encodeHeaders(std::unique_ptr<http::HeaderMap>, bool) override {}
  void encodeData(http::Buffer&, bool) override {}
  void encodeTrailers(std::unique_ptr<http::HeaderMap>) override {}
  bool downstreamBackedUp() const override { return false; }
  void onDownstreamWritable(std::function<void()>) override {}
  uint32_t bufferLimit() const override { return 1 << 20; }
  void pauseDownstreamReading(bool) override {}
  void continueEncoding() override {}
  http::HeaderMap& responseHeaders() override { return response; }
  http::Buffer* encodingBuffer() override { return nullptr; }

  http::StreamInfo info;
  http::HeaderMap request, response;

 private:
  uint64_t id_;
  asio::io_context io_;
};

class Chain : public http::FilterChainBuilder {
 public:
  void addDecoderFilter(std::unique_ptr<http::StreamDecoderFilter>) override { std::abort(); }
  void addEncoderFilter(std::unique_ptr<http::StreamEncoderFilter>) override { std::abort(); }
  void addStreamFilter(std::unique_ptr<http::StreamFilter> f) override { filters.push_back(std::move(f)); }
  std::vector<std::unique_ptr<http::StreamFilter>> filters;
};

std::string peerHeader(const std::string& workload) {
  google::protobuf::Struct md;
  const std::string json =
      R"({"WORKLOAD_NAME":")" + workload +
      R"(","NAMESPACE":"ns","LABELS":{"app":"a"},"EXCHANGE_KEYS":"NAMESPACE,LABELS,WORKLOAD_NAME"})";
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &md).ok());
  return exchangeValue(md);
}

TEST(IstioStreamPeer, StreamsWhoseIdsCollideKeepTheirOwnPeer) {
  stats::Store store(1);
  StatsConfig config;
  config.reporter = Reporter::kDestination;
  auto exchange = makeMetadataExchangeFactory(Reporter::kDestination);
  auto istio_stats = makeStatsFilterFactory(config, store);

  // Ids equal modulo 4096 (and any smaller power of two): both streams in flight at once.
  Stream a(7), b(7 + 4096 * 3);
  Chain chain_a, chain_b;
  for (auto* s : {&a, &b}) {
    Chain& chain = s == &a ? chain_a : chain_b;
    exchange->createFilters(chain);
    istio_stats->createFilters(chain);
    s->request.add(":authority", "server:80");
    s->request.add("x-envoy-peer-metadata", peerHeader(s == &a ? "client-a" : "client-b"));
    for (auto& f : chain.filters) {
      f->setDecoderFilterCallbacks(*s);
      f->setEncoderFilterCallbacks(*s);
    }
  }
  for (auto* s : {&a, &b}) {
    Chain& chain = s == &a ? chain_a : chain_b;
    for (auto& f : chain.filters) f->decodeHeaders(s->request, true);
  }
  for (auto* s : {&a, &b}) {
    Chain& chain = s == &a ? chain_a : chain_b;
    s->response.add(":status", "200");
    s->info.response_code = 200;
    s->info.response_headers = &s->response;
    s->info.request_headers = &s->request;
    for (auto it = chain.filters.rbegin(); it != chain.filters.rend(); ++it)
      (*it)->encodeHeaders(s->response, true);
    for (auto& f : chain.filters) f->onDestroy();
  }

  const std::string prom = stats::renderPrometheus(store.snapshot());
  EXPECT_NE(prom.find("source_workload=\"client-a\""), std::string::npos) << prom;
  EXPECT_NE(prom.find("source_workload=\"client-b\""), std::string::npos) << prom;
  EXPECT_EQ(prom.find("source_workload=\"unknown\""), std::string::npos) << prom;
}

TEST(IstioStreamPeer, StreamInfoCarriesThePeer) {
  http::StreamInfo one, two;
  auto p1 = std::make_shared<WorkloadInfo>();
  p1->workload_name = "w1";
  auto p2 = std::make_shared<WorkloadInfo>();
  p2->workload_name = "w2";
  EXPECT_EQ(streamPeer(one), nullptr);
  setStreamPeer(one, p1);
  setStreamPeer(two, p2);
  ASSERT_NE(streamPeer(one), nullptr);
  EXPECT_EQ(streamPeer(one)->workload_name, "w1");
  EXPECT_EQ(streamPeer(two)->workload_name, "w2");
}

}  // namespace
}  // namespace skiff::filters::istio
