// Netlink side of skiff-init: encodes the Ruleset as nf_tables expressions (libnftnl), sends it as one
// batch (libmnl) and reads our tables back for --check.
#include "skiff/init/netlink.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <net/if.h>
#include <poll.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>

namespace skiff::init {
namespace {

constexpr size_t kBatchLimit = 1 << 18;
constexpr int kAckTimeoutMs = 5000;

struct RuleDeleter {
  void operator()(nftnl_rule* r) const { nftnl_rule_free(r); }
};
using RulePtr = std::unique_ptr<nftnl_rule, RuleDeleter>;

class Socket {
 public:
  ~Socket() {
    if (nl_) mnl_socket_close(nl_);
  }
  bool open(std::string* error) {
    nl_ = mnl_socket_open(NETLINK_NETFILTER);
    if (!nl_ || mnl_socket_bind(nl_, 0, MNL_SOCKET_AUTOPID) < 0) {
      *error = std::string("netlink socket: ") + std::strerror(errno);
      return false;
    }
    portid_ = mnl_socket_get_portid(nl_);
    return true;
  }
  mnl_socket* get() const { return nl_; }
  uint32_t portid() const { return portid_; }

 private:
  mnl_socket* nl_ = nullptr;
  uint32_t portid_ = 0;
};

// --- expressions -------------------------------------------------------------------------------

void add(nftnl_rule* r, nftnl_expr* e) {
  nftnl_rule_add_expr(r, e);
}

void metaLoad(nftnl_rule* r, uint32_t key) {
  nftnl_expr* e = nftnl_expr_alloc("meta");
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, NFT_REG_1);
  add(r, e);
}

void cmp(nftnl_rule* r, bool negate, const void* data, uint32_t len) {
  nftnl_expr* e = nftnl_expr_alloc("cmp");
  nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
  nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, negate ? NFT_CMP_NEQ : NFT_CMP_EQ);
  nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
  add(r, e);
}

void payload(nftnl_rule* r, uint32_t base, uint32_t offset, uint32_t len) {
  nftnl_expr* e = nftnl_expr_alloc("payload");
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
  add(r, e);
}

void bitwiseMask(nftnl_rule* r, const uint8_t* mask, uint32_t len) {
  uint8_t zero[16] = {};
  nftnl_expr* e = nftnl_expr_alloc("bitwise");
  nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
  nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
  nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, len);
  nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, mask, len);
  nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, zero, len);
  add(r, e);
}

void ctLoad(nftnl_rule* r, uint32_t key) {
  nftnl_expr* e = nftnl_expr_alloc("ct");
  nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, key);
  nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, NFT_REG_1);
  add(r, e);
}

void immediate32(nftnl_rule* r, uint32_t value) {
  nftnl_expr* e = nftnl_expr_alloc("immediate");
  nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_1);
  nftnl_expr_set(e, NFTNL_EXPR_IMM_DATA, &value, sizeof(value));
  add(r, e);
}

// meta mark set reg1 / ct mark set reg1
void setFromReg(nftnl_rule* r, bool ct) {
  nftnl_expr* e = nftnl_expr_alloc(ct ? "ct" : "meta");
  if (ct) {
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, NFT_CT_MARK);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_SREG, NFT_REG_1);
  } else {
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, NFT_META_MARK);
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_SREG, NFT_REG_1);
  }
  add(r, e);
}

void metaCmp8(nftnl_rule* r, uint32_t key, uint8_t value, bool negate = false) {
  metaLoad(r, key);
  cmp(r, negate, &value, sizeof(value));
}

