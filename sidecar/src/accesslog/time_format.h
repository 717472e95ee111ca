// START_TIME formatting: strftime plus Envoy's extensions, split into pieces once at parse time.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace skiff::accesslog {

// Supported beyond strftime (always UTC): %E<n>S / %E*S (seconds with n / 9 fractional digits),
// %<n>f / %f (n / 9 fractional digits, no dot), %s (seconds since the epoch). An empty format is Envoy's
// default, %Y-%m-%dT%H:%M:%E3SZ, which has a hand-written fast path.
class TimeFormat {
 public:
  TimeFormat() = default;
  explicit TimeFormat(std::string_view format);
  void format(std::chrono::system_clock::time_point t, std::string& out) const;

 private:
  enum class Kind { kStrftime, kFraction, kEpochSeconds };
  struct Piece {
    Kind kind;
    std::string text;  // strftime pattern
    int digits = 0;    // fractional digits
  };
  bool default_ = true;
  std::vector<Piece> pieces_;
};

}  // namespace skiff::accesslog
