// Small helpers shared by the admin handlers: query strings, JSON strings, canned responses.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "skiff/server/admin.h"

namespace skiff::server::admin {

using Response = AdminServer::Response;

inline constexpr std::string_view kTextType = "text/plain; charset=UTF-8";
inline constexpr std::string_view kJsonType = "application/json";
inline constexpr std::string_view kHtmlType = "text/html; charset=UTF-8";

// Decoded query parameters in request order. A key without '=' has an empty value and still counts as present
// (`?usedonly`, `?include_eds`).
class Query {
 public:
  static Query parse(std::string_view query);
  // First value of `key`, or nullptr.
  const std::string* get(std::string_view key) const;
  bool has(std::string_view key) const { return get(key) != nullptr; }
  const std::vector<std::pair<std::string, std::string>>& params() const { return params_; }

 private:
  std::vector<std::pair<std::string, std::string>> params_;
};

// %XX decoding; '+' stays literal because regexes (`?filter=a+`) use it. Bad escapes are kept as written.
std::string percentDecode(std::string_view in);

// Appends `s` as a quoted, escaped JSON string.
void appendJsonString(std::string& out, std::string_view s);

inline Response text(uint32_t status, std::string body) {
  return Response{status, std::string(kTextType), std::move(body)};
}
inline Response json(uint32_t status, std::string body) {
  return Response{status, std::string(kJsonType), std::move(body)};
}

}  // namespace skiff::server::admin
