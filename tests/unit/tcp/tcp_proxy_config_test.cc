// TcpProxyConfig validation: errors name the field, defaults match Envoy's.
#include "server/tcp/tcp_proxy_config.h"

#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

namespace skiff::server {
namespace {

TcpProxyConfig::Proto protoFromJson(const std::string& json) {
  TcpProxyConfig::Proto proto;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &proto).ok()) << json;
  return proto;
}

void expectInvalid(const std::string& json, const std::string& fragment) {
  stats::Store store(1);
  try {
    TcpProxyConfig config(protoFromJson(json), "filter_chains[0].filters[0]", store);
    FAIL() << "accepted: " << json;
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("filter_chains[0].filters[0]." + fragment), std::string::npos)
        << e.what();
  }
}

TEST(TcpProxyConfigTest, Defaults) {
  stats::Store store(1);
  TcpProxyConfig config(protoFromJson(R"({"stat_prefix": "p", "cluster": "c"})"), "f", store);
  EXPECT_EQ(config.idle_timeout, std::chrono::hours(1));
  EXPECT_EQ(config.max_connect_attempts, 1u);
  EXPECT_FALSE(config.max_downstream_connection_duration);
  EXPECT_EQ(config.pickCluster(12345), "c");
  config.stats.downstream_cx_total.inc();
  EXPECT_EQ(store.counter("tcp.p.downstream_cx_total").value(), 1u);
}

TEST(TcpProxyConfigTest, IdleTimeoutZeroDisables) {
  stats::Store store(1);
  TcpProxyConfig config(protoFromJson(R"({"stat_prefix": "p", "cluster": "c", "idle_timeout": "0s"})"), "f",
                        store);
  EXPECT_EQ(config.idle_timeout.count(), 0);
}

TEST(TcpProxyConfigTest, WeightedClustersSplitByWeight) {
  stats::Store store(1);
  TcpProxyConfig config(protoFromJson(R"({"stat_prefix": "p", "weighted_clusters": {"clusters": [
      {"name": "a", "weight": 1}, {"name": "b", "weight": 3}]}})"),
                        "f", store);
  int a = 0;
  for (uint64_t r = 0; r < 400; ++r) a += config.pickCluster(r) == "a";
  EXPECT_EQ(a, 100);
}

TEST(TcpProxyConfigTest, ErrorsNameTheField) {
  expectInvalid(R"({"cluster": "c"})", "stat_prefix");
  expectInvalid(R"({"stat_prefix": "p", "weighted_clusters": {"clusters": []}})",
                "weighted_clusters.clusters");
  expectInvalid(R"({"stat_prefix": "p", "weighted_clusters": {"clusters": [{"name": "a", "weight": 0}]}})",
                "weighted_clusters.clusters[0].weight");
  expectInvalid(R"({"stat_prefix": "p", "cluster": "c", "max_connect_attempts": 0})", "max_connect_attempts");
  expectInvalid(R"({"stat_prefix": "p", "cluster": "c", "tunneling_config": {"hostname": "h"}})",
                "tunneling_config");
}

TEST(TcpProxyConfigTest, MissingClusterMessage) {
  stats::Store store(1);
  try {
    TcpProxyConfig config(protoFromJson(R"({"stat_prefix": "p"})"), "f", store);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("cluster or weighted_clusters"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace skiff::server
