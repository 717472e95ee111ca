// Envoy's header mutation rules as ext_proc/ext_authz apply them (MutationChecker) and ListMatcher.
#include "filters/http/ext_proc/ext_common.h"

#include <gtest/gtest.h>

#include "envoy/config/common/mutation_rules/v3/mutation_rules.pb.h"
#include "envoy/type/matcher/v3/string.pb.h"

namespace skiff::filters::ext {
namespace {

using Result = MutationChecker::Result;
using Rules = envoy::config::common::mutation_rules::v3::HeaderMutationRules;

TEST(MutationCheckerTest, Defaults) {
  MutationChecker c;
  EXPECT_EQ(c.checkSet("x-user", "v"), Result::kAllow);
  EXPECT_EQ(c.checkSet(":path", "/new"), Result::kAllow);
  EXPECT_EQ(c.checkSet(":status", "201"), Result::kAllow);
  for (const char* routing : {"host", ":authority", ":method", ":scheme"}) {
    EXPECT_EQ(c.checkSet(routing, "x"), Result::kIgnore) << routing;
  }
  EXPECT_EQ(c.checkSet("x-envoy-retry-on", "5xx"), Result::kIgnore);
  EXPECT_EQ(c.checkRemove("x-user"), Result::kAllow);
  EXPECT_EQ(c.checkRemove(":path"), Result::kIgnore);
  EXPECT_EQ(c.checkRemove("host"), Result::kIgnore);
  // Never on the wire: CR/LF/NUL, spaces or a colon inside the name.
  EXPECT_EQ(c.checkSet("x-a", "bad\r\nvalue"), Result::kIgnore);
  EXPECT_EQ(c.checkSet("x a", "v"), Result::kIgnore);
  EXPECT_EQ(c.checkSet("x:a", "v"), Result::kIgnore);
  EXPECT_EQ(c.checkSet("", "v"), Result::kIgnore);
}

TEST(MutationCheckerTest, Rules) {
  Rules rules;
  rules.mutable_allow_all_routing()->set_value(true);
  rules.mutable_allow_envoy()->set_value(true);
  rules.mutable_disallow_expression()->set_regex("x-secret-.*");
  rules.mutable_disallow_is_error()->set_value(true);
  MutationChecker c = MutationChecker::fromProto(rules, "rules");
  EXPECT_EQ(c.checkSet("host", "a"), Result::kAllow);
  EXPECT_EQ(c.checkSet("x-envoy-foo", "a"), Result::kAllow);
  EXPECT_EQ(c.checkSet("x-secret-key", "a"), Result::kError);
  EXPECT_EQ(c.checkRemove(":path"), Result::kError);

  Rules system;
  system.mutable_disallow_system()->set_value(true);
  system.mutable_allow_expression()->set_regex("x-envoy-ok");
  MutationChecker s = MutationChecker::fromProto(system, "rules");
  EXPECT_EQ(s.checkSet(":path", "/"), Result::kIgnore);
  EXPECT_EQ(s.checkSet("x-envoy-ok", "1"), Result::kAllow);
  EXPECT_EQ(s.checkSet("x-envoy-other", "1"), Result::kIgnore);

  Rules none;
  none.mutable_disallow_all()->set_value(true);
  EXPECT_EQ(MutationChecker::fromProto(none, "r").checkSet("x-a", "1"), Result::kIgnore);
}

TEST(ListMatcherTest, AnyPatternMatches) {
  envoy::type::matcher::v3::ListStringMatcher proto;
  proto.add_patterns()->set_exact("authorization");
  proto.add_patterns()->set_prefix("x-auth-");
  ListMatcher m = ListMatcher::fromProto(proto, "list");
  EXPECT_TRUE(m.matches("authorization"));
  EXPECT_TRUE(m.matches("x-auth-user"));
  EXPECT_FALSE(m.matches("cookie"));
  EXPECT_FALSE(ListMatcher().matches("anything"));
}

}  // namespace
}  // namespace skiff::filters::ext
