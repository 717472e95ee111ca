// Renders a Ruleset as an nft script (--dry-run); mirrors the expressions netlink.cc sends.
#include <string>

#include "skiff/init/ruleset.h"

namespace skiff::init {
namespace {

std::string renderMatch(const Match& m) {
  const char* op = m.negate ? "!= " : "";
  switch (m.kind) {
    case MatchKind::kIifName:
      return std::string("iifname ") + op + "\"" + m.name + "\"";
    case MatchKind::kOifName:
      return std::string("oifname ") + op + "\"" + m.name + "\"";
    case MatchKind::kL4Proto:
      return std::string("meta l4proto ") + op +
             (m.value == 6    ? "tcp"
              : m.value == 17 ? "udp"
                              : std::to_string(m.value));
    case MatchKind::kSaddr:
    case MatchKind::kDaddr:
      return std::string(m.cidr.v6 ? "ip6 " : "ip ") + (m.kind == MatchKind::kSaddr ? "saddr " : "daddr ") +
             op + m.cidr.toString();
    case MatchKind::kTcpDport:
      return std::string("tcp dport ") + op + std::to_string(m.value);
    case MatchKind::kUdpDport:
      return std::string("udp dport ") + op + std::to_string(m.value);
    case MatchKind::kSkUid:
      return std::string("meta skuid ") + op + std::to_string(m.value);
    case MatchKind::kSkGid:
      return std::string("meta skgid ") + op + std::to_string(m.value);
    case MatchKind::kMark:
      return std::string("meta mark ") + op + std::to_string(m.value);
    case MatchKind::kCtMark:
      return std::string("ct mark ") + op + std::to_string(m.value);
    case MatchKind::kCtState:
      return "ct state related,established";
  }
  return "";
}

}  // namespace

std::string renderRule(const Rule& rule) {
  std::string out;
  for (const auto& m : rule.matches) out += renderMatch(m) + " ";
  out += "counter ";
  switch (rule.verdict) {
    case VerdictKind::kReturn:
      return out + "return";
    case VerdictKind::kJump:
      return out + "jump " + rule.target;
    case VerdictKind::kRedirect:
      return out + "redirect to :" + std::to_string(rule.port);
    case VerdictKind::kAccept:
      return out + "accept";
    case VerdictKind::kSetMark:
      return out + "meta mark set " + std::to_string(rule.mark);
    case VerdictKind::kSaveMark:
      return out + "ct mark set meta mark";
    case VerdictKind::kRestoreMark:
      return out + "meta mark set ct mark";
    case VerdictKind::kTproxy:
      return out + "tproxy " + (rule.v6 ? "ip6" : "ip") + " to :" + std::to_string(rule.port) +
             " meta mark set " + std::to_string(rule.mark) + " accept";
    case VerdictKind::kContinue:
      return out.substr(0, out.size() - 1);
  }
  return out;
}

std::string renderNft(const Ruleset& ruleset) {
  std::string out;
  for (const auto& t : ruleset.tables) {
    std::string prefix = " inet " + t.name;
    // add + delete + add: replaces the table whether or not it already exists.
    out += "add table" + prefix + "\ndelete table" + prefix + "\nadd table" + prefix + "\n";
    for (const auto& c : t.chains) {
      out += "add chain" + prefix + " " + c.name;
      if (!c.hook.empty()) {
        out += " { type " + c.type + " hook " + c.hook + " priority " + std::to_string(c.priority) + " ; }";
      }
      out += "\n";
    }
    for (const auto& r : t.rules) out += "add rule" + prefix + " " + r.chain + " " + renderRule(r) + "\n";
  }
  return out;
}

}  // namespace skiff::init
