// FilterChainMatcher: Envoy's precedence (port, destination IP, SNI, transport, ALPN, source...) and errors.
#include <gtest/gtest.h>

// Cases spell out only the connection fields they care about.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#include "server/filter_chain.h"
#include "skiff/config/yaml_to_proto.h"

namespace skiff::server {
namespace {

using Match = envoy::config::listener::v3::FilterChainMatch;

std::vector<Match> parse(const std::vector<std::string>& yamls) {
  std::vector<Match> out;
  for (const auto& y : yamls) {
    Match m;
    std::vector<std::string> warnings;
    if (!y.empty()) config::loadMessageYaml(y, m, warnings);
    out.push_back(m);
  }
  return out;
}

FilterChainMatcher build(const std::vector<Match>& matches) {
  std::vector<const Match*> ptrs;
  std::vector<std::string> paths;
  for (size_t i = 0; i < matches.size(); ++i) {
    ptrs.push_back(&matches[i]);
    paths.push_back("listener.filter_chains[" + std::to_string(i) + "].filter_chain_match");
  }
  return FilterChainMatcher(ptrs, paths);
}

struct Conn {
  std::string local = "10.0.0.1:80";
  std::string remote = "10.0.0.9:40000";
  std::string sni;
  std::string transport = "raw_buffer";
  std::vector<std::string> alpn;
};

network::ConnectionInfo info(const Conn& c) {
  auto ep = [](const std::string& s) {
    const auto colon = s.rfind(':');
    std::string host = s.substr(0, colon);
    if (host.front() == '[') host = host.substr(1, host.size() - 2);
    return asio::ip::tcp::endpoint(asio::ip::make_address(host),
                                   static_cast<uint16_t>(std::stoi(s.substr(colon + 1))));
  };
  network::ConnectionInfo i;
  i.local = ep(c.local);
  i.remote = ep(c.remote);
  i.server_name = c.sni;
  i.transport_protocol = c.transport;
  i.application_protocols = c.alpn;
  return i;
}

struct Case {
  const char* name;
  std::vector<std::string> chains;  // YAML filter_chain_match per chain ("" = match anything)
  Conn conn;
  int expected;  // chain index, -1 = no match
};

class FilterChainMatchTest : public ::testing::TestWithParam<Case> {};

TEST_P(FilterChainMatchTest, PicksEnvoysChain) {
  const Case& c = GetParam();
  const auto matches = parse(c.chains);
  const auto matcher = build(matches);
  const auto got = matcher.match(info(c.conn));
  EXPECT_EQ(got ? static_cast<int>(*got) : -1, c.expected) << c.name;
}

const Case kCases[] = {
    {"empty match takes everything", {""}, {}, 0},
    {"exact port beats no port", {"", "destination_port: 80"}, {}, 1},
    {"other port falls back to the portless chain", {"", "destination_port: 81"}, {}, 0},
    {"port wins even if later criteria then fail (no backtracking)",
     {"", "{destination_port: 80, transport_protocol: tls}"},
     {},
     -1},
    {"longest destination prefix wins",
     {"prefix_ranges: [{address_prefix: 10.0.0.0, prefix_len: 8}]",
      "prefix_ranges: [{address_prefix: 10.0.0.0, prefix_len: 24}]"},
     {},
     1},
    {"explicit 0.0.0.0/0 beats no prefix",
     {"", "prefix_ranges: [{address_prefix: 0.0.0.0, prefix_len: 0}]"},
     {},
     1},
    {"destination prefix that misses is pruned",
     {"prefix_ranges: [{address_prefix: 192.168.0.0, prefix_len: 16}]"},
     {},
     -1},
    {"IPv6 destination prefix",
     {"prefix_ranges: [{address_prefix: '2001:db8::', prefix_len: 32}]", ""},
     {.local = "[2001:db8::5]:80"},
     0},
    {"exact SNI beats wildcard",
     {"server_names: ['*.example.com']", "server_names: [www.example.com]"},
     {.sni = "www.example.com", .transport = "tls"},
     1},
    {"longer wildcard beats shorter",
     {"server_names: ['*.com']", "server_names: ['*.example.com']"},
     {.sni = "a.b.example.com", .transport = "tls"},
     1},
    {"wildcard needs a label before the suffix",
     {"server_names: ['*.example.com']"},
     {.sni = "example.com"},
     -1},
    {"no SNI skips SNI chains", {"server_names: [a.com]", ""}, {}, 1},
    {"SNI is matched case-insensitively", {"server_names: [WWW.Example.COM]"}, {.sni = "www.example.com"}, 0},
    {"SNI precedes transport protocol",
     {"transport_protocol: tls", "server_names: [a.com]"},
     {.sni = "a.com", .transport = "tls"},
     1},
    {"transport protocol exact beats unset",
     {"", "transport_protocol: tls", "transport_protocol: raw_buffer"},
     {.transport = "tls"},
     1},
    {"ALPN any-of", {"application_protocols: [h2, http/1.1]", ""}, {.alpn = {"http/1.1"}}, 0},
    {"ALPN mismatch falls back to unset", {"application_protocols: [h2]", ""}, {.alpn = {"http/1.1"}}, 1},
    {"the client's first ALPN that some chain lists wins",
     {"application_protocols: [http/1.1]", "application_protocols: [h2]"},
     {.alpn = {"h2", "http/1.1"}},
     1},
    {"a later client ALPN still beats an unset chain",
     {"", "application_protocols: [http/1.1]"},
     {.alpn = {"h2", "http/1.1"}},
     1},
    {"Istio inbound: raw http chain",
     {"destination_port: 15006",
      "{prefix_ranges: [{address_prefix: 0.0.0.0, prefix_len: 0}], transport_protocol: raw_buffer, "
      "application_protocols: [http/1.1, h2c]}",
      "{prefix_ranges: [{address_prefix: 0.0.0.0, prefix_len: 0}], transport_protocol: raw_buffer}",
      "{destination_port: 80, transport_protocol: raw_buffer}"},
     {.local = "10.1.1.1:9080", .alpn = {"http/1.1"}},
     1},
    {"Istio inbound: plain TCP chain",
     {"destination_port: 15006",
      "{prefix_ranges: [{address_prefix: 0.0.0.0, prefix_len: 0}], transport_protocol: raw_buffer, "
      "application_protocols: [http/1.1, h2c]}",
      "{prefix_ranges: [{address_prefix: 0.0.0.0, prefix_len: 0}], transport_protocol: raw_buffer}"},
     {.local = "10.1.1.1:9080"},
     2},
    {"Istio inbound: the port chain",
     {"destination_port: 15006", "{destination_port: 80, transport_protocol: raw_buffer}", ""},
     {.local = "10.1.1.1:80"},
     1},
    {"source type local (loopback)", {"source_type: SAME_IP_OR_LOOPBACK", ""}, {.remote = "127.0.0.1:5"}, 0},
    {"source type local (same IP)",
     {"source_type: EXTERNAL", "source_type: SAME_IP_OR_LOOPBACK"},
     {.remote = "10.0.0.1:5"},
     1},
    {"source type external", {"source_type: SAME_IP_OR_LOOPBACK", "source_type: EXTERNAL"}, {}, 1},
    {"source prefix", {"source_prefix_ranges: [{address_prefix: 10.0.0.0, prefix_len: 24}]", ""}, {}, 0},
    {"direct source precedes source type",
     {"direct_source_prefix_ranges: [{address_prefix: 10.0.0.9}]", "source_type: EXTERNAL"},
     {},
     0},
    {"source port", {"source_ports: [1, 40000]", "source_ports: [2]"}, {}, 0},
    {"source port miss", {"source_ports: [2]"}, {}, -1},
};

// Named by index (the failure message prints the case name): stable CTest names across builds.
INSTANTIATE_TEST_SUITE_P(Table, FilterChainMatchTest, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return "case" + std::to_string(info.index);
                         });

TEST(FilterChainMatcherErrors, DuplicateMatchNamesTheChain) {
  const auto matches =
      parse({"{destination_port: 80, server_names: [a, b]}", "{server_names: [b, a], destination_port: 80}"});
  try {
    build(matches);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("listener.filter_chains[1].filter_chain_match"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("same filter_chain_match"), std::string::npos) << e.what();
  }
}

TEST(FilterChainMatcherErrors, BadPrefixNamesTheField) {
  const auto matches = parse({"prefix_ranges: [{address_prefix: 10.0.0.0, prefix_len: 33}]"});
  EXPECT_THROW(
      {
        try {
          build(matches);
        } catch (const std::invalid_argument& e) {
          EXPECT_NE(std::string(e.what()).find("prefix_ranges[0].prefix_len"), std::string::npos) << e.what();
          throw;
        }
      },
      std::invalid_argument);
  const auto bad_ip = parse({"source_prefix_ranges: [{address_prefix: nope}]"});
  EXPECT_THROW(build(bad_ip), std::invalid_argument);
  const auto bad_sni = parse({"server_names: ['a.*.com']"});
  EXPECT_THROW(build(bad_sni), std::invalid_argument);
}

}  // namespace
}  // namespace skiff::server
