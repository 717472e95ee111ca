// Reading an Envoy DataSource (filename / inline_string / inline_bytes / environment_variable): one reader
// for every config that carries one (TLS material, Lua and Wasm code, direct_response bodies, ...).
#pragma once

#include <string>

#include "envoy/config/core/v3/base.pb.h"

namespace skiff::config {

// What an unset DataSource (no specifier) means for the caller.
enum class IfUnset {
  kEmpty,  // the bytes are empty (an optional field)
  kError,  // a config error: the field needs a value
};

// The bytes of `source`. `field` is the DataSource's config path (e.g. "route.direct_response.body"); every
// error is std::invalid_argument whose message starts with that path (plus ".filename" or
// ".environment_variable" where it applies) and says what went wrong. Files are read whole; a directory or
// unreadable file is an error, an empty file is not.
std::string readDataSource(const envoy::config::core::v3::DataSource& source, const std::string& field,
                           IfUnset if_unset = IfUnset::kEmpty);

// Where the bytes come from, for logs and error messages: the file name, "<inline>", "$NAME" for an
// environment variable, "" when unset.
std::string dataSourceOrigin(const envoy::config::core::v3::DataSource& source);

}  // namespace skiff::config
