// Flag parsing: istio-iptables names, defaults and errors that name the flag.
#include "skiff/init/options.h"

#include <gtest/gtest.h>

namespace skiff::init {
namespace {

ParseResult parse(std::vector<std::string> args) {
  return parseOptions(args);
}

TEST(InitOptionsTest, DefaultsMatchIstio) {
  auto r = parse({});
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.options.outboundPort, 15001);
  EXPECT_EQ(r.options.inboundPort, 15006);
  EXPECT_EQ(r.options.proxyUids, std::vector<uint32_t>{1337});
  EXPECT_EQ(r.options.proxyGids, std::vector<uint32_t>{1337});  // -g defaults to -u
  EXPECT_EQ(r.options.mode, InterceptionMode::kRedirect);
  EXPECT_FALSE(r.options.inboundAll);
  EXPECT_FALSE(r.options.outboundAll);
}

TEST(InitOptionsTest, InjectorCommandLine) {
  auto r = parse({"-p",
                  "15001",
                  "-z",
                  "15006",
                  "-u",
                  "1337",
                  "-m",
                  "REDIRECT",
                  "-i",
                  "*",
                  "-x",
                  "",
                  "-b",
                  "*",
                  "-d",
                  "15090,15021,15020",
                  "-o",
                  "25",
                  "-q",
                  "3306",
                  "-k",
                  "net1",
                  "--redirect-dns",
                  "--capture-all-dns",
                  "--dry-run"});
  ASSERT_TRUE(r.ok) << r.error;
  const Options& o = r.options;
  EXPECT_TRUE(o.outboundAll);
  EXPECT_TRUE(o.outboundExclude.empty());
  EXPECT_TRUE(o.inboundAll);
  EXPECT_EQ(o.inboundExcludePorts, (std::vector<uint16_t>{15090, 15021, 15020}));
  EXPECT_EQ(o.outboundExcludePorts, std::vector<uint16_t>{25});
  EXPECT_EQ(o.outboundIncludePorts, std::vector<uint16_t>{3306});
  EXPECT_EQ(o.virtualInterfaces, std::vector<std::string>{"net1"});
  EXPECT_TRUE(o.redirectDns && o.captureAllDns && o.dryRun);
}

TEST(InitOptionsTest, LongFormsAndAttachedValues) {
  auto r = parse(
      {"--envoy-port=16001", "-z16006", "--proxy-gid", "7,8", "--istio-service-cidr=10.0.0.0/8,fd00::/8"});
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.options.outboundPort, 16001);
  EXPECT_EQ(r.options.inboundPort, 16006);
  EXPECT_EQ(r.options.proxyGids, (std::vector<uint32_t>{7, 8}));
  ASSERT_EQ(r.options.outboundInclude.size(), 2u);
  EXPECT_EQ(r.options.outboundInclude[0].toString(), "10.0.0.0/8");
  EXPECT_TRUE(r.options.outboundInclude[1].v6);
}

TEST(InitOptionsTest, ErrorsNameTheFlag) {
  struct Case {
    std::vector<std::string> args;
    std::string prefix;
  };
  for (const auto& c : std::vector<Case>{{{"-i", "10.0.0.0/33"}, "-i:"},
                                         {{"-x", "banana"}, "-x:"},
                                         {{"-b", "80,http"}, "-b:"},
                                         {{"-d", "70000"}, "-d:"},
                                         {{"-o", "0"}, "-o:"},
                                         {{"--envoy-port=x"}, "--envoy-port:"},
                                         {{"-m", "BOGUS"}, "-m:"},
                                         {{"-p"}, "-p:"},
                                         {{"--nope"}, "unknown flag '--nope'"}}) {
    auto r = parse(c.args);
    EXPECT_FALSE(r.ok) << c.args[0];
    EXPECT_EQ(r.error.rfind(c.prefix, 0), 0u) << r.error;
  }
}

TEST(InitOptionsTest, TproxyFlags) {
  auto r = parse({"-m", "TPROXY", "-t", "99", "-r", "200"});
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.options.mode, InterceptionMode::kTproxy);
  EXPECT_EQ(r.options.tproxyMark, 99u);
  EXPECT_EQ(r.options.routeTable, 200u);
  EXPECT_FALSE(parse({"-t", "x"}).ok);
}

TEST(InitOptionsTest, ResolvConfNameservers) {
  auto ns =
      parseResolvConf("# c\nsearch x\nnameserver 10.96.0.10\nnameserver fe80::1%eth0\nnameserver bad\n");
  ASSERT_EQ(ns.size(), 2u);
  EXPECT_EQ(ns[0].toString(), "10.96.0.10/32");
  EXPECT_EQ(ns[1].toString(), "fe80::1/128");
}

TEST(InitOptionsTest, CidrHostBitsAreCleared) {
  auto c = parseCidr("10.1.2.3/16");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->toString(), "10.1.0.0/16");
  EXPECT_FALSE(parseCidr("1.2.3.4/"));
  EXPECT_FALSE(parseCidr("::1/129"));
}

}  // namespace
}  // namespace skiff::init
