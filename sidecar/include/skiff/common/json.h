// JSON string escaping shared by the admin API, stats renderers and JSON access logs.
#pragma once

#include <string>
#include <string_view>

namespace skiff {

// Appends `in` escaped for use inside a JSON string (no surrounding quotes).
void appendJsonEscaped(std::string_view in, std::string& out);

}  // namespace skiff