void addMatch(nftnl_rule* r, const Match& m, uint32_t* l4proto) {
  switch (m.kind) {
    case MatchKind::kIifName:
    case MatchKind::kOifName: {
      char name[IFNAMSIZ] = {};
      std::strncpy(name, m.name.c_str(), IFNAMSIZ - 1);
      metaLoad(r, m.kind == MatchKind::kIifName ? NFT_META_IIFNAME : NFT_META_OIFNAME);
      cmp(r, m.negate, name, IFNAMSIZ);
      return;
    }
    case MatchKind::kL4Proto:
      metaCmp8(r, NFT_META_L4PROTO, static_cast<uint8_t>(m.value), m.negate);
      if (!m.negate) *l4proto = m.value;
      return;
    case MatchKind::kSaddr:
    case MatchKind::kDaddr: {
      metaCmp8(r, NFT_META_NFPROTO, m.cidr.v6 ? NFPROTO_IPV6 : NFPROTO_IPV4);
      bool src = m.kind == MatchKind::kSaddr;
      uint32_t len = m.cidr.v6 ? 16 : 4;
      uint32_t offset = m.cidr.v6 ? (src ? 8 : 24) : (src ? 12 : 16);
      payload(r, NFT_PAYLOAD_NETWORK_HEADER, offset, len);
      if (m.cidr.prefix < static_cast<int>(len * 8)) {
        uint8_t mask[16] = {};
        for (uint32_t i = 0; i < len; ++i) {
          int bits = m.cidr.prefix - static_cast<int>(i) * 8;
          mask[i] = bits >= 8 ? 0xff : bits <= 0 ? 0 : static_cast<uint8_t>(0xff << (8 - bits));
        }
        bitwiseMask(r, mask, len);
      }
      cmp(r, m.negate, m.cidr.addr.data(), len);
      return;
    }
    case MatchKind::kTcpDport:
    case MatchKind::kUdpDport: {
      uint32_t proto = m.kind == MatchKind::kTcpDport ? IPPROTO_TCP : IPPROTO_UDP;
      if (*l4proto != proto) {  // the dependency nft adds implicitly
        metaCmp8(r, NFT_META_L4PROTO, static_cast<uint8_t>(proto));
        *l4proto = proto;
      }
      payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
      uint16_t port = htons(static_cast<uint16_t>(m.value));
      cmp(r, m.negate, &port, sizeof(port));
      return;
    }
    case MatchKind::kMark:
    case MatchKind::kCtMark: {
      if (m.kind == MatchKind::kMark) {
        metaLoad(r, NFT_META_MARK);
      } else {
        ctLoad(r, NFT_CT_MARK);
      }
      uint32_t value = m.value;
      cmp(r, m.negate, &value, sizeof(value));
      return;
    }
    case MatchKind::kCtState: {
      // "ct state related,established": any of the two state bits set.
      ctLoad(r, NFT_CT_STATE);
      uint32_t bits = NF_CT_STATE_BIT(IP_CT_ESTABLISHED) | NF_CT_STATE_BIT(IP_CT_RELATED);
      bitwiseMask(r, reinterpret_cast<const uint8_t*>(&bits), sizeof(bits));
      uint32_t zero = 0;
      cmp(r, true, &zero, sizeof(zero));
      return;
    }
    case MatchKind::kSkUid:
    case MatchKind::kSkGid: {
      metaLoad(r, m.kind == MatchKind::kSkUid ? NFT_META_SKUID : NFT_META_SKGID);
      uint32_t id = m.value;
      cmp(r, m.negate, &id, sizeof(id));
      return;
    }
  }
}

void verdict(nftnl_rule* r, int code, const std::string& chain = "") {
  nftnl_expr* e = nftnl_expr_alloc("immediate");
  nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
  nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, static_cast<uint32_t>(code));
  if (!chain.empty()) nftnl_expr_set_str(e, NFTNL_EXPR_IMM_CHAIN, chain.c_str());
  add(r, e);
}

