// The proxy-wasm serialized pairs format: u32 count, count × (u32 key_len, u32 value_len), then each key and
// value followed by a NUL byte.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace skiff::wasm {

using Pairs = std::vector<std::pair<std::string_view, std::string_view>>;

std::string serializePairs(const Pairs& pairs);
// nullopt when the buffer is malformed (lengths past the end, missing NULs). An empty buffer (or one
// shorter than the count) is an empty list, as hosts treat it.
std::optional<Pairs> parsePairs(std::string_view data);

}  // namespace skiff::wasm
