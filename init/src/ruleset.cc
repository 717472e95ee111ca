// Builds Istio's capture rule order as data (Ruleset) from the flags; CIDR parsing.
#include "skiff/init/ruleset.h"

#include <arpa/inet.h>

#include "skiff/init/options.h"

namespace skiff::init {

std::optional<Cidr> parseCidr(const std::string& text) {
  Cidr c;
  std::string addr = text;
  int prefix = -1;
  if (auto slash = text.find('/'); slash != std::string::npos) {
    addr = text.substr(0, slash);
    std::string p = text.substr(slash + 1);
    if (p.empty() || p.size() > 3 || p.find_first_not_of("0123456789") != std::string::npos)
      return std::nullopt;
    prefix = std::stoi(p);
  }
  if (inet_pton(AF_INET, addr.c_str(), c.addr.data()) == 1) {
    c.v6 = false;
    c.prefix = prefix < 0 ? 32 : prefix;
    if (c.prefix > 32) return std::nullopt;
  } else if (inet_pton(AF_INET6, addr.c_str(), c.addr.data()) == 1) {
    c.v6 = true;
    c.prefix = prefix < 0 ? 128 : prefix;
    if (c.prefix > 128) return std::nullopt;
  } else {
    return std::nullopt;
  }
  // Clear host bits so the kernel compare (addr & mask == net) means what the text says.
  int bytes = c.v6 ? 16 : 4;
  for (int i = 0; i < bytes; ++i) {
    int bits = c.prefix - i * 8;
    uint8_t mask = bits >= 8 ? 0xff : bits <= 0 ? 0 : static_cast<uint8_t>(0xff << (8 - bits));
    c.addr[i] &= mask;
  }
  return c;
}

std::string Cidr::toString() const {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(v6 ? AF_INET6 : AF_INET, addr.data(), buf, sizeof(buf));
  return std::string(buf) + "/" + std::to_string(prefix);
}

namespace {

constexpr uint32_t kTcp = 6;
constexpr uint32_t kUdp = 17;

Match make(MatchKind kind, bool negate, const std::string& name = "", uint32_t value = 0,
           const Cidr& cidr = {}) {
  return Match{kind, negate, name, value, cidr};
}
Match oif(const std::string& name) {
  return make(MatchKind::kOifName, false, name);
}
Match iif(const std::string& name) {
  return make(MatchKind::kIifName, false, name);
}
Match proto(uint32_t p) {
  return make(MatchKind::kL4Proto, false, "", p);
}
Match tcpDport(uint32_t port, bool negate = false) {
  return make(MatchKind::kTcpDport, negate, "", port);
}
Match udpDport(uint32_t port) {
  return make(MatchKind::kUdpDport, false, "", port);
}
Match owner(bool gid, uint32_t id, bool negate = false) {
  return make(gid ? MatchKind::kSkGid : MatchKind::kSkUid, negate, "", id);
}
Match addr(bool dst, const Cidr& cidr, bool negate = false) {
  return make(dst ? MatchKind::kDaddr : MatchKind::kSaddr, negate, "", 0, cidr);
}
Chain chain(const std::string& name, const std::string& hook = "") {
  Chain c;
  c.name = name;
  c.hook = hook;
  return c;
}
Cidr cidr(const char* text) {
  return *parseCidr(text);
}

class Builder {
 public:
  explicit Builder(Table* table) : table_(table) {}
  void add(const std::string& chain, std::vector<Match> matches, VerdictKind verdict,
           const std::string& target = "", uint16_t port = 0) {
    Rule r;
    r.chain = chain;
    r.matches = std::move(matches);
    r.verdict = verdict;
    r.target = target;
    r.port = port;
    table_->rules.push_back(std::move(r));
  }
  void ret(const std::string& chain, std::vector<Match> m) { add(chain, std::move(m), VerdictKind::kReturn); }
  void jump(const std::string& chain, std::vector<Match> m, const std::string& to) {
    add(chain, std::move(m), VerdictKind::kJump, to);
  }

