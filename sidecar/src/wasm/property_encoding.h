#pragma once
// Property plumbing the HTTP and network Wasm filters share: value encodings and proxy_set_property storage.

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

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

// Values a plugin stored with proxy_set_property, read back before the built-in ones. Paths are kept as the
// guest sent them (segments joined by NUL); a stream rarely sets more than a few, so a vector is enough.
class SetProperties {
 public:
  bool set(std::string_view path, std::string_view value) {
    if (path.empty()) return false;
    for (auto& [k, v] : values_) {
      if (k == path) {
        v.assign(value);
        return true;
      }
    }
    values_.emplace_back(path, value);
    return true;
  }
  const std::string* find(const std::vector<std::string_view>& path) const {
    if (values_.empty()) return nullptr;
    std::string joined;
    for (size_t i = 0; i < path.size(); ++i) {
      if (i) joined.push_back('\0');
      joined.append(path[i]);
    }
    for (const auto& [k, v] : values_) {
      if (k == joined) return &v;
    }
    return nullptr;
  }

 private:
  std::vector<std::pair<std::string, std::string>> values_;
};

}  // namespace skiff::wasm
