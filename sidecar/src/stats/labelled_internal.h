// What the renderers ask of the labelled families (internal to skiff_stats).
#pragma once

#include <string_view>

#include "stats/render_util.h"

namespace skiff::stats {

// True (and *out filled: namespaced metric name and label pairs) when `name` is a series of a
// LabelledMetrics; the Prometheus renderer uses it instead of Envoy's regex tag extraction.
bool labelledTags(std::string_view name, ExtractedName* out);

}  // namespace skiff::stats