 private:
  Table* table_;
};

// The lo / owner rules of istio-output for one proxy uid or gid (Istio's steps 3-5).
void addOwnerRules(Builder& b, bool gid, uint32_t id, bool dns, uint16_t tunnelPort) {
  static const Cidr kLoop4 = cidr("127.0.0.1/32");
  static const Cidr kLoop6 = cidr("::1/128");
  for (const Cidr* loop : {&kLoop4, &kLoop6}) {
    // The proxy calling its own pod IP over lo goes back through the inbound listener.
    std::vector<Match> m{oif("lo"), proto(kTcp), addr(true, *loop, true)};
    if (dns && !gid) m.push_back(tcpDport(53, true));  // Istio's golden output skips 53 for uids only
    m.push_back(tcpDport(tunnelPort, true));
    m.push_back(owner(gid, id));
    b.jump("istio-output", m, "istio-in-redirect");
  }
  // App-to-app over loopback is not captured.
  if (dns) {
    b.ret("istio-output", {oif("lo"), proto(kTcp), tcpDport(53, true), owner(gid, id, true)});
  } else {
    b.ret("istio-output", {oif("lo"), owner(gid, id, true)});
  }
  // The proxy's own egress is never captured.
  b.ret("istio-output", {owner(gid, id)});
}

Match mark(uint32_t value, bool negate = false) {
  return make(MatchKind::kMark, negate, "", value);
}
Match ctMark(uint32_t value) {
  return make(MatchKind::kCtMark, false, "", value);
}
Match ctEstablished() {
  return make(MatchKind::kCtState, false);
}

Rule statement(const std::string& chain, std::vector<Match> matches, VerdictKind kind,
               uint32_t markValue = 0) {
  Rule r;
  r.chain = chain;
  r.matches = std::move(matches);
  r.verdict = kind;
  r.mark = markValue;
  return r;
}

// TPROXY inbound capture (Istio's mangle rules): marked packets are routed locally via table -r.
Table buildMangle(const Options& o, bool inbound) {
  Table t;
  t.name = kMangleTable;
  Chain pre = chain("prerouting", "prerouting"), out = chain("output", "output");
  pre.type = "filter";
  out.type = "route";
  pre.priority = out.priority = -150;
  t.chains = {pre, out, chain("istio-divert"), chain("istio-tproxy"), chain("istio-inbound")};
  Builder b(&t);
  auto& rules = t.rules;
  for (const auto& nic : o.excludeInterfaces) {
    b.ret("prerouting", {iif(nic)});
    b.ret("output", {oif(nic)});
  }
  rules.push_back(statement("istio-divert", {}, VerdictKind::kSetMark, o.tproxyMark));
  b.add("istio-divert", {}, VerdictKind::kAccept);
  for (bool v6 : {false, true}) {
    Rule r = statement("istio-tproxy", {proto(kTcp), addr(true, cidr(v6 ? "::1/128" : "127.0.0.1/32"), true)},
                       VerdictKind::kTproxy, o.tproxyMark);
    r.port = o.inboundPort;
    r.v6 = v6;
    rules.push_back(r);
  }
  if (inbound) {
    b.jump("prerouting", {proto(kTcp)}, "istio-inbound");
    b.ret("istio-inbound", {proto(kTcp), mark(o.tproxyMark)});
    b.ret("istio-inbound", {iif("lo"), proto(kTcp), addr(false, cidr("127.0.0.6/32"))});
    b.ret("istio-inbound", {iif("lo"), proto(kTcp), addr(false, cidr("::6/128"))});
    b.ret("istio-inbound", {iif("lo"), proto(kTcp), mark(o.outboundMark, true)});
    if (o.inboundAll) {
      for (uint16_t p : o.inboundExcludePorts) b.ret("istio-inbound", {proto(kTcp), tcpDport(p)});
      b.jump("istio-inbound", {proto(kTcp), ctEstablished()}, "istio-divert");
      b.jump("istio-inbound", {proto(kTcp)}, "istio-tproxy");
    } else {
      for (uint16_t p : o.inboundPorts) {
        b.jump("istio-inbound", {proto(kTcp), ctEstablished(), tcpDport(p)}, "istio-divert");
        b.jump("istio-inbound", {proto(kTcp), tcpDport(p)}, "istio-tproxy");
      }
    }
  }
  rules.push_back(statement("prerouting", {proto(kTcp), mark(o.tproxyMark)}, VerdictKind::kSaveMark));
  b.ret("output", {oif("lo"), proto(kTcp), mark(o.tproxyMark)});
  auto markOutbound = [&](bool gid, uint32_t id) {
    for (const char* loop : {"127.0.0.1/32", "::1/128"}) {
      rules.push_back(statement("output",
                                {oif("lo"), proto(kTcp), addr(true, cidr(loop), true), owner(gid, id)},
                                VerdictKind::kSetMark, o.outboundMark));
    }
  };
  for (uint32_t uid : o.proxyUids) markOutbound(false, uid);
  for (uint32_t gid : o.proxyGids) markOutbound(true, gid);
  rules.push_back(statement("output", {proto(kTcp), ctMark(o.tproxyMark)}, VerdictKind::kRestoreMark));
  return t;
}

}  // namespace

Ruleset buildRuleset(const Options& o) {
  Ruleset rs;
  Table t;
  t.name = kNatTable;
  bool tproxy = o.mode == InterceptionMode::kTproxy;
  bool inbound = o.inboundAll || !o.inboundPorts.empty();
  // In TPROXY mode inbound capture lives in the mangle table; nat keeps only the outbound side.
  bool prerouting = (inbound && !tproxy) || !o.virtualInterfaces.empty() || !o.excludeInterfaces.empty();
  if (prerouting) t.chains.push_back(chain("prerouting", "prerouting"));
  t.chains.push_back(chain("output", "output"));
  for (const char* name : {"istio-inbound", "istio-redirect", "istio-in-redirect", "istio-output"}) {
    t.chains.push_back(chain(name));
  }
  if (o.redirectDns) t.chains.push_back(chain("istio-output-dns"));

  Builder b(&t);
  for (const auto& nic : o.excludeInterfaces) {
    if (prerouting) b.ret("prerouting", {iif(nic)});
    b.ret("output", {oif(nic)});
  }
  for (const auto& nic : o.virtualInterfaces) {
    // Traffic from a KubeVirt VM NIC is the VM's outbound traffic.
    b.jump("prerouting", {iif(nic)}, "istio-redirect");
    b.ret("prerouting", {iif(nic)});
  }
  b.ret("istio-inbound", {proto(kTcp), tcpDport(o.tunnelPort)});
  b.add("istio-redirect", {proto(kTcp)}, VerdictKind::kRedirect, "", o.outboundPort);
  b.add("istio-in-redirect", {proto(kTcp)}, VerdictKind::kRedirect, "", o.inboundPort);

  // Inbound.
  if (inbound && !tproxy) {
    b.jump("prerouting", {proto(kTcp)}, "istio-inbound");
    if (o.inboundAll) {
      for (uint16_t p : o.inboundExcludePorts) b.ret("istio-inbound", {proto(kTcp), tcpDport(p)});
      b.jump("istio-inbound", {proto(kTcp)}, "istio-in-redirect");
    } else {
      for (uint16_t p : o.inboundPorts)
        b.jump("istio-inbound", {proto(kTcp), tcpDport(p)}, "istio-in-redirect");
    }
  }

  // Outbound.
  b.jump("output", {}, "istio-output");
  for (uint16_t p : o.outboundExcludePorts) {
    b.ret("istio-output", {proto(kTcp), tcpDport(p)});
    b.ret("istio-output", {proto(kUdp), udpDport(p)});
  }
  // Inbound passthrough: the proxy forwards to the app from 127.0.0.6 / ::6.
  b.ret("istio-output", {oif("lo"), addr(false, cidr("127.0.0.6/32"))});
  b.ret("istio-output", {oif("lo"), addr(false, cidr("::6/128"))});
  for (uint32_t uid : o.proxyUids) addOwnerRules(b, false, uid, o.redirectDns, o.tunnelPort);
  for (uint32_t gid : o.proxyGids) addOwnerRules(b, true, gid, o.redirectDns, o.tunnelPort);
  if (o.redirectDns) {
    b.jump("istio-output", {}, "istio-output-dns");
    auto dnsRule = [&](std::vector<Match> m) {
      b.add("istio-output-dns", std::move(m), VerdictKind::kRedirect, "", o.dnsPort);
    };
    if (o.captureAllDns) {
      dnsRule({proto(kTcp), tcpDport(53)});
      dnsRule({proto(kUdp), udpDport(53)});
    } else {
      for (const auto& ns : o.dnsServers) dnsRule({addr(true, ns), proto(kTcp), tcpDport(53)});
      for (const auto& ns : o.dnsServers) dnsRule({addr(true, ns), proto(kUdp), udpDport(53)});
    }
  }
  for (uint16_t p : o.outboundIncludePorts)
    b.jump("istio-output", {proto(kTcp), tcpDport(p)}, "istio-redirect");
  b.ret("istio-output", {addr(true, cidr("127.0.0.1/32"))});
  b.ret("istio-output", {addr(true, cidr("::1/128"))});
  for (const auto& c : o.outboundExclude) b.ret("istio-output", {addr(true, c)});
  if (o.outboundAll) {
    b.jump("istio-output", {}, "istio-redirect");
  } else {
    for (const auto& c : o.outboundInclude) b.jump("istio-output", {addr(true, c)}, "istio-redirect");
  }
  rs.tables.push_back(std::move(t));
  if (tproxy) rs.tables.push_back(buildMangle(o, inbound));
  return rs;
}

}  // namespace skiff::init
