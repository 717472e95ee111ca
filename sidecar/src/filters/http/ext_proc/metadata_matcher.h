// Dynamic metadata for ext_authz and ext_proc: Envoy's MetadataMatcher (type.matcher.v3) evaluated against
// a stream's dynamic metadata, and the read/merge helpers both filters use.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "skiff/router/matchers.h"

namespace google::protobuf {
class Value;
class Struct;
}  // namespace google::protobuf
namespace envoy::config::core::v3 {
class Metadata;
}
namespace envoy::type::matcher::v3 {
class MetadataMatcher;
class ValueMatcher;
}  // namespace envoy::type::matcher::v3
namespace skiff::http {
struct StreamInfo;
}

namespace skiff::filters::ext {

// type.matcher.v3.ValueMatcher.
class ValueMatcher {
 public:
  // Throws std::invalid_argument naming `path` for an empty or bad matcher.
  static ValueMatcher fromProto(const envoy::type::matcher::v3::ValueMatcher& proto, const std::string& path);
  // `value` null: the path did not exist (only present_match: false... never matches, as Envoy).
  bool match(const google::protobuf::Value* value) const;

 private:
  enum class Kind { kNull, kDouble, kString, kBool, kPresent, kList, kOr };
  Kind kind_ = Kind::kPresent;
  bool flag_ = false;  // bool_match / present_match
  bool range_ = false;
  double exact_ = 0, start_ = 0, end_ = 0;
  router::StringMatcher string_;
  std::vector<ValueMatcher> children_;  // list one_of (one entry) / or_match
};

// type.matcher.v3.MetadataMatcher: the value at filter/path[0]/path[1]... in filter_metadata.
class MetadataMatcher {
 public:
  static MetadataMatcher fromProto(const envoy::type::matcher::v3::MetadataMatcher& proto,
                                   const std::string& path);
  // `metadata` may be null (no dynamic metadata yet).
  bool match(const envoy::config::core::v3::Metadata* metadata) const;

 private:
  std::string filter_;
  std::vector<std::string> path_;
  ValueMatcher value_;
  bool invert_ = false;
};

// The stream's dynamic metadata, created on first use.
envoy::config::core::v3::Metadata& dynamicMetadata(http::StreamInfo& info);
// Envoy's setDynamicMetadata: merges `fields` into namespace `ns` (top-level keys replaced).
void mergeDynamicMetadata(http::StreamInfo& info, const std::string& ns,
                          const google::protobuf::Struct& fields);

}  // namespace skiff::filters::ext
