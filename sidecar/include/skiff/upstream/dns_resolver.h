// Asynchronous DNS on an asio loop with c-ares: c-ares sockets are watched with posix descriptors and its
// timeouts are driven by a steady_timer, so a lookup never blocks the loop.
#pragma once

#include <asio/io_context.hpp>
#include <asio/ip/address.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "skiff/upstream/cluster_info.h"

namespace skiff::upstream {

struct DnsResponse {
  asio::ip::address address;
  std::chrono::seconds ttl{0};
};

enum class DnsStatus { kSuccess, kFailure };

struct DnsResolverOptions {
  std::string servers_csv;  // "1.2.3.4:53,[::1]:53"; empty = /etc/resolv.conf
  bool use_tcp = false;
  bool no_default_search_domain = false;
  int timeout_ms = 0;  // per try; 0 = c-ares default (5 s)
  int tries = 0;       // 0 = c-ares default (4)
};

class DnsResolver {
 public:
  // Empty `addresses` with kSuccess never happens: "no address" is reported as kFailure.
  using Callback = std::function<void(DnsStatus status, std::vector<DnsResponse> addresses)>;

  // Throws std::runtime_error if c-ares cannot initialise (bad server list...).
  DnsResolver(asio::io_context& loop, const DnsResolverOptions& options = {});
  ~DnsResolver();  // outstanding callbacks are dropped, never called
  DnsResolver(const DnsResolver&) = delete;
  DnsResolver& operator=(const DnsResolver&) = delete;

  // Resolves `name` (a DNS name, /etc/hosts name or IP literal). `cb` runs later on the loop, never inline.
  // Families: AUTO = IPv6 if the name has any, else IPv4; V4_PREFERRED the reverse; ALL = both. Both use
  // one AF_UNSPEC lookup so /etc/hosts-only names (e.g. "localhost") answer without a network round trip.
  void resolve(const std::string& name, DnsLookupFamily family, Callback cb);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace skiff::upstream
