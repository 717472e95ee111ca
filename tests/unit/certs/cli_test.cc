// The skiff-certs command line through runCli: usage errors, exit codes, output of inspect and renew.
#include <gtest/gtest.h>

#include <sstream>

#include "skiff/certs/cli.h"
#include "skiff/certs/pem.h"
#include "test_util.h"

namespace skiff::certs {
namespace {

using testing::ScratchDir;

struct CliRun {
  int code;
  std::string out, err;
};

CliRun run(std::vector<std::string> args) {
  std::ostringstream out, err;
  int code = runCli(args, out, err);
  return CliRun{code, out.str(), err.str()};
}

TEST(CertsCliTest, ParseDuration) {
  EXPECT_EQ(parseDuration("90s"), std::chrono::seconds(90));
  EXPECT_EQ(parseDuration("30m"), std::chrono::seconds(1800));
  EXPECT_EQ(parseDuration("24h"), std::chrono::seconds(86400));
  EXPECT_EQ(parseDuration("7d"), std::chrono::seconds(7 * 86400));
  EXPECT_EQ(parseDuration("1h30m"), std::chrono::seconds(5400));
  EXPECT_EQ(parseDuration("45"), std::chrono::seconds(45));
  for (const char* bad : {"", "h", "1x", "-1h", "1.5h", "99999999999999999999d"}) {
    EXPECT_FALSE(parseDuration(bad).has_value()) << bad;
  }
}

TEST(CertsCliTest, UsageErrorsExitTwo) {
  EXPECT_EQ(run({}).code, kExitUsage);
  EXPECT_EQ(run({"frobnicate"}).code, kExitUsage);
  EXPECT_EQ(run({"ca"}).code, kExitUsage);
  EXPECT_EQ(run({"ca", "init"}).code, kExitUsage);
  EXPECT_EQ(run({"ca", "init", "--out"}).code, kExitUsage);
  EXPECT_EQ(run({"ca", "init", "--out", "/tmp/x", "--bogus"}).code, kExitUsage);
  EXPECT_EQ(run({"ca", "init", "--out", "/tmp/x", "--days", "ten"}).code, kExitUsage);
  EXPECT_EQ(run({"workload", "--ca-dir", "a", "--out", "b"}).code, kExitUsage);
  EXPECT_EQ(run({"workload", "--ca-dir", "a", "--out", "b", "--ns", "x"}).code, kExitUsage);
  EXPECT_EQ(run({"workload", "--ca-dir", "a", "--out", "b", "--spiffe", "spiffe://td/x", "--days", "1",
                 "--hours", "2"})
                .code,
            kExitUsage);
  EXPECT_EQ(run({"workload", "--ca-dir", "a", "--out", "b", "--spiffe", "not-spiffe"}).code, kExitUsage);
  EXPECT_EQ(run({"renew", "--dir", "x"}).code, kExitUsage);
  EXPECT_EQ(run({"inspect"}).code, kExitUsage);
  CliRun help = run({"help"});
  EXPECT_EQ(help.code, kExitOk);
  EXPECT_NE(help.out.find("skiff-certs"), std::string::npos);
}

TEST(CertsCliTest, EndToEnd) {
  ScratchDir tmp;
  std::string root = tmp / "root", inter = tmp / "inter", w = tmp / "w";
  CliRun r = run({"ca", "init", "--out", root, "--trust-domain", "example.org"});
  ASSERT_EQ(r.code, 0) << r.err;
  r = run({"ca", "init", "--out", root});
  EXPECT_EQ(r.code, kExitError);
  EXPECT_NE(r.err.find("ca-key.pem"), std::string::npos);
  r = run({"ca", "intermediate", "--ca-dir", root, "--out", inter});
  ASSERT_EQ(r.code, 0) << r.err;
  r = run({"workload", "--ca-dir", inter, "--out", w, "--ns", "shop", "--sa", "cart", "--dns", "cart.shop",
           "--ip", "127.0.0.1", "--hours", "3"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("spiffe://example.org/ns/shop/sa/cart"), std::string::npos)
      << r.out;  // the CA's domain

  r = run({"inspect", w + "/cert-chain.pem"});
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* line :
       {"subject: (empty)", "uri: spiffe://example.org/ns/shop/sa/cart", "dns: cart.shop", "ip: 127.0.0.1",
        "san_critical: true", "key: EC P-256", "ca: false", "chain_length: 2", "chain: ok"}) {
    EXPECT_NE(r.out.find(std::string(line) + "\n"), std::string::npos) << line << "\n" << r.out;
  }

  r = run({"renew", "--ca-dir", inter, "--dir", w, "--before", "1h"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("not due: ", 0), 0u) << r.out;
  r = run({"renew", "--ca-dir", inter, "--dir", w, "--before", "4h"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("renewed ", 0), 0u) << r.out;
}

TEST(CertsCliTest, InspectBadPemNamesTheFile) {
  ScratchDir tmp;
  std::string bad = tmp / "bad.pem";
  ASSERT_TRUE(writeNewFile(bad, "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n", 0644).ok());
  CliRun r = run({"inspect", bad});
  EXPECT_EQ(r.code, kExitError);
  EXPECT_EQ(r.err.rfind("skiff-certs: " + bad + ": ", 0), 0u) << r.err;
  r = run({"inspect", tmp / "missing.pem"});
  EXPECT_EQ(r.code, kExitError);
  EXPECT_NE(r.err.find("No such file or directory"), std::string::npos);
}

}  // namespace
}  // namespace skiff::certs
