// Istio's real listeners (../shared/fixtures/istio/sidecar-lds-dump): they load, and virtualInbound picks
// the chains Envoy would.
#include <filesystem>

#include <gtest/gtest.h>

#include "server/listener.h"
#include "skiff/filters/http_filter_registry.h"
#include "skiff/xds/test_server.h"

namespace skiff::server {
namespace {

constexpr std::string_view kListenerType = "type.googleapis.com/envoy.config.listener.v3.Listener";

class IstioListenersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto path = std::filesystem::path(SKIFF_SOURCE_DIR).parent_path() / "shared" / "fixtures" /
                      "istio" / "sidecar-lds-dump" / "configdump.yaml";
    if (!std::filesystem::exists(path)) GTEST_SKIP() << "no fixture at " << path;
    filters::registerAllHttpFilters();
    auto loaded = xds::loadSnapshot(path.string());
    for (const auto& [name, any] : loaded.resources[std::string(kListenerType)]) {
      envoy::config::listener::v3::Listener proto;
      ASSERT_TRUE(any.UnpackTo(&proto)) << name;
      if (!proto.has_address()) continue;  // internal listeners
      reduceHcms(proto);
      try {
        listeners_[name] =
            std::make_shared<const ListenerConfig>(proto, "listeners['" + name + "']", store_, 1);
      } catch (const std::exception& e) {
        errors_.push_back(e.what());
      }
    }
  }

  // The HTTP side is not what is tested here: RDS needs a running server's ADS stream, and Istio's wasm
  // and TypedStruct HTTP filters belong to other areas. Each HCM keeps only its router and gets an
  // empty inline route table.
  static void reduceHcms(envoy::config::listener::v3::Listener& proto) {
    auto reduce = [](envoy::config::listener::v3::FilterChain& chain) {
      for (auto& f : *chain.mutable_filters()) {
        ConnectionManagerConfig::Proto hcm;
        if (!f.typed_config().UnpackTo(&hcm)) continue;
        if (hcm.has_rds()) hcm.mutable_route_config()->set_name(hcm.rds().route_config_name());
        hcm.clear_http_filters();
        hcm.add_http_filters()->set_name("envoy.filters.http.router");
        f.mutable_typed_config()->PackFrom(hcm);
      }
    };
    for (auto& chain : *proto.mutable_filter_chains()) reduce(chain);
    if (proto.has_default_filter_chain()) reduce(*proto.mutable_default_filter_chain());
  }

  static network::ConnectionInfo conn(const char* ip, uint16_t port, const char* transport,
                                      std::vector<std::string> alpn) {
    network::ConnectionInfo info;
    info.local = asio::ip::tcp::endpoint(asio::ip::make_address(ip), port);
    info.remote = asio::ip::tcp::endpoint(asio::ip::make_address("10.244.0.7"), 40000);
    info.transport_protocol = transport;
    info.application_protocols = std::move(alpn);
    return info;
  }

  stats::Store store_{2};
  std::map<std::string, ListenerConfigSharedPtr> listeners_;
  std::vector<std::string> errors_;
};

TEST_F(IstioListenersTest, EveryListenerWithAnAddressLoads) {
  for (const auto& e : errors_) ADD_FAILURE() << e;
  ASSERT_TRUE(listeners_.count("virtualOutbound"));
  ASSERT_TRUE(listeners_.count("virtualInbound"));
  ASSERT_TRUE(listeners_.count("0.0.0.0_80"));
  EXPECT_TRUE(listeners_["virtualOutbound"]->use_original_dst);
  EXPECT_FALSE(listeners_["0.0.0.0_80"]->bind_to_port);
  EXPECT_TRUE(listeners_["0.0.0.0_80"]->continue_on_listener_filters_timeout);
  EXPECT_EQ(listeners_["0.0.0.0_80"]->listener_filters_timeout.count(), 0);
  EXPECT_EQ(listeners_["0.0.0.0_80"]->default_chain->name, "PassthroughFilterChain");
}

TEST_F(IstioListenersTest, VirtualInboundChains) {
  ASSERT_TRUE(listeners_.count("virtualInbound"));
  const auto& l = *listeners_["virtualInbound"];
  auto name = [&](const network::ConnectionInfo& info) {
    const auto* chain = l.selectChain(info);
    return chain ? chain->name + (chain->unusable.empty() ? "" : " (closed)") : std::string("<none>");
  };
  EXPECT_EQ(name(conn("10.244.0.12", 80, "raw_buffer", {"http/1.1"})), "0.0.0.0_80");
  EXPECT_EQ(name(conn("10.244.0.12", 9080, "raw_buffer", {"http/1.1"})), "virtualInbound-catchall-http");
  EXPECT_EQ(name(conn("10.244.0.12", 9080, "raw_buffer", {})), "virtualInbound (closed)");  // RBAC
  // Istio mTLS from another sidecar: a TLS chain, served now that filter chains terminate TLS (its
  // certificates arrive over SDS).
  EXPECT_EQ(name(conn("10.244.0.12", 9080, "tls", {"istio-http/1.1"})), "virtualInbound-catchall-http");
  EXPECT_NE(l.selectChain(conn("10.244.0.12", 9080, "tls", {"istio-http/1.1"}))->tls, nullptr);
  EXPECT_EQ(l.selectChain(conn("10.244.0.12", 9080, "raw_buffer", {"http/1.1"}))->tls, nullptr);
  EXPECT_EQ(name(conn("10.244.0.12", 15006, "raw_buffer", {})), "virtualInbound-blackhole");
  // The original_dst listener filter comes first; tls_inspector is disabled for unredirected 15006.
  ASSERT_GE(l.listener_filters.size(), 3u);
  EXPECT_EQ(l.listener_filters[0].name, "envoy.filters.listener.original_dst");
  ASSERT_TRUE(l.listener_filters[1].disabled);
  EXPECT_TRUE(l.listener_filters[1].disabled->matches(conn("10.244.0.12", 15006, "raw_buffer", {})));
  EXPECT_FALSE(l.listener_filters[1].disabled->matches(conn("10.244.0.12", 9080, "raw_buffer", {})));
}

}  // namespace
}  // namespace skiff::server
