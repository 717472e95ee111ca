// START_TIME rendering: pre-split strftime patterns with Envoy's fractional-second extensions.
#include "accesslog/time_format.h"

#include <charconv>
#include <ctime>

namespace skiff::accesslog {
namespace {

void appendFraction(int64_t nanos, int digits, std::string& out) {
  char buf[9];
  for (int i = 8; i >= 0; --i) {
    buf[i] = static_cast<char>('0' + nanos % 10);
    nanos /= 10;
  }
  out.append(buf, static_cast<size_t>(digits));
}

void append2(int v, std::string& out) {
  out += static_cast<char>('0' + v / 10);
  out += static_cast<char>('0' + v % 10);
}

}  // namespace

TimeFormat::TimeFormat(std::string_view format) {
  if (format.empty() || format == "%Y-%m-%dT%H:%M:%E3SZ") return;  // default fast path
  default_ = false;
  auto strftimePiece = [&]() -> std::string& {
    if (pieces_.empty() || pieces_.back().kind != Kind::kStrftime)
      pieces_.push_back({Kind::kStrftime, {}, 0});
    return pieces_.back().text;
  };
  for (size_t i = 0; i < format.size(); ++i) {
    char c = format[i];
    if (c != '%' || i + 1 >= format.size()) {
      strftimePiece() += c;
      continue;
    }
    char n = format[i + 1];
    if (n == 'E' && i + 3 < format.size() && format[i + 3] == 'S' &&
        ((format[i + 2] >= '1' && format[i + 2] <= '9') || format[i + 2] == '*')) {
      strftimePiece() += "%S.";
      pieces_.push_back({Kind::kFraction, {}, format[i + 2] == '*' ? 9 : format[i + 2] - '0'});
      i += 3;
    } else if (n >= '1' && n <= '9' && i + 2 < format.size() && format[i + 2] == 'f') {
      pieces_.push_back({Kind::kFraction, {}, n - '0'});
      i += 2;
    } else if (n == 'f') {
      pieces_.push_back({Kind::kFraction, {}, 9});
      i += 1;
    } else if (n == 's') {
      pieces_.push_back({Kind::kEpochSeconds, {}, 0});
      i += 1;
    } else {
      strftimePiece() += c;
      strftimePiece() += n;
      i += 1;
    }
  }
}

void TimeFormat::format(std::chrono::system_clock::time_point t, std::string& out) const {
  auto since = t.time_since_epoch();
  auto secs = std::chrono::floor<std::chrono::seconds>(since);
  int64_t nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(since - secs).count();
  std::time_t tt = static_cast<std::time_t>(secs.count());
  std::tm tm{};
  gmtime_r(&tt, &tm);
  if (default_) {
    char year[8];
    auto r = std::to_chars(year, year + sizeof(year), tm.tm_year + 1900);
    out.append(year, r.ptr);
    out += '-';
    append2(tm.tm_mon + 1, out);
    out += '-';
    append2(tm.tm_mday, out);
    out += 'T';
    append2(tm.tm_hour, out);
    out += ':';
    append2(tm.tm_min, out);
    out += ':';
    append2(tm.tm_sec, out);
    out += '.';
    appendFraction(nanos, 3, out);
    out += 'Z';
    return;
  }
  for (const auto& p : pieces_) {
    switch (p.kind) {
      case Kind::kStrftime: {
        char buf[256];
        size_t n = std::strftime(buf, sizeof(buf), p.text.c_str(), &tm);
        out.append(buf, n);
        break;
      }
      case Kind::kFraction:
        appendFraction(nanos, p.digits, out);
        break;
      case Kind::kEpochSeconds: {
        char buf[24];
        auto r = std::to_chars(buf, buf + sizeof(buf), static_cast<int64_t>(secs.count()));
        out.append(buf, r.ptr);
        break;
      }
    }
  }
}

}  // namespace skiff::accesslog
