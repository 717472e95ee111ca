// Kubernetes quantities: canonical spellings as the API server stores them, and rejections.
#include <gtest/gtest.h>

#include "skiff/inject/quantity.h"

namespace skiff::inject {
namespace {

TEST(QuantityTest, Canonical) {
  EXPECT_EQ(canonicalQuantity("4000m"), "4");
  EXPECT_EQ(canonicalQuantity("2000m"), "2");
  EXPECT_EQ(canonicalQuantity("100m"), "100m");
  EXPECT_EQ(canonicalQuantity("0.5"), "500m");
  EXPECT_EQ(canonicalQuantity("1024Mi"), "1Gi");
  EXPECT_EQ(canonicalQuantity("128Mi"), "128Mi");
  EXPECT_EQ(canonicalQuantity("1.5G"), "1500M");
  EXPECT_EQ(canonicalQuantity("1e3"), "1k");
  EXPECT_EQ(canonicalQuantity("0"), "0");
  EXPECT_EQ(canonicalQuantity("1536Ki"), "1536Ki");
}

TEST(QuantityTest, Rejects) {
  for (const char* bad : {"", "abc", "1.2.3", "-1", "10x", "1Xi", "m", "1e99", "1 Gi"}) {
    EXPECT_FALSE(canonicalQuantity(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace skiff::inject
