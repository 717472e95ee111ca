// An ordered multimap of HTTP headers with case-insensitive names, as every codec and filter sees them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace skiff::http {

// Lower-cases ASCII in place; header names are stored lower-case (as HTTP/2 requires and Envoy emits).
void toLowerInPlace(std::string& s);
bool equalsIgnoreCase(std::string_view a, std::string_view b);

// Request pseudo-headers (":method", ":path", ":authority", ":scheme") and the response ":status" live in
// the same map as regular headers, first in order, so every filter API (native, Lua, WASM) sees one shape.
class HeaderMap {
 public:
  using Entry = std::pair<std::string, std::string>;

  HeaderMap() = default;
  HeaderMap(const HeaderMap&) = default;
  // A move empties the source, which is a change to it: its version moves on too, past the target's, so
  // a cache taken from the source before the move never matches its later content (see version()).
  HeaderMap(HeaderMap&& other) noexcept : entries_(std::move(other.entries_)), version_(other.version_ + 1) {
    other.entries_.clear();
    other.version_ = version_ + 1;
  }
  // Assignment is a change: the version moves past both maps' (see version()).
  HeaderMap& operator=(const HeaderMap& other) {
    entries_ = other.entries_;
    version_ = (version_ > other.version_ ? version_ : other.version_) + 1;
    return *this;
  }
  HeaderMap& operator=(HeaderMap&& other) noexcept {
    if (this == &other) return *this;
    entries_ = std::move(other.entries_);
    other.entries_.clear();
    version_ = (version_ > other.version_ ? version_ : other.version_) + 1;
    other.version_ = version_ + 1;
    return *this;
  }

  // Appends a header; `name` is lower-cased.
  void add(std::string_view name, std::string_view value);
  // Replaces every value of `name` with one value (appends when absent).
  void set(std::string_view name, std::string_view value);
  // Sets only when absent.
  void setIfAbsent(std::string_view name, std::string_view value);
  // Removes every value of `name`; returns how many were removed.
  size_t remove(std::string_view name);

  // First value of `name`, or nullptr. Pointers stay valid until the map is next modified.
  const std::string* get(std::string_view name) const;
  std::string_view getOr(std::string_view name, std::string_view fallback = {}) const;
  size_t count(std::string_view name) const;
  // All values of `name` joined with ", " (RFC 9110 field combination).
  std::string getJoined(std::string_view name) const;

  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  void clear() {
    entries_.clear();
    ++version_;
  }
  // Sum of name and value lengths, for header-size limits.
  size_t byteSize() const;

  const std::vector<Entry>& entries() const { return entries_; }
  std::vector<Entry>& mutableEntries() {
    ++version_;  // the caller may change anything
    return entries_;
  }
  // Moves on with every change (and every mutableEntries() call), so a cache derived from the headers
  // (the stream's route) can tell whether they changed since. Per object; starts at 0.
  uint64_t version() const { return version_; }
  auto begin() const { return entries_.begin(); }
  auto end() const { return entries_.end(); }

 private:
  std::vector<Entry> entries_;
  uint64_t version_ = 0;
};

// Well-known names, lower-case.
namespace headers {
inline constexpr std::string_view kMethod = ":method";
inline constexpr std::string_view kPath = ":path";
inline constexpr std::string_view kAuthority = ":authority";
inline constexpr std::string_view kScheme = ":scheme";
inline constexpr std::string_view kStatus = ":status";
inline constexpr std::string_view kHost = "host";
inline constexpr std::string_view kContentLength = "content-length";
inline constexpr std::string_view kTransferEncoding = "transfer-encoding";
inline constexpr std::string_view kConnection = "connection";
inline constexpr std::string_view kKeepAlive = "keep-alive";
inline constexpr std::string_view kProxyConnection = "proxy-connection";
inline constexpr std::string_view kUpgrade = "upgrade";
inline constexpr std::string_view kTe = "te";
inline constexpr std::string_view kExpect = "expect";
inline constexpr std::string_view kRequestId = "x-request-id";
inline constexpr std::string_view kForwardedFor = "x-forwarded-for";
inline constexpr std::string_view kForwardedProto = "x-forwarded-proto";
inline constexpr std::string_view kEnvoyExpectedTimeout = "x-envoy-expected-rq-timeout-ms";
inline constexpr std::string_view kEnvoyUpstreamServiceTime = "x-envoy-upstream-service-time";
inline constexpr std::string_view kEnvoyOriginalPath = "x-envoy-original-path";
inline constexpr std::string_view kEnvoyUpstreamRqTimeoutMs = "x-envoy-upstream-rq-timeout-ms";
inline constexpr std::string_view kEnvoyMaxRetries = "x-envoy-max-retries";
inline constexpr std::string_view kEnvoyRetryOn = "x-envoy-retry-on";
inline constexpr std::string_view kEnvoyInternal = "x-envoy-internal";
inline constexpr std::string_view kEnvoyOverloaded = "x-envoy-overloaded";
inline constexpr std::string_view kServer = "server";
inline constexpr std::string_view kDate = "date";
inline constexpr std::string_view kContentType = "content-type";
inline constexpr std::string_view kUserAgent = "user-agent";
}  // namespace headers

}  // namespace skiff::http