RulePtr buildRule(const std::string& table, const Rule& rule) {
  RulePtr r(nftnl_rule_alloc());
  nftnl_rule_set_u32(r.get(), NFTNL_RULE_FAMILY, NFPROTO_INET);
  nftnl_rule_set_str(r.get(), NFTNL_RULE_TABLE, table.c_str());
  nftnl_rule_set_str(r.get(), NFTNL_RULE_CHAIN, rule.chain.c_str());
  uint32_t l4proto = 0;
  for (const auto& m : rule.matches) addMatch(r.get(), m, &l4proto);
  add(r.get(), nftnl_expr_alloc("counter"));
  switch (rule.verdict) {
    case VerdictKind::kReturn:
      verdict(r.get(), NFT_RETURN);
      break;
    case VerdictKind::kJump:
      verdict(r.get(), NFT_JUMP, rule.target);
      break;
    case VerdictKind::kAccept:
      verdict(r.get(), NF_ACCEPT);
      break;
    case VerdictKind::kContinue:
      break;
    case VerdictKind::kSetMark:
      immediate32(r.get(), rule.mark);
      setFromReg(r.get(), false);
      break;
    case VerdictKind::kSaveMark:
      metaLoad(r.get(), NFT_META_MARK);
      setFromReg(r.get(), true);
      break;
    case VerdictKind::kRestoreMark:
      ctLoad(r.get(), NFT_CT_MARK);
      setFromReg(r.get(), false);
      break;
    case VerdictKind::kTproxy: {
      uint16_t port = htons(rule.port);
      nftnl_expr* imm = nftnl_expr_alloc("immediate");
      nftnl_expr_set_u32(imm, NFTNL_EXPR_IMM_DREG, NFT_REG_1);
      nftnl_expr_set(imm, NFTNL_EXPR_IMM_DATA, &port, sizeof(port));
      add(r.get(), imm);
      nftnl_expr* tp = nftnl_expr_alloc("tproxy");
      nftnl_expr_set_u32(tp, NFTNL_EXPR_TPROXY_FAMILY, rule.v6 ? NFPROTO_IPV6 : NFPROTO_IPV4);
      nftnl_expr_set_u32(tp, NFTNL_EXPR_TPROXY_REG_PORT, NFT_REG_1);
      add(r.get(), tp);
      immediate32(r.get(), rule.mark);
      setFromReg(r.get(), false);
      verdict(r.get(), NF_ACCEPT);
      break;
    }
    case VerdictKind::kRedirect: {
      uint16_t port = htons(rule.port);
      nftnl_expr* imm = nftnl_expr_alloc("immediate");
      nftnl_expr_set_u32(imm, NFTNL_EXPR_IMM_DREG, NFT_REG_1);
      nftnl_expr_set(imm, NFTNL_EXPR_IMM_DATA, &port, sizeof(port));
      add(r.get(), imm);
      nftnl_expr* redir = nftnl_expr_alloc("redir");
      nftnl_expr_set_u32(redir, NFTNL_EXPR_REDIR_REG_PROTO_MIN, NFT_REG_1);
      // Spelled out as the kernel reports them back, so --check compares like with like.
      nftnl_expr_set_u32(redir, NFTNL_EXPR_REDIR_REG_PROTO_MAX, NFT_REG_1);
      nftnl_expr_set_u32(redir, NFTNL_EXPR_REDIR_FLAGS, NF_NAT_RANGE_PROTO_SPECIFIED);
      add(r.get(), redir);
      break;
    }
  }
  return r;
}

// One comparable line per rule: its expressions without handles or counter values.
std::string signature(const nftnl_rule* r) {
  std::string out;
  nftnl_expr_iter* it = nftnl_expr_iter_create(r);
  for (nftnl_expr* e = nftnl_expr_iter_next(it); e; e = nftnl_expr_iter_next(it)) {
    const char* name = nftnl_expr_get_str(e, NFTNL_EXPR_NAME);
    out += "[";
    if (std::strcmp(name, "counter") == 0) {
      out += "counter";
    } else {
      char buf[512];
      nftnl_expr_snprintf(buf, sizeof(buf), e, NFTNL_OUTPUT_DEFAULT, 0);
      out += std::string(name) + " " + buf;
    }
    out += "]";
  }
  nftnl_expr_iter_destroy(it);
  return out;
}

// --- batches -----------------------------------------------------------------------------------

class Batch {
 public:
  Batch() : buf_(kBatchLimit * 2), seqBase_(static_cast<uint32_t>(time(nullptr))), seq_(seqBase_) {
    batch_ = mnl_nlmsg_batch_start(buf_.data(), kBatchLimit);
    nftnl_batch_begin(static_cast<char*>(mnl_nlmsg_batch_current(batch_)), seq_++);
    what_.push_back("batch begin");
    mnl_nlmsg_batch_next(batch_);
  }
  ~Batch() { mnl_nlmsg_batch_stop(batch_); }

  // Starts a message; the caller fills its payload, then calls next().
  nlmsghdr* start(uint16_t type, uint16_t flags, const std::string& what) {
    what_.push_back(what);
    ++acks_;
    return nftnl_nlmsg_build_hdr(static_cast<char*>(mnl_nlmsg_batch_current(batch_)), type, NFPROTO_INET,
                                 flags | NLM_F_ACK, seq_++);
  }
  bool next() { return mnl_nlmsg_batch_next(batch_) || (full_ = true, false); }

