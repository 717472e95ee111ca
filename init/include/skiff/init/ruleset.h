// The capture ruleset as data: built from the flags, then rendered as nft text or netlink messages.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace skiff::init {

struct Options;

// Tables skiff-init owns; --cleanup removes exactly these.
inline constexpr const char* kNatTable = "skiff_nat";
inline constexpr const char* kMangleTable = "skiff_mangle";
inline const std::vector<std::string>& ownedTables() {
  static const std::vector<std::string> tables{kNatTable, kMangleTable};
  return tables;
}

struct Cidr {
  bool v6 = false;
  std::array<uint8_t, 16> addr{};  // network byte order; v4 uses the first 4 bytes
  int prefix = 32;
  std::string toString() const;
};
std::optional<Cidr> parseCidr(const std::string& text);

enum class MatchKind {
  kIifName,
  kOifName,
  kL4Proto,
  kSaddr,
  kDaddr,
  kTcpDport,
  kUdpDport,
  kSkUid,
  kSkGid,
  kMark,     // meta mark
  kCtMark,   // ct mark
  kCtState,  // ct state related,established (the only set we need)
};

struct Match {
  MatchKind kind;
  bool negate = false;
  std::string name;    // interface names
  uint32_t value = 0;  // l4proto, port, uid, gid, mark
  Cidr cidr;           // kSaddr/kDaddr
};

enum class VerdictKind {
  kReturn,
  kJump,
  kRedirect,
  kAccept,
  kSetMark,      // meta mark set <mark>; continue
  kSaveMark,     // ct mark set mark; continue
  kRestoreMark,  // meta mark set ct mark; continue
  kTproxy,       // tproxy ip|ip6 to :<port> meta mark set <mark> accept
  kContinue,     // counter only
};

struct Rule {
  std::string chain;
  std::vector<Match> matches;
  VerdictKind verdict = VerdictKind::kReturn;
  std::string target;  // kJump
  uint16_t port = 0;   // kRedirect, kTproxy
  uint32_t mark = 0;   // kSetMark, kTproxy
  bool v6 = false;     // kTproxy family
};

struct Chain {
  std::string name;
  std::string hook;  // "prerouting" / "output" for base chains, empty otherwise
  std::string type = "nat";
  int priority = -100;
};

struct Table {
  std::string name;
  std::vector<Chain> chains;
  std::vector<Rule> rules;  // in order; rules of one chain keep their relative order
};

struct Ruleset {
  std::vector<Table> tables;
};

// Istio's rule order (REDIRECT, or TPROXY with a second mangle table) for the given flags (IPv4 and IPv6 in
// one inet table).
Ruleset buildRuleset(const Options& options);

// nft syntax that replaces our tables atomically (add, delete, add), loadable with `nft -f`.
std::string renderNft(const Ruleset& ruleset);
std::string renderRule(const Rule& rule);

}  // namespace skiff::init
