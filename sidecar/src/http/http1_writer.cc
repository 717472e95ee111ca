// HTTP/1.1 serialization of heads, chunks and trailers.
#include "skiff/http/http1_writer.h"

#include <cstdint>
#include <cstring>

namespace skiff::http1 {

namespace {

// Nonzero when some byte of `x` is below 0x20 (the has-less-than word trick); CR, LF and NUL are such
// bytes, but so is a TAB, which is fine: the caller then looks at the bytes one by one.
inline uint64_t lowBytes(uint64_t x) {
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  constexpr uint64_t kHighs = 0x8080808080808080ULL;
  return (x - kOnes * 0x20) & ~x & kHighs;
}

inline bool isBad(char c) {
  return c == '\r' || c == '\n' || c == '\0';
}

bool bytesSafe(const char* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (isBad(p[i])) return false;
  }
  return true;
}

// No CR, LF or NUL. Eight bytes at a time; a tail shorter than eight is read as the string's last eight
// bytes (overlapping), so only strings under eight bytes take the byte loop.
bool isSafe(std::string_view s) {
  const char* p = s.data();
  const size_t n = s.size();
  if (n < 8) return bytesSafe(p, n);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t x;
    std::memcpy(&x, p + i, 8);
    if (lowBytes(x) != 0 && !bytesSafe(p + i, 8)) return false;
  }
  if (i == n) return true;
  uint64_t x;
  std::memcpy(&x, p + n - 8, 8);
  return lowBytes(x) == 0 || bytesSafe(p + n - 8, 8);
}

void writeField(std::string_view name, std::string_view value, std::string& out) {
  if (name.empty() || !isSafe(name) || !isSafe(value)) return;
  out.append(name).append(": ").append(value).append("\r\n");
}

// Two passes: which fields go out and their size, then one resize and plain copies (one append per
// field piece cost a call and a capacity check each).
void writeRegularFields(const skiff::http::HeaderMap& h, bool skip_host, std::string& out) {
  const auto& entries = h.entries();
  auto wanted = [skip_host](const std::string& name) {
    return !name.empty() && name[0] != ':' && !(skip_host && name == skiff::http::headers::kHost);
  };
  if (entries.size() > 64) {  // more than the bitmask holds: the simple way
    for (const auto& [name, value] : entries) {
      if (wanted(name)) writeField(name, value, out);
    }
    return;
  }
  uint64_t keep = 0;
  size_t bytes = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    const auto& [name, value] = entries[i];
    if (!wanted(name) || !isSafe(name) || !isSafe(value)) continue;
    keep |= uint64_t{1} << i;
    bytes += name.size() + value.size() + 4;
  }
  const size_t start = out.size();
  out.resize(start + bytes);
  char* p = out.data() + start;
  for (uint64_t k = keep; k != 0; k &= k - 1) {
    const auto& [name, value] = entries[static_cast<size_t>(__builtin_ctzll(k))];
    std::memcpy(p, name.data(), name.size());
    p += name.size();
    *p++ = ':';
    *p++ = ' ';
    std::memcpy(p, value.data(), value.size());
    p += value.size();
    *p++ = '\r';
    *p++ = '\n';
  }
}

// The request line's parts must not carry spaces either.
bool isSafeToken(std::string_view s) {
  if (s.empty() || !isSafe(s)) return false;
  return std::memchr(s.data(), ' ', s.size()) == nullptr;
}

}  // namespace

void writeRequestHead(const skiff::http::HeaderMap& h, std::string& out) {
  namespace hdr = skiff::http::headers;
  std::string_view method = h.getOr(hdr::kMethod, "GET");
  const std::string* authority = h.get(hdr::kAuthority);
  const std::string* path = h.get(hdr::kPath);
  std::string_view target = path ? std::string_view(*path) : std::string_view("/");
  if (path == nullptr && method == "CONNECT" && authority != nullptr) target = *authority;
  if (!isSafeToken(method)) method = "GET";
  if (!isSafeToken(target)) target = "/";
  out.append(method).append(" ").append(target).append(" HTTP/1.1\r\n");
  if (authority != nullptr) writeField("host", *authority, out);
  writeRegularFields(h, authority != nullptr, out);
  out.append("\r\n");
}

void writeResponseHead(const skiff::http::HeaderMap& h, std::string& out, int version_minor,
                       std::string_view reason) {
  std::string_view status = h.getOr(skiff::http::headers::kStatus);
  const bool valid = status.size() == 3 && status[0] >= '1' && status[0] <= '9' && status[1] >= '0' &&
                     status[1] <= '9' && status[2] >= '0' && status[2] <= '9';
  if (!valid) status = "500";
  const int code = (status[0] - '0') * 100 + (status[1] - '0') * 10 + (status[2] - '0');
  if (reason.empty() || !isSafe(reason)) reason = reasonPhrase(code);
  out.append(version_minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ").append(status).append(" ").append(reason);
  out.append("\r\n");
  writeRegularFields(h, false, out);
  out.append("\r\n");
}

void writeChunk(std::string_view data, std::string& out) {
  if (data.empty()) return;
  char hex[17];
  int n = 0;
  for (size_t v = data.size(); v != 0; v >>= 4) hex[n++] = "0123456789abcdef"[v & 0xf];
  while (n > 0) out.push_back(hex[--n]);
  out.append("\r\n").append(data).append("\r\n");
}

void writeLastChunk(const skiff::http::HeaderMap* trailers, std::string& out) {
  out.append("0\r\n");
  if (trailers != nullptr) writeRegularFields(*trailers, false, out);
  out.append("\r\n");
}

std::string_view reasonPhrase(int code) {
  switch (code) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 102:
      return "Processing";
    case 103:
      return "Early Hints";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 203:
      return "Non-Authoritative Information";
    case 204:
      return "No Content";
    case 205:
      return "Reset Content";
    case 206:
      return "Partial Content";
    case 207:
      return "Multi-Status";
    case 208:
      return "Already Reported";
    case 226:
      return "IM Used";
    case 300:
      return "Multiple Choices";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 305:
      return "Use Proxy";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 402:
      return "Payment Required";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 406:
      return "Not Acceptable";
    case 407:
      return "Proxy Authentication Required";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 411:
      return "Length Required";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Payload Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 416:
      return "Range Not Satisfiable";
    case 417:
      return "Expectation Failed";
    case 421:
      return "Misdirected Request";
    case 422:
      return "Unprocessable Entity";
    case 423:
      return "Locked";
    case 424:
      return "Failed Dependency";
    case 425:
      return "Too Early";
    case 426:
      return "Upgrade Required";
    case 428:
      return "Precondition Required";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 451:
      return "Unavailable For Legal Reasons";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    case 506:
      return "Variant Also Negotiates";
    case 507:
      return "Insufficient Storage";
    case 508:
      return "Loop Detected";
    case 510:
      return "Not Extended";
    case 511:
      return "Network Authentication Required";
    default:
      return "";
  }
}

}  // namespace skiff::http1
