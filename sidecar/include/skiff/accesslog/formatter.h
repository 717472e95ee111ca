// Access-log line formatting from Envoy format strings ("%REQ(:METHOD)% %RESPONSE_CODE%") and json_format
// maps. A format is parsed once at config time into a list of segments; formatting a request walks that
// list and appends to the caller's buffer, with no parsing or regex per request.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "skiff/http/stream_info.h"

namespace skiff::accesslog {

class Formatter {
 public:
  ~Formatter();
  Formatter(const Formatter&) = delete;
  Formatter& operator=(const Formatter&) = delete;

  // Parses an Envoy text format. Returns nullptr and sets `*error` (naming the offending operator) on an
  // unknown operator, a malformed argument or an unterminated '%'.
  static std::unique_ptr<Formatter> parse(std::string_view format, std::string* error);

  // Parses Envoy's json_format: key → format string, in output order. Each line is one flat JSON object.
  // A value that is exactly one operator keeps its type (numbers stay numbers, absent → null); anything
  // else is a string with "-" for absent parts.
  static std::unique_ptr<Formatter> parseJson(const std::vector<std::pair<std::string, std::string>>& fields,
                                              std::string* error);

  // Envoy's default format (used when an access log has no format), ending in '\n'.
  static std::string_view defaultFormat();

  // Appends the formatted line for `info` to `out`. Thread-safe: a Formatter is immutable after parse.
  void format(const http::StreamInfo& info, std::string& out) const;

  struct Impl;

 private:
  explicit Formatter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace skiff::accesslog
