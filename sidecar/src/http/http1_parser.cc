// Strict HTTP/1.1 request and response head parsing (RFC 9112 sections 2-6), built for request smuggling to
// fail.
#include "skiff/http/http1_parser.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>

namespace skiff::http1 {

using skiff::http::equalsIgnoreCase;

namespace {

constexpr std::array<bool, 256> makeTokenTable() {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}
constexpr std::array<bool, 256> kTokenTable = makeTokenTable();

constexpr std::array<char, 256> makeLowerTable() {
  std::array<char, 256> t{};
  for (int c = 0; c < 256; ++c) t[c] = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
  return t;
}
constexpr std::array<char, 256> kLowerTable = makeLowerTable();

// HeaderMap::add without its temporaries: names are lower-cased while copied.
void addField(http::HeaderMap& headers, std::string_view name, std::string_view value) {
  auto& entries = headers.mutableEntries();
  if (entries.capacity() == 0) entries.reserve(16);
  auto& e = entries.emplace_back();
  e.first.resize(name.size());
  for (size_t i = 0; i < name.size(); ++i) e.first[i] = kLowerTable[static_cast<unsigned char>(name[i])];
  e.second.assign(value);
}

inline bool isOws(char c) {
  return c == ' ' || c == '\t';
}

// CTLs other than HTAB, and DEL: never allowed in field values or reason phrases.
inline bool isCtl(char ch) {
  const auto c = static_cast<unsigned char>(ch);
  return (c < 0x20 && c != '\t') || c == 0x7f;
}

std::string_view trimOws(std::string_view s) {
  while (!s.empty() && isOws(s.front())) s.remove_prefix(1);
  while (!s.empty() && isOws(s.back())) s.remove_suffix(1);
  return s;
}

// Calls fn(element) for each OWS-trimmed element of a comma-separated list (empty ones included).
template <typename Fn>
void forEachListElement(std::string_view list, Fn&& fn) {
  while (true) {
    size_t comma = list.find(',');
    fn(trimOws(list.substr(0, comma)));
    if (comma == std::string_view::npos) return;
    list.remove_prefix(comma + 1);
  }
}

// Digits only, no sign, no overflow.
bool parseDecimal(std::string_view s, uint64_t* out) {
  if (s.empty()) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

bool startsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && equalsIgnoreCase(s.substr(0, prefix.size()), prefix);
}

}  // namespace

namespace detail {

bool isTokenChar(unsigned char c) {
  return kTokenTable[c];
}

bool hasInvalidValueChar(std::string_view v) {
  // Eight bytes at a time: flag words holding a byte below 0x20 or a DEL, then look closer (HTAB is fine).
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  constexpr uint64_t kHighs = 0x8080808080808080ULL;
  const char* p = v.data();
  const size_t n = v.size();
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t x;
    std::memcpy(&x, p + i, 8);
    const uint64_t below_space = (x - kOnes * 0x20) & ~x & kHighs;
    const uint64_t y = x ^ (kOnes * 0x7f);
    const uint64_t del = (y - kOnes) & ~y & kHighs;
    if ((below_space | del) == 0) continue;
    for (size_t j = i; j < i + 8; ++j) {
      if (isCtl(p[j])) return true;
    }
  }
  for (; i < n; ++i) {
    if (isCtl(p[i])) return true;
  }
  return false;
}

bool splitHeaderLine(std::string_view line, std::string_view* name, std::string_view* value,
                     std::string_view* detail) {
  *detail = details::kCodecError;
  if (line.empty() || isOws(line.front())) return false;  // obs-fold or junk.
  size_t name_len = 0;
  for (; name_len < line.size(); ++name_len) {
    const char c = line[name_len];
    if (c == ':') break;
    if (!kTokenTable[static_cast<unsigned char>(c)]) {
      if (!isOws(c)) *detail = details::kInvalidCharacters;
      return false;
    }
  }
  if (name_len == 0 || name_len == line.size()) return false;  // Empty name, or no colon.
  const std::string_view v = trimOws(line.substr(name_len + 1));
  if (hasInvalidValueChar(v)) {
    *detail = details::kInvalidCharacters;
    return false;
  }
  *name = line.substr(0, name_len);
  *value = v;
  return true;
}

}  // namespace detail

// ---- HeadParserBase ----

