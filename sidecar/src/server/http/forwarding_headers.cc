// Per-hop request header handling, as Envoy's connection manager applies it before the filter chain.
#include "server/http/forwarding_headers.h"

#include <vector>

#include "skiff/common/random.h"

namespace skiff::server {

bool isInternalAddress(const asio::ip::address& a) {
  if (a.is_loopback()) return true;
  if (a.is_v4()) {
    const auto b = a.to_v4().to_bytes();
    return b[0] == 10 || (b[0] == 172 && (b[1] & 0xf0) == 16) || (b[0] == 192 && b[1] == 168);
  }
  const auto b = a.to_v6().to_bytes();
  return (b[0] & 0xfe) == 0xfc;  // unique local fc00::/7
}

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

// The x-forwarded-for entry `hops` places from the right, or "" when the list is shorter.
std::string_view xffEntryFromRight(std::string_view xff, uint32_t hops) {
  std::vector<std::string_view> parts;
  while (true) {
    const auto comma = xff.find(',');
    parts.push_back(trim(xff.substr(0, comma)));
    if (comma == std::string_view::npos) break;
    xff.remove_prefix(comma + 1);
  }
  return parts.size() > hops ? parts[parts.size() - 1 - hops] : std::string_view();
}

}  // namespace

std::string applyForwardingHeaders(http::HeaderMap& h, const ConnectionManagerConfig& c,
                                   const asio::ip::tcp::endpoint& peer, const std::string& peer_text,
                                   bool secure) {
  const char* scheme = secure ? "https" : "http";
  h.set(http::headers::kScheme, scheme);
  for (std::string_view hop : {http::headers::kConnection, http::headers::kKeepAlive,
                               http::headers::kProxyConnection, http::headers::kUpgrade}) {
    h.remove(hop);
  }
  if (const std::string* te = h.get(http::headers::kTe); te != nullptr && *te != "trailers") {
    h.remove(http::headers::kTe);
  }

  std::string downstream = peer_text;
  bool internal = false;
  if (c.use_remote_address) {
    internal = isInternalAddress(peer.address());
    if (!c.skip_xff_append) {
      const std::string address = peer.address().to_string();
      const std::string* xff = h.get(http::headers::kForwardedFor);
      h.set(http::headers::kForwardedFor, xff ? *xff + "," + address : address);
    }
    h.set(http::headers::kForwardedProto, scheme);
    if (internal) {
      h.set(http::headers::kEnvoyInternal, "true");
    } else {
      h.remove(http::headers::kEnvoyInternal);
    }
  } else {
    h.setIfAbsent(http::headers::kForwardedProto, scheme);
    if (const std::string* xff = h.get(http::headers::kForwardedFor)) {
      const std::string_view entry = xffEntryFromRight(*xff, c.xff_num_trusted_hops);
      std::error_code ec;
      const auto address = asio::ip::make_address(entry, ec);
      // Envoy reports an address taken from x-forwarded-for with port 0.
      if (!ec) downstream = address.is_v6() ? "[" + address.to_string() + "]:0" : address.to_string() + ":0";
    }
  }
  if (c.generate_request_id) {
    const bool external = c.use_remote_address && !internal;
    if (h.get(http::headers::kRequestId) == nullptr || (external && !c.preserve_external_request_id)) {
      h.set(http::headers::kRequestId, uuid4());
    }
  }
  return downstream;
}

}  // namespace skiff::server
