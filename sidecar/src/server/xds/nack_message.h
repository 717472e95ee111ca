// The NACK text of an xDS response: Envoy's head ("Error adding/updating cluster(s)") and each failure.
#pragma once

#include <string>
#include <vector>

namespace skiff::server {

inline std::string nackMessage(const std::string& head, const std::vector<std::string>& errors) {
  std::string out = head;
  for (size_t i = 0; i < errors.size(); ++i) out += (i ? ", " : " ") + errors[i];
  return out;
}

}  // namespace skiff::server