void HeadParserBase::resetBase() {
  headers_.clear();
  error_ = {};
  version_minor_ = 1;
  keep_alive_ = true;
  framing_ = Framing::kNone;
  content_length_ = 0;
  host_count_ = 0;
  cl_added_ = false;
  has_cl_ = has_te_ = te_chunked_last_ = te_only_chunked_ = te_bad_ = false;
  conn_close_ = conn_keep_alive_ = conn_upgrade_ = has_upgrade_ = expect_continue_ = false;
  scanned_ = line_start_ = first_line_start_ = first_line_end_ = head_end_ = 0;
  in_first_line_ = true;
  start_line_parsed_ = false;
  host_value_ = {};
}

HeadParserBase::Status HeadParserBase::scanHead(std::string_view data, int start_line_error) {
  const char* base = data.data();
  size_t pos = scanned_;
  while (pos < data.size()) {
    const void* lf = std::memchr(base + pos, '\n', data.size() - pos);
    if (lf == nullptr) {
      pos = data.size();
      break;
    }
    const size_t i = static_cast<const char*>(lf) - base;
    if (i == line_start_ || base[i - 1] != '\r') return fail(400, details::kCodecError);  // Bare LF.
    const size_t line_len = i - 1 - line_start_;
    pos = i + 1;
    if (in_first_line_) {
      if (i + 1 > limits_.max_request_line) return fail(start_line_error, details::kCodecError);
      if (line_len == 0) {  // RFC 9112 2.2: empty lines before the start line are ignored.
        line_start_ = first_line_start_ = pos;
        continue;
      }
      in_first_line_ = false;
      first_line_end_ = pos;
    } else if (line_len == 0) {
      head_end_ = pos;
      scanned_ = pos;
      return Status::kDone;
    }
    line_start_ = pos;
    if (!in_first_line_ && pos - first_line_end_ > limits_.max_header_bytes) {
      return fail(431, details::kHeadersTooLarge);
    }
  }
  scanned_ = pos;
  if (in_first_line_) {
    if (data.size() > limits_.max_request_line) return fail(start_line_error, details::kCodecError);
  } else if (data.size() - first_line_end_ > limits_.max_header_bytes) {
    return fail(431, details::kHeadersTooLarge);
  }
  return Status::kNeedMore;
}

bool HeadParserBase::parseHeaderSection(std::string_view section) {
  size_t count = 0;
  while (!section.empty()) {
    const size_t lf = section.find('\n');  // scanHead guaranteed every LF follows a CR.
    std::string_view line = section.substr(0, lf - 1);
    section.remove_prefix(lf + 1);
    if (++count > limits_.max_headers) {
      fail(431, details::kTooManyHeaders);
      return false;
    }
    std::string_view name, value, detail;
    if (!detail::splitHeaderLine(line, &name, &value, &detail)) {
      fail(400, detail);
      return false;
    }
    switch (name.size()) {
      case 4:
        if (is_request_ && equalsIgnoreCase(name, "host")) {
          ++host_count_;
          host_value_ = value;
          continue;  // Becomes ":authority".
        }
        break;
      case 6:
        if (equalsIgnoreCase(name, "expect") && equalsIgnoreCase(value, "100-continue")) {
          expect_continue_ = true;
        }
        break;
      case 7:
        if (equalsIgnoreCase(name, "upgrade") && !value.empty()) has_upgrade_ = true;
        break;
      case 10:
        if (equalsIgnoreCase(name, "connection")) {
          forEachListElement(value, [&](std::string_view t) {
            if (equalsIgnoreCase(t, "close"))
              conn_close_ = true;
            else if (equalsIgnoreCase(t, "keep-alive"))
              conn_keep_alive_ = true;
            else if (equalsIgnoreCase(t, "upgrade"))
              conn_upgrade_ = true;
          });
        }
        break;
      case 14:
        if (equalsIgnoreCase(name, "content-length")) {
          // RFC 9110 8.6: a list of identical values may be collapsed into one; anything else is fatal.
          bool ok = true;
          std::string_view first;
          forEachListElement(value, [&](std::string_view e) {
            uint64_t v = 0;
            if (!ok || !parseDecimal(e, &v) || (has_cl_ && v != content_length_)) {
              ok = false;
              return;
            }
            if (first.empty()) first = e;
            has_cl_ = true;
            content_length_ = v;
          });
          if (!ok) {
            fail(400, details::kCodecError);
            return false;
          }
          if (cl_added_) continue;  // Identical duplicate: collapsed.
          cl_added_ = true;
          addField(headers_, name, first);
          continue;
        }
        break;
      case 17:
        if (equalsIgnoreCase(name, "transfer-encoding")) {
          // Codings accumulate over repeated fields. chunked must be the last one and appear only once.
          forEachListElement(value, [&](std::string_view coding) {
            const bool chunked = equalsIgnoreCase(coding, "chunked");
            te_only_chunked_ = !has_te_ && chunked;
            if (coding.empty() || te_chunked_last_) te_bad_ = true;  // Empty, or something after chunked.
            te_chunked_last_ = chunked;
            has_te_ = true;
          });
        }
        break;
      default:
        break;
    }
    addField(headers_, name, value);
  }
  return true;
}

