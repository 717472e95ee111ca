// Serialized pairs: encoding for header maps handed to the guest, strict decoding of what it hands back.
#include "wasm/pairs.h"

#include <cstdint>
#include <cstring>

namespace skiff::wasm {
namespace {

void putU32(std::string& out, uint32_t v) {
  out.append(reinterpret_cast<const char*>(&v), 4);
}
uint32_t getU32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

}  // namespace

std::string serializePairs(const Pairs& pairs) {
  size_t total = 4;
  for (const auto& [k, v] : pairs) total += 8 + k.size() + v.size() + 2;
  std::string out;
  out.reserve(total);
  putU32(out, static_cast<uint32_t>(pairs.size()));
  for (const auto& [k, v] : pairs) {
    putU32(out, static_cast<uint32_t>(k.size()));
    putU32(out, static_cast<uint32_t>(v.size()));
  }
  for (const auto& [k, v] : pairs) {
    out.append(k);
    out.push_back('\0');
    out.append(v);
    out.push_back('\0');
  }
  return out;
}

std::optional<Pairs> parsePairs(std::string_view data) {
  Pairs pairs;
  if (data.size() < 4) return pairs;
  const uint64_t n = getU32(data.data());
  if (4 + n * 8 > data.size()) return std::nullopt;
  uint64_t pos = 4 + n * 8;
  pairs.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t klen = getU32(data.data() + 4 + i * 8);
    const uint64_t vlen = getU32(data.data() + 8 + i * 8);
    if (pos + klen + 1 + vlen + 1 > data.size()) return std::nullopt;
    std::string_view key = data.substr(pos, klen);
    if (data[pos + klen] != '\0') return std::nullopt;
    pos += klen + 1;
    std::string_view value = data.substr(pos, vlen);
    if (data[pos + vlen] != '\0') return std::nullopt;
    pos += vlen + 1;
    pairs.emplace_back(key, value);
  }
  return pairs;
}

}  // namespace skiff::wasm
