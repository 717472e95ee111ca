// DnsResolver: real c-ares lookups on an asio loop (hosts file, literals, failures, families).
#include "skiff/upstream/dns_resolver.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace skiff::upstream {
namespace {

struct Result {
  bool done = false;
  DnsStatus status = DnsStatus::kFailure;
  std::vector<std::string> addresses;
};

DnsResolver::Callback capture(Result& r) {
  return [&r](DnsStatus status, std::vector<DnsResponse> responses) {
    r.done = true;
    r.status = status;
    for (const auto& response : responses) r.addresses.push_back(response.address.to_string());
  };
}

DnsResolverOptions fastFailure() {
  DnsResolverOptions options;
  options.timeout_ms = 300;
  options.tries = 1;
  return options;
}

TEST(DnsResolverTest, ResolvesHostsFileName) {
  asio::io_context loop;
  DnsResolver resolver(loop, fastFailure());
  Result r;
  resolver.resolve("localhost", DnsLookupFamily::kV4Only, capture(r));
  EXPECT_FALSE(r.done);  // never inline
  ASSERT_TRUE(test::runUntil(loop, [&] { return r.done; }));
  EXPECT_EQ(r.status, DnsStatus::kSuccess);
  EXPECT_EQ(r.addresses, std::vector<std::string>{"127.0.0.1"});
}

TEST(DnsResolverTest, AutoFallsBackToIpv4) {
  asio::io_context loop;
  DnsResolver resolver(loop, fastFailure());
  Result r;
  resolver.resolve("localhost", DnsLookupFamily::kAuto, capture(r));
  ASSERT_TRUE(test::runUntil(loop, [&] { return r.done; }));
  EXPECT_EQ(r.status, DnsStatus::kSuccess);
  ASSERT_FALSE(r.addresses.empty());
}

TEST(DnsResolverTest, IpLiterals) {
  asio::io_context loop;
  DnsResolver resolver(loop);
  Result v4, v6, mismatch;
  resolver.resolve("10.1.2.3", DnsLookupFamily::kAuto, capture(v4));
  resolver.resolve("::1", DnsLookupFamily::kAuto, capture(v6));
  resolver.resolve("10.1.2.3", DnsLookupFamily::kV6Only, capture(mismatch));
  ASSERT_TRUE(test::runUntil(loop, [&] { return v4.done && v6.done && mismatch.done; }));
  EXPECT_EQ(v4.addresses, std::vector<std::string>{"10.1.2.3"});
  EXPECT_EQ(v6.addresses, std::vector<std::string>{"::1"});
  EXPECT_EQ(mismatch.status, DnsStatus::kFailure);
}

TEST(DnsResolverTest, UnresolvableNameFails) {
  asio::io_context loop;
  DnsResolver resolver(loop, fastFailure());
  Result r;
  resolver.resolve("skiff-does-not-exist.invalid", DnsLookupFamily::kV4Only, capture(r));
  ASSERT_TRUE(test::runUntil(loop, [&] { return r.done; }));
  EXPECT_EQ(r.status, DnsStatus::kFailure);
  EXPECT_TRUE(r.addresses.empty());
}

TEST(DnsResolverTest, UsesConfiguredServerAndFamilies) {
  asio::io_context loop;
  test::FakeDnsServer server(loop);
  server.ipv4 = {{192, 0, 2, 7}, {192, 0, 2, 8}};
  DnsResolverOptions options = fastFailure();
  options.servers_csv = "127.0.0.1:" + std::to_string(server.port());
  DnsResolver resolver(loop, options);
  Result all, v4pref;
  resolver.resolve("svc.skiff.test", DnsLookupFamily::kAll, capture(all));
  resolver.resolve("svc.skiff.test", DnsLookupFamily::kV4Preferred, capture(v4pref));
  ASSERT_TRUE(test::runUntil(loop, [&] { return all.done && v4pref.done; }));
  EXPECT_EQ(all.addresses, (std::vector<std::string>{"192.0.2.7", "192.0.2.8"}));
  EXPECT_EQ(v4pref.addresses, (std::vector<std::string>{"192.0.2.7", "192.0.2.8"}));
  EXPECT_GE(server.queries, 2);
}

TEST(DnsResolverTest, DestroyingDropsPendingCallbacks) {
  asio::io_context loop;
  bool called = false;
  {
    DnsResolver resolver(loop, fastFailure());
    resolver.resolve("localhost", DnsLookupFamily::kV4Only,
                     [&](DnsStatus, std::vector<DnsResponse>) { called = true; });
  }
  loop.run_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(called);
}

TEST(DnsResolverTest, BadServerListThrows) {
  asio::io_context loop;
  DnsResolverOptions options;
  options.servers_csv = "not a server";
  EXPECT_THROW(DnsResolver(loop, options), std::runtime_error);
}

}  // namespace
}  // namespace skiff::upstream
