// rtnetlink requests (libmnl) for TPROXY's fwmark rule and local route, both address families.
#include "skiff/init/routing.h"

#include <libmnl/libmnl.h>
#include <linux/fib_rules.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <vector>

namespace skiff::init {
namespace {

constexpr int kMaxDuplicateRules = 64;

class Rtnl {
 public:
  ~Rtnl() {
    if (nl_) mnl_socket_close(nl_);
  }
  bool open(std::string* error) {
    nl_ = mnl_socket_open(NETLINK_ROUTE);
    if (!nl_ || mnl_socket_bind(nl_, 0, MNL_SOCKET_AUTOPID) < 0) {
      *error = std::string("rtnetlink socket: ") + std::strerror(errno);
      return false;
    }
    portid_ = mnl_socket_get_portid(nl_);
    seq_ = static_cast<uint32_t>(time(nullptr));
    return true;
  }

  // Sends one request and waits for its ACK; returns 0 or a negative errno.
  int request(nlmsghdr* nlh) {
    nlh->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
    nlh->nlmsg_seq = ++seq_;
    if (mnl_socket_sendto(nl_, nlh, nlh->nlmsg_len) < 0) return -errno;
    std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
    ssize_t n = mnl_socket_recvfrom(nl_, buf.data(), buf.size());
    if (n < 0) return -errno;
    if (mnl_cb_run(buf.data(), n, seq_, portid_, nullptr, nullptr) < 0) return -errno;
    return 0;
  }

 private:
  mnl_socket* nl_ = nullptr;
  uint32_t portid_ = 0;
  uint32_t seq_ = 0;
};

int ruleRequest(Rtnl& rtnl, uint16_t type, uint16_t flags, int family, uint32_t mark, uint32_t table) {
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
  nlh->nlmsg_type = type;
  nlh->nlmsg_flags = flags;
  auto* frh = static_cast<fib_rule_hdr*>(mnl_nlmsg_put_extra_header(nlh, sizeof(fib_rule_hdr)));
  frh->family = static_cast<uint8_t>(family);
  frh->action = FR_ACT_TO_TBL;
  frh->table = table < 256 ? static_cast<uint8_t>(table) : static_cast<uint8_t>(RT_TABLE_UNSPEC);
  mnl_attr_put_u32(nlh, FRA_FWMARK, mark);
  mnl_attr_put_u32(nlh, FRA_TABLE, table);
  return rtnl.request(nlh);
}

int routeRequest(Rtnl& rtnl, uint16_t type, uint16_t flags, int family, uint32_t table) {
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
  nlh->nlmsg_type = type;
  nlh->nlmsg_flags = flags;
  auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(rtmsg)));
  rtm->rtm_family = static_cast<uint8_t>(family);
  rtm->rtm_table = table < 256 ? static_cast<uint8_t>(table) : static_cast<uint8_t>(RT_TABLE_UNSPEC);
  rtm->rtm_protocol = RTPROT_BOOT;
  rtm->rtm_scope = RT_SCOPE_HOST;
  rtm->rtm_type = RTN_LOCAL;
  mnl_attr_put_u32(nlh, RTA_TABLE, table);
  mnl_attr_put_u32(nlh, RTA_OIF, if_nametoindex("lo"));
  return rtnl.request(nlh);
}

const char* familyName(int family) {
  return family == AF_INET ? "IPv4" : "IPv6";
}

bool gone(int err) {
  return err == -ENOENT || err == -ESRCH;
}

// Deletes every "fwmark <mark> lookup <table>" rule of the family (a rule may have been added twice).
int deleteRules(Rtnl& rtnl, int family, uint32_t mark, uint32_t table) {
  for (int i = 0; i < kMaxDuplicateRules; ++i) {
    int err = ruleRequest(rtnl, RTM_DELRULE, 0, family, mark, table);
    if (gone(err) || err == -EAFNOSUPPORT) return 0;
    if (err < 0) return err;
  }
  return 0;
}

}  // namespace

bool applyPolicyRouting(uint32_t mark, uint32_t table, std::string* error) {
  Rtnl rtnl;
  if (!rtnl.open(error)) return false;
  for (int family : {AF_INET, AF_INET6}) {
    int err = deleteRules(rtnl, family, mark, table);
    if (err == 0) err = ruleRequest(rtnl, RTM_NEWRULE, NLM_F_CREATE | NLM_F_EXCL, family, mark, table);
    if (err == 0) err = routeRequest(rtnl, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, family, table);
    if (err == -EAFNOSUPPORT && family == AF_INET6) continue;  // no IPv6 in this kernel/namespace
    if (err < 0) {
      *error = std::string(familyName(family)) + " policy routing (fwmark " + std::to_string(mark) +
               ", table " + std::to_string(table) + "): " + std::strerror(-err);
      return false;
    }
  }
  return true;
}

bool cleanupPolicyRouting(uint32_t mark, uint32_t table, std::string* error) {
  Rtnl rtnl;
  if (!rtnl.open(error)) return false;
  for (int family : {AF_INET, AF_INET6}) {
    int err = deleteRules(rtnl, family, mark, table);
    if (err == 0) err = routeRequest(rtnl, RTM_DELROUTE, 0, family, table);
    if (gone(err) || err == -EAFNOSUPPORT) err = 0;
    if (err < 0) {
      *error = std::string(familyName(family)) + " policy routing cleanup: " + std::strerror(-err);
      return false;
    }
  }
  return true;
}

}  // namespace skiff::init
