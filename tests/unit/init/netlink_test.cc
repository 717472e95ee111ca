// Netlink round trip inside a private network namespace (root only): apply, check, drift, cleanup.
#include "skiff/init/netlink.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>

#include "skiff/init/options.h"

namespace skiff::init {
namespace {

Ruleset rulesetFor(std::vector<std::string> args) {
  return buildRuleset(parseOptions(args).options);
}

// Runs `body` in a forked child inside a fresh network namespace; returns its exit code.
int inFreshNetns(const std::function<int()>& body) {
  pid_t pid = fork();
  if (pid == 0) {
    if (unshare(CLONE_NEWNET) != 0) _exit(100);
    _exit(body());
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 200;
}

constexpr int kUnsupported = 77;

// Applies `rs`; a kernel without the needed nf_tables modules makes the child exit kUnsupported.
int applyOrUnsupported(const Ruleset& rs, int failure) {
  std::string error;
  if (applyRuleset(rs, &error)) return 0;
  bool missing =
      error.find("No such file") != std::string::npos || error.find("not supported") != std::string::npos;
  return missing ? kUnsupported : failure;
}

class InitNetlinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to create a network namespace";
    if (inFreshNetns([] { return 0; }) != 0) GTEST_SKIP() << "unshare(CLONE_NEWNET) is not permitted here";
    if (inFreshNetns([] { return applyOrUnsupported(rulesetFor({}), 1); }) == kUnsupported) {
      GTEST_SKIP() << "this kernel lacks nf_tables nat support";
    }
  }
};

TEST_F(InitNetlinkTest, ApplyThenCheckIsInSync) {
  int rc = inFreshNetns([] {
    Ruleset rs = rulesetFor({"-i", "*", "-b", "*", "-d", "15020", "-x", "10.0.0.0/8,fd00::/8",
                             "--redirect-dns", "--capture-all-dns"});
    std::string error;
    if (!applyRuleset(rs, &error)) return 1;
    if (!applyRuleset(rs, &error)) return 2;  // replacing is idempotent
    std::vector<std::string> drift;
    if (!checkRuleset(rs, &drift, &error)) return 3;
    return drift.empty() ? 0 : 4;
  });
  EXPECT_EQ(rc, 0);
}

TEST_F(InitNetlinkTest, TproxyTablesRoundTrip) {
  int rc = inFreshNetns([] {
    Ruleset rs = rulesetFor({"-m", "TPROXY", "-b", "*", "-d", "15020", "-i", "*"});
    std::string error;
    if (int rc = applyOrUnsupported(rs, 1); rc != 0) return rc;
    std::vector<std::string> drift;
    if (!checkRuleset(rs, &drift, &error)) return 2;
    if (!drift.empty()) return 3;
    if (!checkRuleset(rulesetFor({"-m", "TPROXY", "-b", "*", "-i", "*"}), &drift, &error) || drift.empty())
      return 4;
    return 0;
  });
  if (rc == kUnsupported) GTEST_SKIP() << "this kernel lacks nftables tproxy";
  EXPECT_EQ(rc, 0);
}

TEST_F(InitNetlinkTest, CheckReportsDriftAndMissingTables) {
  int rc = inFreshNetns([] {
    std::string error;
    std::vector<std::string> drift;
    Ruleset applied = rulesetFor({"-i", "*"});
    if (!checkRuleset(applied, &drift, &error) || drift.empty()) return 1;  // nothing installed yet
    if (!applyRuleset(applied, &error)) return 2;
    if (!checkRuleset(rulesetFor({"-i", "*", "-o", "25"}), &drift, &error) || drift.empty()) return 3;
    if (!checkRuleset(rulesetFor({"-i", "*", "-p", "16001"}), &drift, &error) || drift.empty()) return 4;
    return 0;
  });
  EXPECT_EQ(rc, 0);
}

TEST_F(InitNetlinkTest, CleanupIsIdempotent) {
  int rc = inFreshNetns([] {
    std::string error;
    if (!cleanupRuleset(&error)) return 1;  // nothing there yet
    Ruleset rs = rulesetFor({});
    if (!applyRuleset(rs, &error)) return 2;
    if (!cleanupRuleset(&error)) return 3;
    std::vector<std::string> drift;
    if (!checkRuleset(rs, &drift, &error) || drift.empty()) return 4;  // gone
    return 0;
  });
  EXPECT_EQ(rc, 0);
}

}  // namespace
}  // namespace skiff::init
