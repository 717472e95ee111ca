// xxHash64 (seed 0) of a version_info string: Envoy's `version` gauge of every xDS subscription.
#pragma once

#include <cstdint>
#include <string_view>

namespace skiff::server {

uint64_t xxHash64(std::string_view data, uint64_t seed = 0);

}  // namespace skiff::server
