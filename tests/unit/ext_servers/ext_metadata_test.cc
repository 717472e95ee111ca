// MetadataMatcher / ValueMatcher (ext_authz filter_enabled_metadata) against stream dynamic metadata, and
// the dynamic-metadata merge both ext filters use.
#include <google/protobuf/struct.pb.h>
#include <gtest/gtest.h>

#include "envoy/config/core/v3/base.pb.h"
#include "envoy/type/matcher/v3/metadata.pb.h"
#include "filters/http/ext_proc/metadata_matcher.h"
#include "skiff/config/yaml_to_proto.h"
#include "skiff/http/stream_info.h"

namespace skiff::filters::ext {
namespace {

using envoy::type::matcher::v3::MetadataMatcher;

MetadataMatcher proto(const std::string& yaml) {
  MetadataMatcher m;
  std::vector<std::string> warnings;
  config::loadMessageYaml(yaml, m, warnings);
  return m;
}

ext::MetadataMatcher matcher(const std::string& yaml) {
  return ext::MetadataMatcher::fromProto(proto(yaml), "m");
}

envoy::config::core::v3::Metadata sample() {
  envoy::config::core::v3::Metadata md;
  auto& f = *(*md.mutable_filter_metadata())["authz"].mutable_fields();
  f["user"].set_string_value("alice");
  f["level"].set_number_value(3);
  f["admin"].set_bool_value(false);
  f["nothing"].set_null_value(google::protobuf::NULL_VALUE);
  auto* groups = f["groups"].mutable_list_value();
  groups->add_values()->set_string_value("dev");
  groups->add_values()->set_string_value("ops");
  (*f["nested"].mutable_struct_value()->mutable_fields())["team"].set_string_value("blue");
  return md;
}

TEST(MetadataMatcherTest, ValueKinds) {
  const auto md = sample();
  EXPECT_TRUE(
      matcher("{filter: authz, path: [{key: user}], value: {string_match: {exact: alice}}}").match(&md));
  EXPECT_FALSE(
      matcher("{filter: authz, path: [{key: user}], value: {string_match: {exact: bob}}}").match(&md));
  EXPECT_TRUE(
      matcher("{filter: authz, path: [{key: user}], value: {string_match: {prefix: al}}}").match(&md));
  EXPECT_TRUE(matcher("{filter: authz, path: [{key: level}], value: {double_match: {exact: 3}}}").match(&md));
  EXPECT_TRUE(
      matcher("{filter: authz, path: [{key: level}], value: {double_match: {range: {start: 1, end: 4}}}}")
          .match(&md));
  EXPECT_FALSE(
      matcher("{filter: authz, path: [{key: level}], value: {double_match: {range: {start: 1, end: 3}}}}")
          .match(&md));
  EXPECT_TRUE(matcher("{filter: authz, path: [{key: admin}], value: {bool_match: false}}").match(&md));
  EXPECT_TRUE(matcher("{filter: authz, path: [{key: nothing}], value: {null_match: {}}}").match(&md));
  EXPECT_FALSE(matcher("{filter: authz, path: [{key: user}], value: {null_match: {}}}").match(&md));
  EXPECT_TRUE(matcher("{filter: authz, path: [{key: groups}], value: {list_match: {one_of: {string_match: "
                      "{exact: ops}}}}}")
                  .match(&md));
  EXPECT_TRUE(
      matcher("{filter: authz, path: [{key: nested}, {key: team}], value: {string_match: {exact: blue}}}")
          .match(&md));
  EXPECT_TRUE(matcher("{filter: authz, path: [{key: user}], value: {or_match: {value_matchers: "
                      "[{string_match: {exact: bob}}, {string_match: {exact: alice}}]}}}")
                  .match(&md));
}

TEST(MetadataMatcherTest, PresenceInvertAndMissing) {
  const auto md = sample();
  auto present = matcher("{filter: authz, path: [{key: user}], value: {present_match: true}}");
  EXPECT_TRUE(present.match(&md));
  EXPECT_FALSE(present.match(nullptr));
  auto missing = matcher("{filter: authz, path: [{key: ghost}], value: {present_match: true}}");
  EXPECT_FALSE(missing.match(&md));
  auto other_ns = matcher("{filter: other, path: [{key: user}], value: {present_match: true}}");
  EXPECT_FALSE(other_ns.match(&md));
  // A path through a non-struct stops there.
  EXPECT_FALSE(
      matcher("{filter: authz, path: [{key: user}, {key: x}], value: {present_match: true}}").match(&md));
  auto inverted =
      matcher("{filter: authz, path: [{key: ghost}], value: {present_match: true}, invert: true}");
  EXPECT_TRUE(inverted.match(&md));
  EXPECT_TRUE(inverted.match(nullptr));
}

TEST(MetadataMatcherTest, BadConfigIsRejected) {
  EXPECT_THROW(matcher("{path: [{key: a}], value: {present_match: true}}"), std::invalid_argument);
  EXPECT_THROW(matcher("{filter: f, value: {present_match: true}}"), std::invalid_argument);
  EXPECT_THROW(matcher("{filter: f, path: [{key: a}]}"), std::invalid_argument);
  EXPECT_THROW(matcher("{filter: f, path: [{key: a}], value: {}}"), std::invalid_argument);
  EXPECT_THROW(
      matcher("{filter: f, path: [{key: a}], value: {or_match: {value_matchers: [{bool_match: true}]}}}"),
      std::invalid_argument);
}

TEST(DynamicMetadataTest, MergeReplacesTopLevelKeysOnly) {
  http::StreamInfo info;
  EXPECT_EQ(info.dynamic_metadata, nullptr);
  google::protobuf::Struct a, b;
  (*a.mutable_fields())["x"].set_string_value("1");
  (*a.mutable_fields())["y"].set_string_value("1");
  (*b.mutable_fields())["y"].set_string_value("2");
  mergeDynamicMetadata(info, "ns", a);
  mergeDynamicMetadata(info, "ns", b);
  ASSERT_NE(info.dynamic_metadata, nullptr);
  const auto& f = info.dynamic_metadata->filter_metadata().at("ns").fields();
  EXPECT_EQ(f.at("x").string_value(), "1");
  EXPECT_EQ(f.at("y").string_value(), "2");
}

}  // namespace
}  // namespace skiff::filters::ext