  void table(uint16_t type, const std::string& name) {
    nftnl_table* t = nftnl_table_alloc();
    nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY, NFPROTO_INET);
    nftnl_table_set_str(t, NFTNL_TABLE_NAME, name.c_str());
    bool create = type == NFT_MSG_NEWTABLE;
    nftnl_table_nlmsg_build_payload(
        start(type, create ? NLM_F_CREATE : 0, (create ? "add table " : "delete table ") + name), t);
    nftnl_table_free(t);
    next();
  }

  void chain(const std::string& table, const Chain& c) {
    nftnl_chain* ch = nftnl_chain_alloc();
    nftnl_chain_set_u32(ch, NFTNL_CHAIN_FAMILY, NFPROTO_INET);
    nftnl_chain_set_str(ch, NFTNL_CHAIN_TABLE, table.c_str());
    nftnl_chain_set_str(ch, NFTNL_CHAIN_NAME, c.name.c_str());
    if (!c.hook.empty()) {
      nftnl_chain_set_u32(ch, NFTNL_CHAIN_HOOKNUM,
                          c.hook == "prerouting" ? NF_INET_PRE_ROUTING : NF_INET_LOCAL_OUT);
      nftnl_chain_set_s32(ch, NFTNL_CHAIN_PRIO, c.priority);
      nftnl_chain_set_str(ch, NFTNL_CHAIN_TYPE, c.type.c_str());
    }
    nftnl_chain_nlmsg_build_payload(start(NFT_MSG_NEWCHAIN, NLM_F_CREATE, "add chain " + c.name), ch);
    nftnl_chain_free(ch);
    next();
  }

  void rule(const std::string& table, const Rule& rule) {
    RulePtr r = buildRule(table, rule);
    nftnl_rule_nlmsg_build_payload(start(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND,
                                         "add rule " + rule.chain + " " + renderRule(rule)),
                                   r.get());
    next();
  }

  bool send(Socket& sock, std::string* error) {
    nftnl_batch_end(static_cast<char*>(mnl_nlmsg_batch_current(batch_)), seq_++);
    next();
    if (full_) {
      *error = "ruleset too large for one netlink batch";
      return false;
    }
    if (mnl_socket_sendto(sock.get(), mnl_nlmsg_batch_head(batch_), mnl_nlmsg_batch_size(batch_)) < 0) {
      *error = std::string("netlink send: ") + std::strerror(errno);
      return false;
    }
    return readAcks(sock, error);
  }

 private:
  // Every message asked for an ACK; the kernel sends them (or the errors) once the batch is done.
  bool readAcks(Socket& sock, std::string* error) {
    std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE * 4);
    int got = 0;
    while (got < acks_) {
      pollfd pfd{mnl_socket_get_fd(sock.get()), POLLIN, 0};
      if (poll(&pfd, 1, kAckTimeoutMs) <= 0) {
        *error = "netlink: timed out waiting for the kernel's answer";
        return false;
      }
      ssize_t n = mnl_socket_recvfrom(sock.get(), buf.data(), buf.size());
      if (n < 0) {
        *error = std::string("netlink receive: ") + std::strerror(errno);
        return false;
      }
      int len = static_cast<int>(n);
      for (auto* nlh = reinterpret_cast<nlmsghdr*>(buf.data()); mnl_nlmsg_ok(nlh, len);
           nlh = mnl_nlmsg_next(nlh, &len)) {
        if (nlh->nlmsg_type != NLMSG_ERROR) continue;
        ++got;
        auto* err = static_cast<nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
        if (err->error != 0) {
          uint32_t idx = nlh->nlmsg_seq - seqBase_;
          std::string what = idx < what_.size() ? what_[idx] : "batch";
          *error = "netlink: " + what + ": " + std::strerror(-err->error);
          return false;  // the kernel aborted the whole batch
        }
      }
    }
    return true;
  }

  std::vector<char> buf_;
  mnl_nlmsg_batch* batch_;
  uint32_t seqBase_;
  uint32_t seq_;
  int acks_ = 0;
  bool full_ = false;
  std::vector<std::string> what_;
};

// --- read back ---------------------------------------------------------------------------------

using ChainRules = std::map<std::string, std::vector<std::string>>;

int ruleCallback(const nlmsghdr* nlh, void* data) {
  auto* out = static_cast<ChainRules*>(data);
  nftnl_rule* r = nftnl_rule_alloc();
  if (nftnl_rule_nlmsg_parse(nlh, r) == 0) {
    (*out)[nftnl_rule_get_str(r, NFTNL_RULE_CHAIN)].push_back(signature(r));
  }
  nftnl_rule_free(r);
  return MNL_CB_OK;
}

