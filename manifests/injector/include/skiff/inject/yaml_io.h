// Kubernetes YAML streams in and out of Value trees.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "skiff/inject/value.h"

namespace skiff::inject {

// Parses a multi-document YAML stream. Plain scalars resolve as YAML 1.2's core schema (null, bool, int,
// float); quoted and block scalars stay strings. Empty documents come back as null Values.
bool parseYamlStream(std::string_view text, std::vector<Value>* docs, std::string* error);
bool parseYaml(std::string_view text, Value* out, std::string* error);

// Block-style YAML. Strings a YAML 1.1 or 1.2 reader would take for another type ("15001", "true", "no",
// "") are quoted, so kubectl and the API server read back exactly these types.
std::string toYaml(const Value& v);
// Documents separated by "---".
std::string toYamlStream(const std::vector<Value>& docs);

}  // namespace skiff::inject
