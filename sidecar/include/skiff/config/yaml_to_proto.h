#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <google/protobuf/message.h>

namespace skiff::config {

// Parses YAML (or JSON, which is YAML) into `message`, guided by its descriptor:
// scalars are converted by the target field's type, `Any` is resolved through the
// generated descriptor pool, `udpa.type.v1.TypedStruct` / `xds.type.v3.TypedStruct`
// are unwrapped into the type they name, snake_case and lowerCamelCase keys are both
// accepted. Unknown fields are dropped with a warning naming their path; fields that
// the v3 API removed (the message's `reserved` names) are errors.
// `root_path` prefixes every path in messages (empty for a whole document).
// Throws ConfigError.
void loadMessageYaml(std::string_view text, google::protobuf::Message& message,
                     std::vector<std::string>& warnings, std::string_view root_path = "");

}  // namespace skiff::config
