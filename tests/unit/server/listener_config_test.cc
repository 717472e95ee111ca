// ListenerConfig: filter chains, listener filters and the errors that name the offending field.
#include <gtest/gtest.h>

#include "server/listener.h"
#include "skiff/config/yaml_to_proto.h"
#include "skiff/filters/http_filter_registry.h"

namespace skiff::server {
namespace {

constexpr const char* kHcm = R"({name: envoy.filters.network.http_connection_manager, typed_config: {
    "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager,
    stat_prefix: s, route_config: {name: r}, http_filters: [{name: envoy.filters.http.router}]}})";

class ListenerConfigTest : public ::testing::Test {
 protected:
  ListenerConfigTest() : store_(2) { filters::registerAllHttpFilters(); }

  std::unique_ptr<ListenerConfig> build(const std::string& yaml) {
    envoy::config::listener::v3::Listener proto;
    std::vector<std::string> warnings;
    config::loadMessageYaml(yaml, proto, warnings);
    return std::make_unique<ListenerConfig>(proto, "static_resources.listeners[0]", store_, 1);
  }
  // The error message of building `yaml`, or "" when it builds.
  std::string error(const std::string& yaml) {
    try {
      build(yaml);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  }

  static std::string listener(const std::string& chains, const std::string& extra = "") {
    return "{name: l, address: {socket_address: {address: 0.0.0.0, port_value: 15006}}, filter_chains: [" +
           chains + "]" + extra + "}";
  }

  stats::Store store_;
};

TEST_F(ListenerConfigTest, ChainsAreSelectedByMatch) {
  auto l =
      build(listener(std::string("{name: eighty, filter_chain_match: {destination_port: 80}, filters: [") +
                     kHcm + "]}, {name: rest, filters: [" + kHcm + "]}"));
  network::ConnectionInfo info;
  info.local = asio::ip::tcp::endpoint(asio::ip::make_address("10.0.0.1"), 80);
  ASSERT_NE(l->selectChain(info), nullptr);
  EXPECT_EQ(l->selectChain(info)->name, "eighty");
  info.local.port(81);
  EXPECT_EQ(l->selectChain(info)->name, "rest");
  int hcms = 0;
  l->forEachHcm([&](const ConnectionManagerConfig&) { ++hcms; });
  EXPECT_EQ(hcms, 2);
}

TEST_F(ListenerConfigTest, DefaultChainCatchesTheRest) {
  auto l = build(listener(
      std::string("{name: tls, filter_chain_match: {transport_protocol: tls}, filters: [") + kHcm + "]}",
      std::string(", default_filter_chain: {name: fallback, filters: [") + kHcm + "]}"));
  network::ConnectionInfo info;
  EXPECT_EQ(l->selectChain(info)->name, "fallback");
}

TEST_F(ListenerConfigTest, NoMatchWithoutDefault) {
  auto l =
      build(listener(std::string("{filter_chain_match: {destination_port: 80}, filters: [") + kHcm + "]}"));
  network::ConnectionInfo info;
  info.local = asio::ip::tcp::endpoint(asio::ip::make_address("10.0.0.1"), 81);
  EXPECT_EQ(l->selectChain(info), nullptr);
}

TEST_F(ListenerConfigTest, ListenerFiltersAndTimeouts) {
  auto l =
      build(listener(std::string("{filters: [") + kHcm + "]}",
                     ", use_original_dst: true, listener_filters_timeout: 0s, "
                     "continue_on_listener_filters_timeout: true, listener_filters: ["
                     "{name: envoy.filters.listener.tls_inspector, typed_config: {'@type': "
                     "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}, "
                     "filter_disabled: {destination_port_range: {start: 15006, end: 15007}}},"
                     "{name: envoy.filters.listener.http_inspector}]"));
  ASSERT_EQ(l->listener_filters.size(), 3u);  // original_dst is implied by use_original_dst
  EXPECT_EQ(l->listener_filters[0].name, "envoy.filters.listener.original_dst");
  EXPECT_TRUE(l->use_original_dst);
  EXPECT_EQ(l->listener_filters_timeout.count(), 0);
  EXPECT_TRUE(l->continue_on_listener_filters_timeout);
  EXPECT_EQ(l->max_peek_bytes, 64u * 1024);
  network::ConnectionInfo info;
  info.local = asio::ip::tcp::endpoint(asio::ip::make_address("10.0.0.1"), 15006);
  ASSERT_TRUE(l->listener_filters[1].disabled);
  EXPECT_TRUE(l->listener_filters[1].disabled->matches(info));
  info.local.port(80);
  EXPECT_FALSE(l->listener_filters[1].disabled->matches(info));
}

TEST_F(ListenerConfigTest, RbacChainsLoadButCloseConnections) {
  auto l = build(listener(
      std::string("{name: plain, filter_chain_match: {transport_protocol: tls}, transport_socket: {name: "
                  "envoy.transport_sockets.raw_buffer}, filters: [") +
      kHcm + "]}, {name: rbac, filters: [{name: envoy.filters.network.rbac}, " + kHcm +
      "]}, {name: stats, filter_chain_match: {destination_port: 80}, filters: [{name: istio.stats}, " + kHcm +
      "]}"));
  EXPECT_TRUE(l->filter_chains[0]->unusable.empty());
  EXPECT_FALSE(l->filter_chains[0]->tls);  // raw_buffer is plaintext
  EXPECT_NE(l->filter_chains[1]->unusable.find("rbac"), std::string::npos);
  EXPECT_TRUE(l->filter_chains[2]->unusable.empty());
  EXPECT_TRUE(l->filter_chains[2]->hcm);
}

// TLS termination (test_tls.py covers real handshakes): a server context needs a certificate.
TEST_F(ListenerConfigTest, TlsChainWithoutCertificateIsAnError) {
  EXPECT_NE(
      error(listener(std::string("{transport_socket: {name: envoy.transport_sockets.tls}, filters: [") +
                     kHcm + "]}"))
          .find("filter_chains[0].transport_socket.typed_config.common_tls_context: a server context needs"),
      std::string::npos);
}

TEST_F(ListenerConfigTest, ErrorsNameTheField) {
  EXPECT_NE(error(listener(std::string("{filters: [") + kHcm + "]}",
                           ", listener_filters: [{name: envoy.filters.listener.proxy_protocol}]"))
                .find("static_resources.listeners[0].listener_filters[0]: listener filter "
                      "'envoy.filters.listener.proxy_protocol' is not supported"),
            std::string::npos);
  EXPECT_NE(error(listener(std::string("{filters: [{name: envoy.filters.network.echo}, ") + kHcm + "]}"))
                .find("static_resources.listeners[0].filter_chains[0].filters[0]: network filter "
                      "'envoy.filters.network.echo' is not supported"),
            std::string::npos);
  EXPECT_NE(
      error(listener(std::string("{filters: [") + kHcm + ", {name: istio.stats}]}"))
          .find("filter_chains[0].filters[0]: 'envoy.filters.network.http_connection_manager' is a terminal "
                "filter and must be last"),
      std::string::npos);
  EXPECT_NE(error(listener("{filters: []}")).find("filter_chains[0].filters: at least one"),
            std::string::npos);
  EXPECT_NE(
      error("{name: l, address: {socket_address: {address: 0.0.0.0, port_value: 1}}}").find(".filter_chains"),
      std::string::npos);
  EXPECT_NE(error(listener(std::string("{filter_chain_match: {destination_port: 80}, filters: [") + kHcm +
                           "]}, {filter_chain_match: {destination_port: 80}, filters: [" + kHcm + "]}"))
                .find("filter_chains[1].filter_chain_match: another filter chain has the same"),
            std::string::npos);
  EXPECT_NE(
      error(listener(
                std::string("{filters: [") + kHcm + "]}",
                ", listener_filters: [{name: envoy.filters.listener.http_inspector, filter_disabled: {}}]"))
          .find("listener_filters[0].filter_disabled: a rule is required"),
      std::string::npos);
}

TEST(ListenerIndexTest, ExactThenWildcard) {
  stats::Store store(1);
  filters::registerAllHttpFilters();
  auto make = [&](const std::string& ip, int port) {
    envoy::config::listener::v3::Listener proto;
    std::vector<std::string> warnings;
    config::loadMessageYaml("{name: '" + ip + "_" + std::to_string(port) +
                                "', address: {socket_address: {address: '" + ip +
                                "', port_value: " + std::to_string(port) +
                                "}}, bind_to_port: false, filter_chains: [{filters: [" + kHcm + "]}]}",
                            proto, warnings);
    return std::make_shared<const ListenerConfig>(proto, "l", store, 1);
  };
  ListenerIndex index;
  auto exact = make("10.0.0.5", 80);
  auto wild = make("0.0.0.0", 80);
  auto wild6 = make("::", 443);
  index.add(exact, exact->endpoint);
  index.add(wild, wild->endpoint);
  index.add(wild6, wild6->endpoint);
  auto ep = [](const char* ip, uint16_t port) {
    return asio::ip::tcp::endpoint(asio::ip::make_address(ip), port);
  };
  EXPECT_EQ(index.find(ep("10.0.0.5", 80)), exact.get());
  EXPECT_EQ(index.find(ep("10.9.9.9", 80)), wild.get());
  EXPECT_EQ(index.find(ep("10.0.0.5", 81)), nullptr);
  EXPECT_EQ(index.find(ep("2001:db8::1", 443)), wild6.get());
  EXPECT_EQ(index.find(ep("10.0.0.5", 443)), nullptr);
  EXPECT_FALSE(exact->bind_to_port);
}

}  // namespace
}  // namespace skiff::server
