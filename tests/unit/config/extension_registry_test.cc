#include "skiff/config/extension_registry.h"

#include <gtest/gtest.h>

namespace skiff::config {
namespace {

TEST(ConfigRegistryTest, CoreExtensionsArePreRegistered) {
  const Extension* router = findByName("envoy.filters.http.router");
  ASSERT_NE(router, nullptr);
  EXPECT_EQ(router->category, Category::kHttpFilter);
  EXPECT_EQ(router->type_url, "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router");

  const Extension* stdout_log =
      findByTypeUrl("type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog");
  ASSERT_NE(stdout_log, nullptr);
  EXPECT_EQ(stdout_log->name, "envoy.access_loggers.stdout");
  EXPECT_EQ(stdout_log->category, Category::kAccessLogger);

  EXPECT_NE(findByName("envoy.filters.network.tcp_proxy"), nullptr);
  EXPECT_NE(findByName("envoy.transport_sockets.raw_buffer"), nullptr);
  EXPECT_EQ(findByName("envoy.filters.http.never_registered"), nullptr);
}

TEST(ConfigRegistryTest, TypeUrlPrefixIsNotSignificant) {
  EXPECT_EQ(findByTypeUrl("envoy.extensions.filters.http.router.v3.Router"),
            findByName("envoy.filters.http.router"));
  EXPECT_EQ(findByTypeUrl("example.com/envoy.extensions.filters.http.router.v3.Router"),
            findByName("envoy.filters.http.router"));
  EXPECT_EQ(typeNameOfUrl("type.googleapis.com/a.b.C"), "a.b.C");
}

TEST(ConfigRegistryTest, RegisterAddsAndReplaces) {
  registerExtension(Category::kHttpFilter, "test.filter", "test.pkg.Config");
  const Extension* ext = findByTypeUrl("type.googleapis.com/test.pkg.Config");
  ASSERT_NE(ext, nullptr);
  EXPECT_EQ(ext->name, "test.filter");
  EXPECT_EQ(ext->type_url, "type.googleapis.com/test.pkg.Config");

  registerExtension(Category::kHttpFilter, "test.filter2", "type.googleapis.com/test.pkg.Config");
  EXPECT_EQ(findByTypeUrl("test.pkg.Config"), ext);  // same entry, updated in place
  EXPECT_EQ(ext->name, "test.filter2");
  EXPECT_EQ(ext->category, Category::kHttpFilter);

  // The same type in another category is a second entry (Istio's stats.PluginConfig is both).
  registerExtension(Category::kNetworkFilter, "test.filter3", "type.googleapis.com/test.pkg.Config");
  const Extension* net = findByTypeUrl("test.pkg.Config", Category::kNetworkFilter);
  ASSERT_NE(net, nullptr);
  EXPECT_NE(net, ext);
  EXPECT_EQ(net->name, "test.filter3");
  EXPECT_EQ(findByTypeUrl("test.pkg.Config", Category::kHttpFilter), ext);
  EXPECT_EQ(findByTypeUrl("test.pkg.Config", Category::kListenerFilter), nullptr);
}

}  // namespace
}  // namespace skiff::config
