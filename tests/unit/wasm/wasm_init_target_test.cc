// init::Targets / InitScope: what a listener waits for before it goes active (remote Wasm code).
#include <gtest/gtest.h>

#include "skiff/common/init_target.h"

namespace skiff::init {
namespace {

TEST(InitTargets, ReadyOnceTheLastTargetIsDoneAndTheCallbackRunsOnce) {
  InitScope scope;
  ASSERT_EQ(InitScope::current(), scope.targets().get());
  auto a = InitScope::current()->add("a");
  auto b = InitScope::current()->add("b");
  int fired = 0;
  scope.targets()->onReady([&] { ++fired; });
  EXPECT_FALSE(scope.targets()->ready());
  EXPECT_EQ(scope.targets()->pending(), (std::vector<std::string>{"a", "b"}));
  b();
  b();  // a second call of the same marker does nothing
  EXPECT_FALSE(scope.targets()->ready());
  EXPECT_EQ(fired, 0);
  a();
  EXPECT_TRUE(scope.targets()->ready());
  EXPECT_EQ(fired, 1);
}

TEST(InitTargets, ScopesNestAndMarkersOutliveTheirTargets) {
  EXPECT_EQ(InitScope::current(), nullptr);  // nothing waits outside a scope
  std::function<void()> late;
  {
    InitScope outer;
    {
      InitScope inner;
      EXPECT_EQ(InitScope::current(), inner.targets().get());
      late = InitScope::current()->add("x");
    }
    EXPECT_EQ(InitScope::current(), outer.targets().get());
    EXPECT_TRUE(outer.targets()->ready());
  }
  EXPECT_EQ(InitScope::current(), nullptr);
  late();  // the listener that waited is gone: harmless
}

TEST(InitTargets, TheCallbackMayDropTheTargets) {
  auto targets = std::make_shared<Targets>();
  auto done = targets->add("t");
  Targets* raw = targets.get();
  raw->onReady([&] { targets.reset(); });  // as the listener manager does when it installs the listener
  done();
  EXPECT_EQ(targets, nullptr);
}

// Plugin names repeat across filter chains: each target is its own, and a copied marker is still one marker.
TEST(InitTargets, SameNamedTargetsAreDistinctAndCopiesShareTheFlag) {
  auto targets = std::make_shared<Targets>();
  auto first = targets->add("wasm plugin 'p' code.remote");
  auto second = targets->add("wasm plugin 'p' code.remote");
  int fired = 0;
  targets->onReady([&] { ++fired; });
  std::function<void()> copy = first;
  first();
  copy();  // the same target: must not mark the second one ready
  EXPECT_FALSE(targets->ready());
  EXPECT_EQ(targets->pending().size(), 1u);
  EXPECT_EQ(fired, 0);
  second();
  EXPECT_TRUE(targets->ready());
  EXPECT_EQ(fired, 1);
}

}  // namespace
}  // namespace skiff::init
