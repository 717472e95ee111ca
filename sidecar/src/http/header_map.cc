// HeaderMap: a small vector of lower-cased (name, value) pairs; linear scans beat hashing at header counts.
#include "skiff/http/header_map.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <utility>

namespace skiff::http {

namespace {
constexpr size_t kInitialEntries = 15;
static_assert(kInitialEntries * sizeof(HeaderMap::Entry) < 1024 - 16);
inline char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}
// Lower-cases the ASCII letters of 8 bytes at once (header names run to ~30 bytes; a byte loop was the
// largest part of HeaderMap::add). Per byte b < 0x80: b + 0x3f has bit 7 set iff b >= 'A', b + 0x25 iff
// b > 'Z'; no sum carries into the next byte. Bytes >= 0x80 are left alone.
inline uint64_t lower8(uint64_t w) {
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  const uint64_t low7 = w & (0x7f * kOnes);
  const uint64_t upper = (low7 + 0x3f * kOnes) & ~(low7 + 0x25 * kOnes) & ~w & (0x80 * kOnes);
  return w | (upper >> 2);
}
inline uint64_t load8(const char* p) {
  uint64_t w;
  std::memcpy(&w, p, 8);
  return w;
}
void copyLower(char* out, const char* in, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint64_t w = lower8(load8(in + i));
    std::memcpy(out + i, &w, 8);
  }
  if (i < n && n >= 8) {
    // The last 8 bytes, overlapping what is done (lower-casing twice changes nothing).
    const uint64_t w = lower8(load8(in + n - 8));
    std::memcpy(out + n - 8, &w, 8);
    return;
  }
  for (; i < n; ++i) out[i] = lower(in[i]);
}
// equalsIgnoreCase for the scans below, inlined: most candidates differ in length, so the common case is
// one comparison instead of a call.
inline bool sameName(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  size_t i = 0;
  for (; i + 8 <= a.size(); i += 8) {
    if (lower8(load8(a.data() + i)) != lower8(load8(b.data() + i))) return false;
  }
  if (i < a.size() && a.size() >= 8) {
    const size_t last = a.size() - 8;
    return lower8(load8(a.data() + last)) == lower8(load8(b.data() + last));
  }
  for (; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}
}  // namespace

void toLowerInPlace(std::string& s) {
  copyLower(s.data(), s.data(), s.size());
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  return sameName(a, b);
}

void HeaderMap::add(std::string_view name, std::string_view value) {
  // One allocation for a typical header block; maps that stay empty (no trailers) allocate nothing.
  // 15 entries (960 bytes), not 16: glibc serves 1024 bytes and more from its large bins, and such a
  // request first consolidates the fast bins (malloc_consolidate), which cost ~0.5 us per request here.
  if (entries_.capacity() == 0) entries_.reserve(kInitialEntries);
  ++version_;
  // Built in place, lower-cased while copied (no temporaries to move).
  auto& e = entries_.emplace_back(std::piecewise_construct, std::forward_as_tuple(name.size(), '\0'),
                                  std::forward_as_tuple(value));
  copyLower(e.first.data(), name.data(), name.size());
}

void HeaderMap::set(std::string_view name, std::string_view value) {
  auto it =
      std::find_if(entries_.begin(), entries_.end(), [&](const Entry& e) { return sameName(e.first, name); });
  if (it == entries_.end()) {
    add(name, value);
    return;
  }
  ++version_;
  it->second.assign(value);
  entries_.erase(
      std::remove_if(it + 1, entries_.end(), [&](const Entry& e) { return sameName(e.first, name); }),
      entries_.end());
}

void HeaderMap::setIfAbsent(std::string_view name, std::string_view value) {
  if (get(name) == nullptr) add(name, value);
}

size_t HeaderMap::remove(std::string_view name) {
  const size_t before = entries_.size();
  entries_.erase(std::remove_if(entries_.begin(), entries_.end(),
                                [&](const Entry& e) { return sameName(e.first, name); }),
                 entries_.end());
  if (entries_.size() != before) ++version_;
  return before - entries_.size();
}

const std::string* HeaderMap::get(std::string_view name) const {
  for (const auto& e : entries_) {
    if (sameName(e.first, name)) return &e.second;
  }
  return nullptr;
}

std::string_view HeaderMap::getOr(std::string_view name, std::string_view fallback) const {
  const std::string* v = get(name);
  return v ? std::string_view(*v) : fallback;
}

size_t HeaderMap::count(std::string_view name) const {
  return std::count_if(entries_.begin(), entries_.end(),
                       [&](const Entry& e) { return sameName(e.first, name); });
}

std::string HeaderMap::getJoined(std::string_view name) const {
  std::string out;
  for (const auto& e : entries_) {
    if (!sameName(e.first, name)) continue;
    if (!out.empty()) out += ", ";
    out += e.second;
  }
  return out;
}

size_t HeaderMap::byteSize() const {
  size_t n = 0;
  for (const auto& e : entries_) n += e.first.size() + e.second.size();
  return n;
}

}  // namespace skiff::http