// ---- RequestParser ----

void RequestParser::reset() {
  resetBase();
  is_connect_ = absolute_form_ = false;
}

HeadParserBase::Status RequestParser::feed(std::string_view data, size_t* consumed) {
  *consumed = 0;
  if (error_.status != 0) return Status::kError;
  if (head_end_ != 0) {
    *consumed = head_end_;
    return Status::kDone;
  }
  const Status s = scanHead(data, 414);
  if (s == Status::kError) return s;
  if (!start_line_parsed_ && first_line_end_ != 0) {
    // Parsed as soon as it is complete, so garbage (e.g. TLS to a plaintext port) fails early.
    start_line_parsed_ = true;
    if (parseRequestLine(data.substr(first_line_start_, first_line_end_ - 2 - first_line_start_)) ==
        Status::kError) {
      return Status::kError;
    }
  }
  if (s == Status::kNeedMore) return s;
  if (!parseHeaderSection(data.substr(first_line_end_, head_end_ - 2 - first_line_end_))) {
    return Status::kError;
  }
  if (finish() == Status::kError) return Status::kError;
  *consumed = head_end_;
  return Status::kDone;
}

HeadParserBase::Status RequestParser::parseRequestLine(std::string_view line) {
  const size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos || sp1 == 0) return fail(400, details::kCodecError);
  const std::string_view method = line.substr(0, sp1);
  for (char c : method) {
    if (!kTokenTable[static_cast<unsigned char>(c)]) return fail(400, details::kCodecError);
  }
  const size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return fail(400, details::kCodecError);  // No HTTP/0.9.
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  if (target.empty()) return fail(400, details::kCodecError);  // Includes a doubled SP.
  for (char ch : target) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c == 0x7f) return fail(400, details::kCodecError);
  }
  const std::string_view version = line.substr(sp2 + 1);
  if (version == "HTTP/1.1") {
    version_minor_ = 1;
  } else if (version == "HTTP/1.0") {
    version_minor_ = 0;
  } else if (version.size() == 8 && version.substr(0, 5) == "HTTP/" && version[5] >= '0' &&
             version[5] <= '9' && version[6] == '.' && version[7] >= '0' && version[7] <= '9') {
    return fail(505, details::kCodecError);
  } else {
    return fail(400, details::kCodecError);
  }

  headers_.add(http::headers::kMethod, method);
  is_connect_ = method == "CONNECT";
  if (is_connect_) {
    // authority-form; Envoy leaves ":path" out for CONNECT.
    headers_.add(http::headers::kAuthority, target);
    return Status::kNeedMore;
  }
  if (target.front() == '/' || (target == "*" && method == "OPTIONS")) {
    headers_.add(http::headers::kPath, target);
    headers_.add(http::headers::kAuthority, "");  // Filled from Host by finish(), or removed.
    return Status::kNeedMore;
  }
  size_t scheme_len = 0;
  if (startsWithIgnoreCase(target, "http://"))
    scheme_len = 7;
  else if (startsWithIgnoreCase(target, "https://"))
    scheme_len = 8;
  if (scheme_len == 0) return fail(400, details::kInvalidUrl);
  // absolute-form: RFC 9112 3.2.2 makes the URL's authority win over Host.
  const std::string_view rest = target.substr(scheme_len);
  const size_t auth_end = std::min(rest.find_first_of("/?#"), rest.size());
  const std::string_view authority = rest.substr(0, auth_end);
  if (authority.empty()) return fail(400, details::kInvalidUrl);
  const std::string_view path = rest.substr(auth_end);
  if (path.empty()) {
    headers_.add(http::headers::kPath, "/");
  } else if (path.front() != '/') {
    headers_.add(http::headers::kPath, std::string("/").append(path));
  } else {
    headers_.add(http::headers::kPath, path);
  }
  headers_.add(http::headers::kAuthority, authority);
  absolute_form_ = true;
  return Status::kNeedMore;
}

