// Helpers shared by the stats renderers (internal to skiff_stats).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace skiff::stats {

// Appends `in` as the inside of a JSON string literal.

// Envoy's tag extraction for Prometheus: the metric name left after removing every extracted tag value,
// and the tags (Prometheus label name, value) in extraction order.
struct ExtractedName {
  std::string name;
  std::vector<std::pair<std::string, std::string>> tags;
};
ExtractedName extractTags(std::string_view stat_name);

}  // namespace skiff::stats
