// HeaderMap: case folding (8 bytes at a time, with a byte tail) must match a byte-by-byte reference.
#include "skiff/http/header_map.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace skiff::http {
namespace {

char referenceLower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}

TEST(HeaderMapTest, AddLowerCasesNamesAndKeepsValues) {
  HeaderMap m;
  m.add("X-Envoy-Expected-RQ-Timeout-Ms", "Value-Kept");
  m.add("Host", "Example.COM");
  EXPECT_EQ(m.entries()[0].first, "x-envoy-expected-rq-timeout-ms");
  EXPECT_EQ(m.entries()[0].second, "Value-Kept");
  EXPECT_EQ(m.entries()[1].first, "host");
  EXPECT_EQ(m.getOr("HOST"), "Example.COM");
  ASSERT_NE(m.get("x-ENVOY-expected-rq-timeout-ms"), nullptr);
  EXPECT_EQ(m.get("x-envoy-expected-rq-timeout-mt"), nullptr);  // differs in the overlapping tail only
  EXPECT_EQ(m.get("y-envoy-expected-rq-timeout-ms"), nullptr);  // differs in the first 8 bytes only
}

TEST(HeaderMapTest, SetRemoveCountIgnoreCase) {
  HeaderMap m;
  m.add("x-a", "1");
  m.add("X-A", "2");
  m.add("x-b", "3");
  EXPECT_EQ(m.count("X-a"), 2u);
  EXPECT_EQ(m.getJoined("x-A"), "1, 2");
  m.set("X-A", "9");
  EXPECT_EQ(m.count("x-a"), 1u);
  EXPECT_EQ(m.getOr("x-a"), "9");
  EXPECT_EQ(m.remove("X-B"), 1u);
  EXPECT_EQ(m.size(), 1u);
}

TEST(HeaderMapTest, NonLettersAndHighBytesAreNotFolded) {
  // '@' and '[' border 'A' and 'Z'; bytes >= 0x80 must stay as they are.
  const std::string name = std::string("@[`{AZaz") + "\x80\xc1\xda\xff" + "-_09";
  std::string folded = name;
  toLowerInPlace(folded);
  for (size_t i = 0; i < name.size(); ++i) EXPECT_EQ(folded[i], referenceLower(name[i])) << i;
  EXPECT_FALSE(equalsIgnoreCase("@", "`"));
  EXPECT_FALSE(equalsIgnoreCase("[[[[[[[[[", "{{{{{{{{{"));
  EXPECT_FALSE(equalsIgnoreCase("\xc1\xc1\xc1\xc1\xc1\xc1\xc1\xc1", "\xe1\xe1\xe1\xe1\xe1\xe1\xe1\xe1"));
}

TEST(HeaderMapTest, FoldingMatchesByteReferenceAtEveryLength) {
  std::mt19937 rng(7);
  const std::string alphabet = std::string("aAzZ@[`{-_09") + "\x80\xff";
  for (int iter = 0; iter < 20000; ++iter) {
    const size_t n = rng() % 41;
    std::string s(n, ' ');
    for (char& c : s) c = alphabet[rng() % alphabet.size()];
    std::string lowered = s;
    toLowerInPlace(lowered);
    std::string other = s;
    if (n > 0) other[rng() % n] = alphabet[rng() % alphabet.size()];
    bool same = true;
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(lowered[i], referenceLower(s[i])) << "length " << n;
      if (referenceLower(s[i]) != referenceLower(other[i])) same = false;
    }
    ASSERT_EQ(equalsIgnoreCase(s, other), same) << "length " << n;
    HeaderMap m;
    m.add(s, "v");
    ASSERT_EQ(m.entries()[0].first, lowered);
    ASSERT_EQ(m.get(other) != nullptr, same);
  }
}

}  // namespace
}  // namespace skiff::http
