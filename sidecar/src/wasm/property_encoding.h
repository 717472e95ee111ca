#pragma once
// How proxy_get_property encodes values the HTTP and network filters both expose.

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace skiff::wasm {

// Integers are 8 little-endian bytes, as Envoy's CEL values reach the guest.
inline std::string int64Bytes(int64_t v) {
  std::string out(8, '\0');
  std::memcpy(out.data(), &v, 8);
  return out;
}

// The port of "1.2.3.4:80" / "[::1]:80"; nullopt when there is none.
inline std::optional<int64_t> portOf(std::string_view address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  int64_t port = 0;
  for (char c : address.substr(colon + 1)) {
    if (c < '0' || c > '9') return std::nullopt;
    port = port * 10 + (c - '0');
  }
  return port;
}

}  // namespace skiff::wasm
