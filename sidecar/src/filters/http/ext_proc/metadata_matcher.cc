// MetadataMatcher / ValueMatcher evaluation and the stream's dynamic metadata (created lazily).
#include "filters/http/ext_proc/metadata_matcher.h"

#include <google/protobuf/struct.pb.h>

#include <stdexcept>

#include "envoy/config/core/v3/base.pb.h"
#include "envoy/type/matcher/v3/metadata.pb.h"
#include "envoy/type/matcher/v3/value.pb.h"
#include "skiff/http/stream_info.h"

namespace skiff::filters::ext {

using google::protobuf::Value;

ValueMatcher ValueMatcher::fromProto(const envoy::type::matcher::v3::ValueMatcher& proto,
                                     const std::string& path) {
  using P = envoy::type::matcher::v3::ValueMatcher;
  ValueMatcher m;
  switch (proto.match_pattern_case()) {
    case P::kNullMatch:
      m.kind_ = Kind::kNull;
      break;
    case P::kDoubleMatch:
      m.kind_ = Kind::kDouble;
      if (proto.double_match().has_range()) {
        m.range_ = true;
        m.start_ = proto.double_match().range().start();
        m.end_ = proto.double_match().range().end();
      } else {
        m.exact_ = proto.double_match().exact();
      }
      break;
    case P::kStringMatch:
      m.kind_ = Kind::kString;
      m.string_ = router::StringMatcher::fromProto(proto.string_match(), path + ".string_match");
      break;
    case P::kBoolMatch:
      m.kind_ = Kind::kBool;
      m.flag_ = proto.bool_match();
      break;
    case P::kPresentMatch:
      m.kind_ = Kind::kPresent;
      m.flag_ = proto.present_match();
      break;
    case P::kListMatch:
      if (!proto.list_match().has_one_of())
        throw std::invalid_argument(path + ".list_match.one_of is required");
      m.kind_ = Kind::kList;
      m.children_.push_back(fromProto(proto.list_match().one_of(), path + ".list_match.one_of"));
      break;
    case P::kOrMatch:
      m.kind_ = Kind::kOr;
      for (int i = 0; i < proto.or_match().value_matchers_size(); ++i) {
        m.children_.push_back(fromProto(proto.or_match().value_matchers(i),
                                        path + ".or_match.value_matchers[" + std::to_string(i) + "]"));
      }
      if (m.children_.size() < 2) throw std::invalid_argument(path + ".or_match needs at least two matchers");
      break;
    case P::MATCH_PATTERN_NOT_SET:
      throw std::invalid_argument(path + ": a match pattern is required");
  }
  return m;
}

bool ValueMatcher::match(const Value* value) const {
  const bool present = value != nullptr && value->kind_case() != Value::KIND_NOT_SET;
  switch (kind_) {
    case Kind::kNull:
      return present && value->kind_case() == Value::kNullValue;
    case Kind::kDouble:
      if (!present || value->kind_case() != Value::kNumberValue) return false;
      return range_ ? value->number_value() >= start_ && value->number_value() < end_
                    : value->number_value() == exact_;
    case Kind::kString:
      return present && value->kind_case() == Value::kStringValue && string_.match(value->string_value());
    case Kind::kBool:
      return present && value->kind_case() == Value::kBoolValue && value->bool_value() == flag_;
    case Kind::kPresent:
      return flag_ && present;
    case Kind::kList:
      if (!present || value->kind_case() != Value::kListValue) return false;
      for (const auto& v : value->list_value().values()) {
        if (children_[0].match(&v)) return true;
      }
      return false;
    case Kind::kOr:
      for (const auto& c : children_) {
        if (c.match(value)) return true;
      }
      return false;
  }
  return false;
}

MetadataMatcher MetadataMatcher::fromProto(const envoy::type::matcher::v3::MetadataMatcher& proto,
                                           const std::string& path) {
  MetadataMatcher m;
  m.filter_ = proto.filter();
  if (m.filter_.empty()) throw std::invalid_argument(path + ".filter is required");
  for (const auto& seg : proto.path()) {
    if (seg.key().empty()) throw std::invalid_argument(path + ".path: every segment needs a key");
    m.path_.push_back(seg.key());
  }
  if (m.path_.empty()) throw std::invalid_argument(path + ".path needs at least one segment");
  if (!proto.has_value()) throw std::invalid_argument(path + ".value is required");
  m.value_ = ValueMatcher::fromProto(proto.value(), path + ".value");
  m.invert_ = proto.invert();
  return m;
}

bool MetadataMatcher::match(const envoy::config::core::v3::Metadata* metadata) const {
  const Value* value = nullptr;
  if (metadata != nullptr) {
    auto ns = metadata->filter_metadata().find(filter_);
    if (ns != metadata->filter_metadata().end()) {
      const google::protobuf::Struct* s = &ns->second;
      for (size_t i = 0; i < path_.size(); ++i) {
        auto it = s->fields().find(path_[i]);
        if (it == s->fields().end()) break;
        if (i + 1 == path_.size()) {
          value = &it->second;
        } else if (it->second.kind_case() == Value::kStructValue) {
          s = &it->second.struct_value();
        } else {
          break;
        }
      }
    }
  }
  return value_.match(value) != invert_;
}

envoy::config::core::v3::Metadata& dynamicMetadata(http::StreamInfo& info) {
  if (!info.dynamic_metadata) info.dynamic_metadata = std::make_shared<envoy::config::core::v3::Metadata>();
  return *info.dynamic_metadata;
}

void mergeDynamicMetadata(http::StreamInfo& info, const std::string& ns,
                          const google::protobuf::Struct& fields) {
  auto& target = (*dynamicMetadata(info).mutable_filter_metadata())[ns];
  for (const auto& [k, v] : fields.fields()) (*target.mutable_fields())[k] = v;
}

}  // namespace skiff::filters::ext
