// Istio's real configs (../shared/fixtures/istio): every istio.stats and istio.metadata_exchange HTTP filter
// (native stats.PluginConfig in the 2023 dump, Wasm null-VM built-ins in both), and every network istio.stats
// in front of tcp_proxy, now builds Skiff's own filter.
#include <filesystem>
#include <typeinfo>

#include <gtest/gtest.h>

#include "envoy/config/listener/v3/listener.pb.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "filters/istio/istio.h"
#include "filters/istio/tcp_exchange.h"
#include "filters/network/network_filter.h"
#include "skiff/filters/http_filter_registry.h"
#include "skiff/stats/stats.h"
#include "skiff/xds/test_server.h"

namespace skiff {
namespace {

constexpr std::string_view kListenerType = "type.googleapis.com/envoy.config.listener.v3.Listener";
using Hcm = envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;

struct Counts {
  int stats = 0, exchange = 0, unwrapped = 0, tcp = 0, tcp_exchange = 0, cluster_exchange = 0;
};

Counts buildIstioFilters(const std::string& dump) {
  const auto path =
      std::filesystem::path(SKIFF_SOURCE_DIR).parent_path() / "shared" / "fixtures" / "istio" / dump;
  if (!std::filesystem::exists(path)) return {-1, -1, 0, 0};
  filters::registerAllHttpFilters();
  stats::Store store(1);
  Counts counts;
  auto loaded = xds::loadSnapshot(path.string());
  // Clusters' upstream istio.metadata_exchange (Istio's TCP exchange, ALPN istio-peer-exchange).
  for (const auto& [name, any] : loaded.resources["type.googleapis.com/envoy.config.cluster.v3.Cluster"]) {
    envoy::config::cluster::v3::Cluster cluster;
    EXPECT_TRUE(any.UnpackTo(&cluster)) << name;
    if (cluster.filters_size() == 0) continue;
    EXPECT_EQ(filters::istio::exchangeProtocolOf(cluster), "istio-peer-exchange") << name;
    ++counts.cluster_exchange;
  }
  for (const auto& [name, any] : loaded.resources[std::string(kListenerType)]) {
    envoy::config::listener::v3::Listener listener;
    EXPECT_TRUE(any.UnpackTo(&listener)) << name;
    for (const auto& chain : listener.filter_chains()) {
      for (const auto& f : chain.filters()) {
        if (f.name() == "istio.stats") {  // the TCP form, in front of tcp_proxy
          google::protobuf::Any config = f.typed_config();
          filters::istio::unwrapTypedStruct(f.typed_config(), &config);
          const auto* reg = filters::network::findNetworkFilter(config.type_url(), f.name());
          EXPECT_NE(reg, nullptr) << name << ": network istio.stats " << config.type_url();
          if (reg == nullptr) continue;
          auto factory = reg->create(f.typed_config(), store, name);
          EXPECT_TRUE(factory) << name;
          if (!factory) continue;
          const std::string impl = typeid(*factory).name();
          EXPECT_NE(impl.find("istio"), std::string::npos) << name << ": network istio.stats built " << impl;
          ++counts.tcp;
          continue;
        }
        if (f.name() == "istio.metadata_exchange") {  // the TCP exchange, in front of tcp_proxy or an HCM
          google::protobuf::Any config = f.typed_config();
          filters::istio::unwrapTypedStruct(f.typed_config(), &config);
          const auto* reg = filters::network::findNetworkFilter(config.type_url(), f.name());
          EXPECT_NE(reg, nullptr) << name << ": network istio.metadata_exchange " << config.type_url();
          if (reg == nullptr) continue;
          auto factory = reg->create(f.typed_config(), store, name);
          EXPECT_TRUE(factory) << name;
          if (factory) ++counts.tcp_exchange;
          continue;
        }
        Hcm hcm;
        if (!f.typed_config().UnpackTo(&hcm)) continue;
        for (const auto& hf : hcm.http_filters()) {
          if (hf.name() != "istio.stats" && hf.name() != "istio.metadata_exchange") continue;
          // Istio 1.10 wraps its Wasm filters in a TypedStruct, which the HCM does not unwrap yet.
          google::protobuf::Any config = hf.typed_config();
          if (filters::istio::unwrapTypedStruct(hf.typed_config(), &config)) ++counts.unwrapped;
          const std::string& type = config.type_url();
          const auto* reg = filters::findHttpFilter(type, hf.name());
          EXPECT_NE(reg, nullptr) << name << ": " << hf.name() << " " << type;
          if (reg == nullptr) continue;
          filters::FactoryContext context{store, "http." + hcm.stat_prefix() + "."};
          http::FilterFactorySharedPtr factory;
          try {
            factory = reg->create(config, context);
          } catch (const std::exception& e) {
            ADD_FAILURE() << name << ": " << hf.name() << ": " << e.what();
            continue;
          }
          EXPECT_TRUE(factory) << name;
          if (!factory) continue;
          const std::string impl = typeid(*factory).name();
          EXPECT_NE(impl.find("istio"), std::string::npos) << name << ": " << hf.name() << " built " << impl;
          (hf.name() == "istio.stats" ? counts.stats : counts.exchange)++;
        }
      }
    }
  }
  return counts;
}

TEST(IstioStatsFixtures, LdsDump2023NativeStatsAndWasmExchange) {
  const Counts c = buildIstioFilters("sidecar-lds-dump/configdump.yaml");
  if (c.stats < 0) GTEST_SKIP() << "no ../shared/fixtures/istio";
  EXPECT_GT(c.stats, 0);
  EXPECT_GT(c.exchange, 0);
  EXPECT_GT(c.tcp, 0);
  EXPECT_GT(c.tcp_exchange, 0);
}

TEST(IstioStatsFixtures, FullDump110WasmNullVmForms) {
  const Counts c = buildIstioFilters("sidecar-1.10-full-dump/configdump.json");
  if (c.stats < 0) GTEST_SKIP() << "no ../shared/fixtures/istio";
  EXPECT_EQ(c.unwrapped, c.stats + c.exchange);
  EXPECT_GT(c.stats, 0);
  EXPECT_GT(c.exchange, 0);
  EXPECT_GT(c.tcp, 0);
  EXPECT_GT(c.tcp_exchange, 0);
  EXPECT_GT(c.cluster_exchange, 0);  // every cluster of the 1.10 dump carries the upstream exchange
}

}  // namespace
}  // namespace skiff
