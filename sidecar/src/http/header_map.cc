// HeaderMap: a small vector of lower-cased (name, value) pairs; linear scans beat hashing at header counts.
#include "skiff/http/header_map.h"

#include <algorithm>

namespace skiff::http {

namespace {
inline char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}
}  // namespace

void toLowerInPlace(std::string& s) {
  for (char& c : s) c = lower(c);
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

void HeaderMap::add(std::string_view name, std::string_view value) {
  // One allocation for a typical header block; maps that stay empty (no trailers) allocate nothing.
  if (entries_.capacity() == 0) entries_.reserve(16);
  auto& e = entries_.emplace_back(std::string(name), std::string(value));
  toLowerInPlace(e.first);
}

void HeaderMap::set(std::string_view name, std::string_view value) {
  auto it = std::find_if(entries_.begin(), entries_.end(),
                         [&](const Entry& e) { return equalsIgnoreCase(e.first, name); });
  if (it == entries_.end()) {
    add(name, value);
    return;
  }
  it->second.assign(value);
  entries_.erase(
      std::remove_if(it + 1, entries_.end(), [&](const Entry& e) { return equalsIgnoreCase(e.first, name); }),
      entries_.end());
}

void HeaderMap::setIfAbsent(std::string_view name, std::string_view value) {
  if (get(name) == nullptr) add(name, value);
}

size_t HeaderMap::remove(std::string_view name) {
  const size_t before = entries_.size();
  entries_.erase(std::remove_if(entries_.begin(), entries_.end(),
                                [&](const Entry& e) { return equalsIgnoreCase(e.first, name); }),
                 entries_.end());
  return before - entries_.size();
}

const std::string* HeaderMap::get(std::string_view name) const {
  for (const auto& e : entries_) {
    if (equalsIgnoreCase(e.first, name)) return &e.second;
  }
  return nullptr;
}

std::string_view HeaderMap::getOr(std::string_view name, std::string_view fallback) const {
  const std::string* v = get(name);
  return v ? std::string_view(*v) : fallback;
}

size_t HeaderMap::count(std::string_view name) const {
  return std::count_if(entries_.begin(), entries_.end(),
                       [&](const Entry& e) { return equalsIgnoreCase(e.first, name); });
}

std::string HeaderMap::getJoined(std::string_view name) const {
  std::string out;
  for (const auto& e : entries_) {
    if (!equalsIgnoreCase(e.first, name)) continue;
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
