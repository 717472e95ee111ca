// skiff-init entry point: parse istio-iptables flags, then dry-run, apply, check or clean up.
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "skiff/init/netlink.h"
#include "skiff/init/options.h"
#include "skiff/init/routing.h"
#include "skiff/init/ruleset.h"
#include "validation.h"

namespace {

constexpr int kExitUsage = 2;
constexpr int kExitValidationFailed = 126;  // istio-iptables' code for a failed validation

std::string readFile(const char* path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

int main(int argc, char** argv) {
  using namespace skiff::init;
  ParseResult parsed = parseOptions(std::vector<std::string>(argv + 1, argv + argc));
  if (!parsed.ok) {
    std::fprintf(stderr, "skiff-init: %s\n%s", parsed.error.c_str(), usage().c_str());
    return kExitUsage;
  }
  Options& o = parsed.options;
  if (o.help) {
    std::fputs(usage().c_str(), stdout);
    return 0;
  }
  if (o.redirectDns && !o.captureAllDns) {
    o.dnsServers = parseResolvConf(readFile("/etc/resolv.conf"));
    if (o.dnsServers.empty()) std::fprintf(stderr, "skiff-init: no nameserver in /etc/resolv.conf\n");
  }
  std::string error;
  if (o.cleanup) {
    if (!cleanupRuleset(&error) || !cleanupPolicyRouting(o.tproxyMark, o.routeTable, &error)) {
      std::fprintf(stderr, "skiff-init: cleanup failed: %s\n", error.c_str());
      return 1;
    }
    return 0;
  }
  Ruleset ruleset = buildRuleset(o);
  if (o.dryRun) {
    std::fputs(renderNft(ruleset).c_str(), stdout);
    if (o.mode == InterceptionMode::kTproxy) {
      std::printf(
          "# policy routing (rtnetlink, IPv4 and IPv6): fwmark %u lookup %u; local default dev lo table %u\n",
          o.tproxyMark, o.routeTable, o.routeTable);
    }
    return 0;
  }
  if (o.check) {
    std::vector<std::string> drift;
    if (!checkRuleset(ruleset, &drift, &error)) {
      std::fprintf(stderr, "skiff-init: check failed: %s\n", error.c_str());
      return 1;
    }
    for (const auto& line : drift) std::fprintf(stderr, "drift: %s\n", line.c_str());
    if (!drift.empty()) return 1;
    std::puts("in sync");
    return 0;
  }
  if (!o.skipRuleApply) {
    if (!applyRuleset(ruleset, &error)) {
      std::fprintf(stderr, "skiff-init: %s\n", error.c_str());
      return 1;
    }
    if (o.mode == InterceptionMode::kTproxy && !applyPolicyRouting(o.tproxyMark, o.routeTable, &error)) {
      std::fprintf(stderr, "skiff-init: %s\n", error.c_str());
      return 1;
    }
  }
  if (o.runValidation) {
    if (std::string why = validateRedirect(o); !why.empty()) {
      std::fprintf(stderr, "skiff-init: validation failed: %s\n", why.c_str());
      return kExitValidationFailed;
    }
    std::puts("validation passed: a probe connection was redirected");
  }
  return 0;
}