HeadParserBase::Status RequestParser::finish() {
  // Host: RFC 9112 3.2 wants exactly one in HTTP/1.1, at most one in HTTP/1.0.
  if (host_count_ > 1) return fail(400, details::kCodecError);
  if (version_minor_ == 1 && (host_count_ == 0 || (host_value_.empty() && !absolute_form_))) {
    return fail(400, details::kMissingHost);
  }
  if (!absolute_form_ && !is_connect_) {
    auto& entries = headers_.mutableEntries();
    if (host_value_.empty()) {
      entries.erase(entries.begin() + 2);  // HTTP/1.0 without Host.
    } else {
      entries[2].second.assign(host_value_);
    }
  }
  host_value_ = {};

  if (has_te_) {
    if (version_minor_ == 0) return fail(400, details::kInvalidTransferEncoding);
    if (has_cl_) return fail(400, details::kChunkedContentLength);
    if (!te_only_chunked_ || te_bad_) return fail(501, details::kInvalidTransferEncoding);
    framing_ = Framing::kChunked;
  } else if (has_cl_ && content_length_ > 0) {
    framing_ = Framing::kContentLength;
  } else {
    framing_ = Framing::kNone;
  }
  keep_alive_ = version_minor_ == 1 ? !conn_close_ : (conn_keep_alive_ && !conn_close_);
  if (version_minor_ == 0) expect_continue_ = false;  // RFC 9110 10.1.1: ignored for HTTP/1.0.
  return Status::kDone;
}

// ---- ResponseParser ----

void ResponseParser::reset() {
  resetBase();
  status_code_ = 0;
  reason_.clear();
}

HeadParserBase::Status ResponseParser::feed(std::string_view data, size_t* consumed) {
  *consumed = 0;
  if (error_.status != 0) return Status::kError;
  if (head_end_ != 0) {
    *consumed = head_end_;
    return Status::kDone;
  }
  const Status s = scanHead(data, 400);
  if (s == Status::kError) return s;
  if (!start_line_parsed_ && first_line_end_ != 0) {
    start_line_parsed_ = true;
    if (parseStatusLine(data.substr(first_line_start_, first_line_end_ - 2 - first_line_start_)) ==
        Status::kError) {
      return Status::kError;
    }
  }
  if (s == Status::kNeedMore) return s;
  if (!parseHeaderSection(data.substr(first_line_end_, head_end_ - 2 - first_line_end_))) {
    return Status::kError;
  }
  if (finish() == Status::kError) return Status::kError;
  *consumed = head_end_;
  return Status::kDone;
}

HeadParserBase::Status ResponseParser::parseStatusLine(std::string_view line) {
  // HTTP-version SP 3DIGIT SP [reason]; a missing final SP is tolerated, as most clients do.
  if (line.size() < 12 || line[8] != ' ') return fail(400, details::kCodecError);
  const std::string_view version = line.substr(0, 8);
  if (version == "HTTP/1.1")
    version_minor_ = 1;
  else if (version == "HTTP/1.0")
    version_minor_ = 0;
  else
    return fail(400, details::kCodecError);
  const std::string_view code = line.substr(9, 3);
  if (code[0] < '1' || code[0] > '9' || code[1] < '0' || code[1] > '9' || code[2] < '0' || code[2] > '9') {
    return fail(400, details::kCodecError);
  }
  status_code_ = (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
  std::string_view reason;
  if (line.size() > 12) {
    if (line[12] != ' ') return fail(400, details::kCodecError);
    reason = line.substr(13);
    if (detail::hasInvalidValueChar(reason)) return fail(400, details::kInvalidCharacters);
  }
  reason_.assign(reason);
  headers_.add(http::headers::kStatus, code);
  return Status::kNeedMore;
}

HeadParserBase::Status ResponseParser::finish() {
  if (has_te_ && has_cl_) return fail(400, details::kChunkedContentLength);
  keep_alive_ = version_minor_ == 1 ? !conn_close_ : (conn_keep_alive_ && !conn_close_);
  if (status_code_ < 200 || status_code_ == 204 || status_code_ == 304 || request_head_) {
    framing_ = Framing::kNone;
  } else if (has_te_) {
    if (te_bad_) return fail(400, details::kInvalidTransferEncoding);
    // RFC 9112 6.3: chunked not last means the body runs until the connection closes.
    framing_ = te_chunked_last_ ? Framing::kChunked : Framing::kUntilClose;
  } else if (has_cl_) {
    framing_ = content_length_ > 0 ? Framing::kContentLength : Framing::kNone;
  } else {
    framing_ = Framing::kUntilClose;
  }
  if (framing_ == Framing::kUntilClose) keep_alive_ = false;
  return Status::kDone;
}

}  // namespace skiff::http1
