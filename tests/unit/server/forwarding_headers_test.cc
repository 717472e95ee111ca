// Envoy's per-hop request header rules: x-forwarded-*, x-envoy-internal, x-request-id, hop-by-hop removal.
#include "server/http/forwarding_headers.h"

#include <gtest/gtest.h>

#include "skiff/filters/http_filter_registry.h"
#include "skiff/stats/stats.h"

namespace skiff::server {
namespace {

class ForwardingHeadersTest : public ::testing::Test {
 protected:
  ForwardingHeadersTest() : store_(2) { filters::registerAllHttpFilters(); }

  std::unique_ptr<ConnectionManagerConfig> config(bool use_remote_address, uint32_t trusted_hops = 0) {
    ConnectionManagerConfig::Proto proto;
    proto.set_stat_prefix("t");
    proto.mutable_route_config()->set_name("r");
    proto.add_http_filters()->set_name("envoy.filters.http.router");
    proto.mutable_use_remote_address()->set_value(use_remote_address);
    proto.set_xff_num_trusted_hops(trusted_hops);
    return std::make_unique<ConnectionManagerConfig>(proto, "hcm", store_, 1, 1 << 20);
  }
  static http::HeaderMap request() {
    http::HeaderMap h;
    h.add(":method", "GET");
    h.add(":path", "/");
    h.add(":authority", "svc");
    return h;
  }

  stats::Store store_;
  const asio::ip::tcp::endpoint loopback_{asio::ip::make_address("127.0.0.1"), 5555};
  const asio::ip::tcp::endpoint external_{asio::ip::make_address("203.0.113.9"), 5555};
};

TEST_F(ForwardingHeadersTest, SidecarDefaultsKeepXffAndAddRequestIdAndProto) {
  auto c = config(false);
  auto h = request();
  h.add("x-forwarded-for", "198.51.100.1");
  h.add("connection", "keep-alive, x-custom");
  h.add("te", "gzip");
  const std::string downstream = applyForwardingHeaders(h, *c, loopback_, "127.0.0.1:5555");
  EXPECT_EQ(downstream,
            "198.51.100.1:0");  // zero trusted hops: the last entry is the client (port 0, as Envoy)
  EXPECT_EQ(h.getOr("x-forwarded-for"), "198.51.100.1");
  EXPECT_EQ(h.getOr("x-forwarded-proto"), "http");
  EXPECT_EQ(h.getOr(":scheme"), "http");
  EXPECT_EQ(h.getOr("x-request-id").size(), 36u);
  EXPECT_EQ(h.get("connection"), nullptr);
  EXPECT_EQ(h.get("te"), nullptr);
}

TEST_F(ForwardingHeadersTest, TrustedHopsPickTheEntryFromTheRight) {
  auto c = config(false, 1);
  auto h = request();
  h.add("x-forwarded-for", "198.51.100.1, 10.0.0.1,10.0.0.2");
  EXPECT_EQ(applyForwardingHeaders(h, *c, loopback_, "127.0.0.1:5555"), "10.0.0.1:0");
  auto short_list = request();
  short_list.add("x-forwarded-for", "10.0.0.2");
  EXPECT_EQ(applyForwardingHeaders(short_list, *c, loopback_, "127.0.0.1:5555"), "127.0.0.1:5555");
}

TEST_F(ForwardingHeadersTest, EdgeAppendsPeerAndRegeneratesExternalRequestIds) {
  auto c = config(true);
  auto h = request();
  h.add("x-forwarded-for", "198.51.100.1");
  h.add("x-request-id", "from-outside");
  h.add("x-envoy-internal", "true");
  h.add("x-forwarded-proto", "https");
  applyForwardingHeaders(h, *c, external_, "203.0.113.9:5555");
  EXPECT_EQ(h.getOr("x-forwarded-for"), "198.51.100.1,203.0.113.9");
  EXPECT_EQ(h.get("x-envoy-internal"), nullptr);  // an external peer cannot claim to be internal
  EXPECT_EQ(h.getOr("x-forwarded-proto"), "http");
  EXPECT_NE(h.getOr("x-request-id"), "from-outside");

  auto internal = request();
  internal.add("x-request-id", "kept");
  applyForwardingHeaders(internal, *c, loopback_, "127.0.0.1:5555");
  EXPECT_EQ(internal.getOr("x-envoy-internal"), "true");
  EXPECT_EQ(internal.getOr("x-request-id"), "kept");
}

TEST(InternalAddressTest, PrivateAndLoopbackRanges) {
  for (const char* a :
       {"127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "::1", "fd00::1"}) {
    EXPECT_TRUE(isInternalAddress(asio::ip::make_address(a))) << a;
  }
  for (const char* a : {"172.32.0.1", "8.8.8.8", "2001:db8::1", "192.169.0.1"}) {
    EXPECT_FALSE(isInternalAddress(asio::ip::make_address(a))) << a;
  }
}

}  // namespace
}  // namespace skiff::server