bool dumpRules(Socket& sock, const std::string& table, ChainRules* out, std::string* error) {
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE * 4);
  uint32_t seq = static_cast<uint32_t>(time(nullptr));
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf.data(), NFT_MSG_GETRULE, NFPROTO_INET, NLM_F_DUMP, seq);
  nftnl_rule* filter = nftnl_rule_alloc();
  nftnl_rule_set_str(filter, NFTNL_RULE_TABLE, table.c_str());
  nftnl_rule_nlmsg_build_payload(nlh, filter);
  nftnl_rule_free(filter);
  if (mnl_socket_sendto(sock.get(), nlh, nlh->nlmsg_len) < 0) {
    *error = std::string("netlink send: ") + std::strerror(errno);
    return false;
  }
  while (true) {
    ssize_t n = mnl_socket_recvfrom(sock.get(), buf.data(), buf.size());
    if (n < 0) {
      *error = std::string("netlink receive: ") + std::strerror(errno);
      return false;
    }
    int ret = mnl_cb_run(buf.data(), n, seq, sock.portid(), ruleCallback, out);
    if (ret == MNL_CB_STOP) return true;
    if (ret < 0) {
      if (errno == ENOENT) return true;  // the table does not exist: no rules
      *error = std::string("netlink rule dump: ") + std::strerror(errno);
      return false;
    }
  }
}

bool inRuleset(const Ruleset& ruleset, const std::string& table) {
  for (const auto& t : ruleset.tables) {
    if (t.name == table) return true;
  }
  return false;
}

}  // namespace

bool applyRuleset(const Ruleset& ruleset, std::string* error) {
  Socket sock;
  if (!sock.open(error)) return false;
  Batch batch;
  for (const auto& t : ruleset.tables) {
    // add + delete + add in one batch: replaces the table whether it exists or not.
    batch.table(NFT_MSG_NEWTABLE, t.name);
    batch.table(NFT_MSG_DELTABLE, t.name);
    batch.table(NFT_MSG_NEWTABLE, t.name);
    for (const auto& c : t.chains) batch.chain(t.name, c);
    for (const auto& r : t.rules) batch.rule(t.name, r);
  }
  // Tables of ours this mode does not use (e.g. mangle after switching TPROXY -> REDIRECT) go away.
  for (const auto& name : ownedTables()) {
    if (!inRuleset(ruleset, name)) {
      batch.table(NFT_MSG_NEWTABLE, name);
      batch.table(NFT_MSG_DELTABLE, name);
    }
  }
  return batch.send(sock, error);
}

bool cleanupRuleset(std::string* error) {
  Socket sock;
  if (!sock.open(error)) return false;
  Batch batch;
  for (const auto& name : ownedTables()) {
    batch.table(NFT_MSG_NEWTABLE, name);
    batch.table(NFT_MSG_DELTABLE, name);
  }
  return batch.send(sock, error);
}

bool checkRuleset(const Ruleset& ruleset, std::vector<std::string>* drift, std::string* error) {
  Socket sock;
  if (!sock.open(error)) return false;
  drift->clear();
  for (const auto& t : ruleset.tables) {
    ChainRules expected, actual;
    std::map<std::string, std::vector<const Rule*>> byChain;
    for (const auto& c : t.chains) expected[c.name];
    for (const auto& r : t.rules) {
      expected[r.chain].push_back(signature(buildRule(t.name, r).get()));
      byChain[r.chain].push_back(&r);
    }
    if (!dumpRules(sock, t.name, &actual, error)) return false;
    for (const auto& [chain, want] : expected) {
      const auto& have = actual[chain];
      if (want == have) continue;
      size_t i = 0;
      while (i < want.size() && i < have.size() && want[i] == have[i]) ++i;
      std::string line = t.name + " " + chain + ": expected " + std::to_string(want.size()) +
                         " rules, found " + std::to_string(have.size());
      if (i < want.size()) {
        line +=
            "; first difference at rule " + std::to_string(i) + ": want " + renderRule(*byChain[chain][i]);
        if (i < have.size()) line += "; live " + have[i] + " vs expected " + want[i];
      }
      drift->push_back(line);
    }
    for (const auto& [chain, have] : actual) {
      if (!expected.count(chain) && !have.empty()) {
        drift->push_back(t.name + " " + chain + ": unexpected chain with " + std::to_string(have.size()) +
                         " rules");
      }
    }
  }
  for (const auto& name : ownedTables()) {
    if (inRuleset(ruleset, name)) continue;
    ChainRules leftover;
    if (!dumpRules(sock, name, &leftover, error)) return false;
    if (!leftover.empty()) drift->push_back(name + ": table should not exist");
  }
  return true;
}

}  // namespace skiff::init
