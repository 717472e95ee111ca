// JSON Patch diffs: applying the diff to the original gives the target, with RFC 6901 escaping.
#include <gtest/gtest.h>

#include "skiff/inject/json_patch.h"

namespace skiff::inject {
namespace {

Value j(const char* text) {
  Value v;
  std::string error;
  EXPECT_TRUE(parseJson(text, &v, &error)) << error;
  return v;
}

TEST(JsonPatchTest, DiffAppliesBack) {
  Value from =
      j(R"({"metadata":{"name":"p","labels":{"a/b":"1"}},"spec":{"containers":[{"name":"app"}],"x":1}})");
  Value to = j(R"({"metadata":{"name":"p","labels":{"a/b":"2","c~d":"3"},"annotations":{"k":"v"}},)"
               R"("spec":{"containers":[{"name":"app"},{"name":"skiff"}],"initContainers":[{"name":"i"}]}})");
  Value patch = jsonPatchDiff(from, to);
  std::string text = toJson(patch);
  EXPECT_NE(text.find(R"("/metadata/labels/a~1b")"), std::string::npos) << text;
  EXPECT_NE(text.find(R"("/metadata/labels/c~0d")"), std::string::npos) << text;
  EXPECT_NE(text.find(R"({"op":"add","path":"/spec/containers/1")"), std::string::npos) << text;
  EXPECT_NE(text.find(R"({"op":"remove","path":"/spec/x"})"), std::string::npos) << text;
  Value applied = from;
  std::string error;
  ASSERT_TRUE(applyJsonPatch(patch, &applied, &error)) << error;
  EXPECT_EQ(applied, to);
}

TEST(JsonPatchTest, ReorderedListIsReplaced) {
  Value from = j(R"({"c":[1,2]})");
  Value to = j(R"({"c":[0,1,2]})");
  Value patch = jsonPatchDiff(from, to);
  EXPECT_EQ(toJson(patch), R"([{"op":"replace","path":"/c","value":[0,1,2]}])");
  std::string error;
  ASSERT_TRUE(applyJsonPatch(patch, &from, &error));
  EXPECT_EQ(from, to);
  EXPECT_EQ(jsonPatchDiff(to, to).size(), 0u);
}

TEST(JsonPatchTest, ApplyErrors) {
  Value doc = j(R"({"a":{}})");
  std::string error;
  EXPECT_FALSE(applyJsonPatch(j(R"([{"op":"add","path":"/x/y","value":1}])"), &doc, &error));
  EXPECT_FALSE(applyJsonPatch(j(R"([{"op":"remove","path":"/nope"}])"), &doc, &error));
  EXPECT_FALSE(applyJsonPatch(j(R"([{"op":"add","path":"/a/b"}])"), &doc, &error));
  EXPECT_EQ(doc, j(R"({"a":{}})"));
}

}  // namespace
}  // namespace skiff::inject
