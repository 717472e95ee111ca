// RouteConfigProvider: publish/swap semantics, per-worker reads, rejected configs; xxHash64 vectors.
#include "server/xds/route_config_provider.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "server/xds/version_hash.h"

namespace skiff::server {
namespace {

envoy::config::route::v3::RouteConfiguration routes(const std::string& cluster) {
  envoy::config::route::v3::RouteConfiguration config;
  config.set_name("local_route");
  auto* vh = config.add_virtual_hosts();
  vh->set_name("all");
  vh->add_domains("*");
  auto* route = vh->add_routes();
  route->mutable_match()->set_prefix("/");
  route->mutable_route()->set_cluster(cluster);
  return config;
}

TEST(VersionHashTest, MatchesXxHash64Vectors) {
  EXPECT_EQ(xxHash64(""), 0xEF46DB3751D8E999ULL);
  EXPECT_EQ(xxHash64("abc"), 0x44BC2CF5AD770999ULL);
  EXPECT_EQ(xxHash64("Nobody inspects the spammish repetition"), 0xFBCEA83C8A378BF1ULL);
}

TEST(RouteConfigProviderTest, NoTableUntilFirstConfigThenSwapsKeepingOldForHolders) {
  stats::Store store(1);
  RouteConfigProvider provider("local_route", "ingress", store, 2, std::chrono::milliseconds(0));
  EXPECT_EQ(provider.current(0), nullptr);
  EXPECT_FALSE(provider.initialized());

  ASSERT_EQ(provider.update(routes("a"), "1"), "");
  auto held = provider.current(0);  // a stream that started on v1
  ASSERT_NE(held, nullptr);
  EXPECT_TRUE(provider.initialized());

  ASSERT_EQ(provider.update(routes("b"), "2"), "");
  auto fresh = provider.current(0);
  EXPECT_NE(fresh, held);                 // the next stream sees v2
  EXPECT_EQ(provider.current(1), fresh);  // on every worker
  EXPECT_EQ(held.use_count(), 1);         // v1 lives on only in the stream that holds it
  EXPECT_EQ(provider.version(), "2");

  // Identical config: a version bump, no new table and no config_reload.
  ASSERT_EQ(provider.update(routes("b"), "3"), "");
  EXPECT_EQ(provider.current(0), fresh);
  EXPECT_EQ(store.counter("http.ingress.rds.local_route.config_reload").value(), 2u);
  EXPECT_EQ(store.counter("http.ingress.rds.local_route.update_success").value(), 3u);
  EXPECT_EQ(store.gauge("http.ingress.rds.local_route.version").value(), static_cast<int64_t>(xxHash64("3")));
}

TEST(RouteConfigProviderTest, RejectedConfigKeepsThePreviousTable) {
  stats::Store store(1);
  RouteConfigProvider provider("local_route", "ingress", store, 1, std::chrono::milliseconds(0));
  ASSERT_EQ(provider.update(routes("a"), "1"), "");
  auto before = provider.current(0);
  auto bad = routes("a");
  bad.mutable_virtual_hosts(0)->mutable_routes(0)->mutable_match()->mutable_safe_regex()->set_regex("(");
  const std::string error = provider.update(bad, "2");
  EXPECT_NE(error, "");
  EXPECT_EQ(provider.current(0), before);
  EXPECT_EQ(provider.version(), "1");
  EXPECT_EQ(store.counter("http.ingress.rds.local_route.update_rejected").value(), 1u);
}

TEST(RouteConfigProviderTest, WorkersReadWhileMainPublishes) {
  stats::Store store(3);
  RouteConfigProvider provider("r", "p", store, 2, std::chrono::milliseconds(0));
  ASSERT_EQ(provider.update(routes("c0"), "0"), "");
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> reads{0};
  std::vector<std::thread> workers;
  for (uint32_t w = 0; w < 2; ++w) {
    workers.emplace_back([&, w] {
      while (!stop.load()) {
        auto table = provider.current(w);
        ASSERT_NE(table, nullptr);
        reads.fetch_add(1);
      }
    });
  }
  for (int i = 1; i <= 500; ++i)
    ASSERT_EQ(provider.update(routes("c" + std::to_string(i)), std::to_string(i)), "");
  stop = true;
  for (auto& t : workers) t.join();
  EXPECT_GT(reads.load(), 0u);
  // After the last publish every worker converges on the newest table.
  EXPECT_EQ(provider.current(0), provider.current(1));
  EXPECT_EQ(provider.generation(), 501u);
}

TEST(RouteConfigProviderManagerTest, RdsNeedsAdsAndSharesProvidersByName) {
  stats::Store store(1);
  auto& manager = RouteConfigProviderManager::instance();
  envoy::extensions::filters::network::http_connection_manager::v3::Rds rds;
  rds.set_route_config_name("shared");
  rds.mutable_config_source()->mutable_ads();
  manager.setAdsConfigured(false);
  try {
    manager.getOrCreate(rds, "p", store, 1, "hcm.rds");
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("hcm.rds.config_source.ads"), std::string::npos) << e.what();
  }
  manager.setAdsConfigured(true);
  auto a = manager.getOrCreate(rds, "p", store, 1, "hcm.rds");
  auto b = manager.getOrCreate(rds, "q", store, 1, "hcm.rds");
  EXPECT_EQ(a, b);
  EXPECT_EQ(manager.find("shared"), a);

  rds.mutable_config_source()->set_path("/tmp/x");
  EXPECT_THROW(manager.getOrCreate(rds, "p", store, 1, "hcm.rds"), std::invalid_argument);
  a.reset();
  b.reset();
  EXPECT_EQ(manager.find("shared"), nullptr);  // gone with its last HCM
  manager.setAdsConfigured(false);
}

}  // namespace
}  // namespace skiff::server
