// Rule order: the default flags and the include/exclude variants follow Istio's nftables output.
#include "skiff/init/ruleset.h"

#include <gtest/gtest.h>

#include "skiff/init/options.h"

namespace skiff::init {
namespace {

std::vector<std::string> rulesOf(const Ruleset& rs, const std::string& chain, size_t table = 0) {
  std::vector<std::string> out;
  for (const auto& r : rs.tables.at(table).rules) {
    if (r.chain == chain) out.push_back(renderRule(r));
  }
  return out;
}

Options optionsFor(std::vector<std::string> args) {
  auto r = parseOptions(args);
  EXPECT_TRUE(r.ok) << r.error;
  return r.options;
}

TEST(InitRulesetTest, DefaultFlagsOutputChain) {
  Ruleset rs = buildRuleset(optionsFor({}));
  ASSERT_EQ(rs.tables.size(), 1u);
  EXPECT_EQ(rs.tables[0].name, "skiff_nat");
  EXPECT_EQ(rulesOf(rs, "output"), std::vector<std::string>{"counter jump istio-output"});
  EXPECT_TRUE(rulesOf(rs, "prerouting").empty());
  EXPECT_EQ(rulesOf(rs, "istio-output"), (std::vector<std::string>{
                                             "oifname \"lo\" ip saddr 127.0.0.6/32 counter return",
                                             "oifname \"lo\" ip6 saddr ::6/128 counter return",
                                             "oifname \"lo\" meta l4proto tcp ip daddr != 127.0.0.1/32 tcp "
                                             "dport != 15008 meta skuid 1337 counter "
                                             "jump istio-in-redirect",
                                             "oifname \"lo\" meta l4proto tcp ip6 daddr != ::1/128 tcp dport "
                                             "!= 15008 meta skuid 1337 counter jump "
                                             "istio-in-redirect",
                                             "oifname \"lo\" meta skuid != 1337 counter return",
                                             "meta skuid 1337 counter return",
                                             "oifname \"lo\" meta l4proto tcp ip daddr != 127.0.0.1/32 tcp "
                                             "dport != 15008 meta skgid 1337 counter "
                                             "jump istio-in-redirect",
                                             "oifname \"lo\" meta l4proto tcp ip6 daddr != ::1/128 tcp dport "
                                             "!= 15008 meta skgid 1337 counter jump "
                                             "istio-in-redirect",
                                             "oifname \"lo\" meta skgid != 1337 counter return",
                                             "meta skgid 1337 counter return",
                                             "ip daddr 127.0.0.1/32 counter return",
                                             "ip6 daddr ::1/128 counter return",
                                         }));
  EXPECT_EQ(rulesOf(rs, "istio-redirect"),
            std::vector<std::string>{"meta l4proto tcp counter redirect to :15001"});
  EXPECT_EQ(rulesOf(rs, "istio-in-redirect"),
            std::vector<std::string>{"meta l4proto tcp counter redirect to :15006"});
}

TEST(InitRulesetTest, InboundWildcardWithExcludes) {
  Ruleset rs = buildRuleset(optionsFor({"-b", "*", "-d", "15090,15021", "-z", "16006"}));
  EXPECT_EQ(rulesOf(rs, "prerouting"),
            std::vector<std::string>{"meta l4proto tcp counter jump istio-inbound"});
  EXPECT_EQ(rulesOf(rs, "istio-inbound"), (std::vector<std::string>{
                                              "meta l4proto tcp tcp dport 15008 counter return",
                                              "meta l4proto tcp tcp dport 15090 counter return",
                                              "meta l4proto tcp tcp dport 15021 counter return",
                                              "meta l4proto tcp counter jump istio-in-redirect",
                                          }));
  EXPECT_EQ(rulesOf(rs, "istio-in-redirect"),
            std::vector<std::string>{"meta l4proto tcp counter redirect to :16006"});
}

TEST(InitRulesetTest, InboundExplicitPorts) {
  Ruleset rs = buildRuleset(optionsFor({"-b", "32000,31000"}));
  EXPECT_EQ(rulesOf(rs, "istio-inbound"),
            (std::vector<std::string>{
                "meta l4proto tcp tcp dport 15008 counter return",
                "meta l4proto tcp tcp dport 32000 counter jump istio-in-redirect",
                "meta l4proto tcp tcp dport 31000 counter jump istio-in-redirect",
            }));
}

TEST(InitRulesetTest, OutboundRangesPortsAndDns) {
  Ruleset rs = buildRuleset(optionsFor({"-i", "9.9.0.0/16", "-x", "1.1.0.0/16", "-o", "25", "-u", "3", "-g",
                                        "1", "--redirect-dns", "--capture-all-dns"}));
  auto out = rulesOf(rs, "istio-output");
  ASSERT_GE(out.size(), 6u);
  EXPECT_EQ(out[0], "meta l4proto tcp tcp dport 25 counter return");
  EXPECT_EQ(out[1], "meta l4proto udp udp dport 25 counter return");
  EXPECT_EQ(out[4],
            "oifname \"lo\" meta l4proto tcp ip daddr != 127.0.0.1/32 tcp dport != 53 tcp dport != 15008 "
            "meta skuid "
            "3 counter jump istio-in-redirect");
  EXPECT_EQ(out[6], "oifname \"lo\" meta l4proto tcp tcp dport != 53 meta skuid != 3 counter return");
  EXPECT_EQ(out[out.size() - 5], "counter jump istio-output-dns");
  EXPECT_EQ(out[out.size() - 2], "ip daddr 1.1.0.0/16 counter return");
  EXPECT_EQ(out.back(), "ip daddr 9.9.0.0/16 counter jump istio-redirect");
  // The DNS jump sits before the loopback returns, as in Istio's output.
  EXPECT_EQ(rulesOf(rs, "istio-output-dns"), (std::vector<std::string>{
                                                 "meta l4proto tcp tcp dport 53 counter redirect to :15053",
                                                 "meta l4proto udp udp dport 53 counter redirect to :15053",
                                             }));
}

TEST(InitRulesetTest, DryRunScriptReplacesTheTable) {
  std::string text = renderNft(buildRuleset(optionsFor({"-i", "*", "-b", "*"})));
  EXPECT_EQ(
      text.rfind("add table inet skiff_nat\ndelete table inet skiff_nat\nadd table inet skiff_nat\n", 0), 0u);
  EXPECT_NE(text.find("add chain inet skiff_nat prerouting { type nat hook prerouting priority -100 ; }"),
            std::string::npos);
  EXPECT_NE(text.find("add rule inet skiff_nat istio-output counter jump istio-redirect\n"),
            std::string::npos);
}

TEST(InitRulesetTest, TproxyMovesInboundToMangle) {
  Ruleset rs = buildRuleset(optionsFor({"-m", "TPROXY", "-b", "32000", "-t", "77", "-z", "16006"}));
  ASSERT_EQ(rs.tables.size(), 2u);
  EXPECT_EQ(rs.tables[1].name, "skiff_mangle");
  EXPECT_TRUE(rulesOf(rs, "prerouting").empty());  // no nat inbound capture
  EXPECT_EQ(rulesOf(rs, "istio-inbound", 1),
            (std::vector<std::string>{
                "meta l4proto tcp meta mark 77 counter return",
                "iifname \"lo\" meta l4proto tcp ip saddr 127.0.0.6/32 counter return",
                "iifname \"lo\" meta l4proto tcp ip6 saddr ::6/128 counter return",
                "iifname \"lo\" meta l4proto tcp meta mark != 1338 counter return",
                "meta l4proto tcp ct state related,established tcp dport 32000 counter jump istio-divert",
                "meta l4proto tcp tcp dport 32000 counter jump istio-tproxy",
            }));
  EXPECT_EQ(
      rulesOf(rs, "istio-tproxy", 1),
      (std::vector<std::string>{
          "meta l4proto tcp ip daddr != 127.0.0.1/32 counter tproxy ip to :16006 meta mark set 77 accept",
          "meta l4proto tcp ip6 daddr != ::1/128 counter tproxy ip6 to :16006 meta mark set 77 accept",
      }));
  EXPECT_EQ(rulesOf(rs, "istio-divert", 1),
            (std::vector<std::string>{"counter meta mark set 77", "counter accept"}));
  EXPECT_EQ(rulesOf(rs, "prerouting", 1),
            (std::vector<std::string>{"meta l4proto tcp counter jump istio-inbound",
                                      "meta l4proto tcp meta mark 77 counter ct mark set meta mark"}));
  auto output = rulesOf(rs, "output", 1);
  ASSERT_EQ(output.size(), 6u);
  EXPECT_EQ(
      output[1],
      "oifname \"lo\" meta l4proto tcp ip daddr != 127.0.0.1/32 meta skuid 1337 counter meta mark set 1338");
  EXPECT_EQ(output.back(), "meta l4proto tcp ct mark 77 counter meta mark set ct mark");
}

}  // namespace
}  // namespace skiff::init
