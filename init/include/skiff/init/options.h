// skiff-init command line: istio-iptables' flags, names and meanings.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "skiff/init/ruleset.h"

namespace skiff::init {

enum class InterceptionMode { kRedirect, kTproxy };

struct Options {
  uint16_t outboundPort = 15001;  // -p
  uint16_t inboundPort = 15006;   // -z
  uint16_t tunnelPort = 15008;    // -e, never captured inbound
  uint16_t dnsPort = 15053;
  uint32_t tproxyMark = 1337;             // -t
  uint32_t routeTable = 133;              // -r
  uint32_t outboundMark = 1338;           // proxy-to-app over lo in TPROXY mode
  std::vector<uint32_t> proxyUids{1337};  // -u
  std::vector<uint32_t> proxyGids;        // -g; empty means "same as -u"
  InterceptionMode mode = InterceptionMode::kRedirect;
  bool inboundAll = false;                     // -b '*'
  std::vector<uint16_t> inboundPorts;          // -b list
  std::vector<uint16_t> inboundExcludePorts;   // -d (only with -b '*')
  bool outboundAll = false;                    // -i '*'
  std::vector<Cidr> outboundInclude;           // -i list
  std::vector<Cidr> outboundExclude;           // -x
  std::vector<uint16_t> outboundExcludePorts;  // -o
  std::vector<uint16_t> outboundIncludePorts;  // -q
  std::vector<std::string> virtualInterfaces;  // -k
  std::vector<std::string> excludeInterfaces;  // -c
  bool redirectDns = false;
  bool captureAllDns = false;
  std::vector<Cidr> dnsServers;  // resolv.conf nameservers, filled by the caller when needed
  bool dryRun = false;
  bool cleanup = false;
  bool check = false;
  bool help = false;
  bool runValidation = false;      // --run-validation: prove a connection is redirected (exit 126 if not)
  bool skipRuleApply = false;      // --skip-rule-apply: validate only (rules installed by someone else)
  uint16_t probePort = 15002;      // --iptables-probe-port: original port the validation probe dials
  uint32_t probeTimeoutMs = 5000;  // --probe-timeout (Go duration: 5s, 500ms, 1m)
};

struct ParseResult {
  bool ok = false;
  std::string error;  // names the offending flag
  Options options;
};

// Parses argv (without the program name). Never touches the system.
ParseResult parseOptions(const std::vector<std::string>& args);

// "nameserver" lines of a resolv.conf text, as host CIDRs; unparsable entries are skipped.
std::vector<Cidr> parseResolvConf(const std::string& text);

std::string usage();

}  // namespace skiff::init
