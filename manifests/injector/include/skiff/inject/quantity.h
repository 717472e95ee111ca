// Kubernetes resource quantities ("100m", "1024Mi", "4000m", "1.5G"): validation and canonical form.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace skiff::inject {

// The canonical text the API server would store ("4000m" → "4", "1024Mi" → "1Gi", "0.5" → "500m");
// nullopt when `text` is not a quantity (or negative, or too large to represent exactly).
std::optional<std::string> canonicalQuantity(std::string_view text);

}  // namespace skiff::inject
