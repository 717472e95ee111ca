// Value, JSON and YAML round trips: types survive, strings that look like numbers stay strings.
#include <gtest/gtest.h>

#include "skiff/inject/value.h"
#include "skiff/inject/yaml_io.h"

namespace skiff::inject {
namespace {

TEST(ValueTest, JsonRoundTripKeepsOrderAndTypes) {
  Value v;
  std::string error;
  ASSERT_TRUE(parseJson(R"({"b":1,"a":[true,null,"x\n\u00e9",1.5,-3],"c":{}})", &v, &error)) << error;
  EXPECT_EQ(v.asObject()[0].first, "b");
  EXPECT_TRUE(v.find("b")->isInt());
  EXPECT_EQ(v.find("a")->asArray()[2].asString(), "x\n\xc3\xa9");
  EXPECT_EQ(toJson(v), R"({"b":1,"a":[true,null,"x\n)"
                       "\xc3\xa9"
                       R"(",1.5,-3],"c":{}})");
}

TEST(ValueTest, JsonErrorsHaveOffsets) {
  Value v;
  std::string error;
  EXPECT_FALSE(parseJson(R"({"a":})", &v, &error));
  EXPECT_NE(error.find("offset 5"), std::string::npos) << error;
  EXPECT_FALSE(parseJson(R"({"a":1} x)", &v, &error));
  EXPECT_FALSE(parseJson(R"("\ud800")", &v, &error));
  EXPECT_FALSE(parseJson(std::string(1000, '['), &v, &error));
  EXPECT_NE(error.find("deep"), std::string::npos) << error;
}

TEST(ValueTest, YamlPlainScalarsResolveQuotedStayStrings) {
  Value v;
  std::string error;
  ASSERT_TRUE(
      parseYaml("a: 80\nb: \"80\"\nc: true\nd: 'true'\ne: ~\nf: 1.5\ng: '*'\nh: |\n  x\n", &v, &error));
  EXPECT_TRUE(v.find("a")->isInt());
  EXPECT_TRUE(v.find("b")->isString());
  EXPECT_TRUE(v.find("c")->isBool());
  EXPECT_TRUE(v.find("d")->isString());
  EXPECT_TRUE(v.find("e")->isNull());
  EXPECT_EQ(v.find("f")->type(), Value::Type::kDouble);
  EXPECT_EQ(v.find("h")->asString(), "x\n");
}

TEST(ValueTest, YamlOutputReadsBackToTheSameTypes) {
  Value v = Value::object();
  for (const char* s : {"15001", "", "*", "true", "no", "on", "1e3", ".5", "-1", "a: b", "x\ny\n", "x\ny",
                        "{}\n", "  lead"}) {
    v.set(std::string("k") + std::to_string(v.size()), s);
  }
  v.set("int", 7);
  v.set("bool", false);
  v.set("list", Value(Array{Value(1), Value("1")}));
  v.set("empty", Value::object());
  Value back;
  std::string error;
  ASSERT_TRUE(parseYaml(toYaml(v), &back, &error)) << error;
  EXPECT_EQ(back, v) << toYaml(v);
}

TEST(ValueTest, ObjectEqualityIgnoresKeyOrder) {
  Value a, b;
  std::string error;
  ASSERT_TRUE(parseJson(R"({"x":1,"y":[1,2]})", &a, &error));
  ASSERT_TRUE(parseJson(R"({"y":[1,2],"x":1})", &b, &error));
  EXPECT_EQ(a, b);
  ASSERT_TRUE(parseJson(R"({"y":[2,1],"x":1})", &b, &error));
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace skiff::inject
