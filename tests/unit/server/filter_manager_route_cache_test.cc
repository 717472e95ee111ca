// FilterManager::requestHeaderChanged: Envoy re-matches the route after a filter changes a request header;
// the manager skips that only when the cached route provably cannot change.
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>

#include "envoy/config/route/v3/route.pb.h"
#include "server/http/filter_manager.h"
#include "support/caching_route_stream.h"

namespace skiff::server {
namespace {

using http::HeaderMap;
using skiff::testing::CachingRouteStream;

class NullSink : public FilterManagerSink {
 public:
  void writeHeaders(HeaderMap&, bool) override {}
  void writeData(http::Buffer&, bool) override {}
  void writeTrailers(HeaderMap&) override {}
};

// Runs `action` on the request headers; the last one in the chain records the route it sees (as the
// router does).
class ActionFilter : public http::StreamDecoderFilter {
 public:
  using Action = std::function<void(http::DecoderFilterCallbacks&, HeaderMap&)>;
  explicit ActionFilter(Action action) : action_(std::move(action)) {}
  void setDecoderFilterCallbacks(http::DecoderFilterCallbacks& cb) override { callbacks_ = &cb; }
  http::HeadersStatus decodeHeaders(HeaderMap& h, bool) override {
    action_(*callbacks_, h);
    return http::HeadersStatus::kContinue;
  }

 private:
  Action action_;
  http::DecoderFilterCallbacks* callbacks_ = nullptr;
};

constexpr const char* kRoutes = R"({"virtual_hosts":[{"name":"v","domains":["*"],"routes":[
  {"name":"moved","match":{"prefix":"/moved"},"route":{"cluster":"b"}},
  {"name":"tenant","match":{"prefix":"/","headers":[{"name":"x-tenant","present_match":true}]},
   "route":{"cluster":"b"}},
  {"name":"default","match":{"prefix":"/"},"route":{"cluster":"a"}}]}]})";

class RouteCacheTest : public ::testing::Test {
 protected:
  RouteCacheTest() : fm(stream, sink, 1 << 20) {
    stream.fm = &fm;
    envoy::config::route::v3::RouteConfiguration config;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(kRoutes, &config).ok());
    stream.table = router::RouteTable::create(config);
  }

  // Filters: `first` (after the route was looked up, as a filter reading per-route config does), then
  // a terminal one recording the route name.
  void run(ActionFilter::Action first, bool lookup_first = true) {
    fm.addDecoderFilter(
        std::make_unique<ActionFilter>([lookup_first, first](http::DecoderFilterCallbacks& cb, HeaderMap& h) {
          if (lookup_first) cb.route();
          first(cb, h);
        }));
    fm.addDecoderFilter(std::make_unique<ActionFilter>([this](http::DecoderFilterCallbacks& cb, HeaderMap&) {
      const router::RouteEntry* r = cb.route();
      routed = r != nullptr ? r->name : "<none>";
    }));
    auto h = std::make_unique<HeaderMap>();
    h->add(":method", "GET");
    h->add(":path", "/start");
    h->add(":authority", "host");
    fm.decodeHeaders(std::move(h), true);
  }

  // What a script filter does: change, then report the change.
  static void add(http::DecoderFilterCallbacks& cb, HeaderMap& h, std::string_view name) {
    const uint64_t before = h.version();
    h.add(name, "v");
    cb.requestHeaderChanged(name, before);
  }
  static void replace(http::DecoderFilterCallbacks& cb, HeaderMap& h, std::string_view name,
                      std::string_view value) {
    const uint64_t before = h.version();
    h.set(name, value);
    cb.requestHeaderChanged(name, before);
  }

  CachingRouteStream stream;
  NullSink sink;
  FilterManager fm;
  std::string routed;
};

TEST_F(RouteCacheTest, AnUnroutedHeaderKeepsTheCachedRoute) {
  run([](http::DecoderFilterCallbacks& cb, HeaderMap& h) {
    add(cb, h, "x-bench-lua");
    add(cb, h, "X-Another");  // several edits in a row: each starts from the known version
  });
  EXPECT_EQ(routed, "default");
  EXPECT_EQ(stream.route_matches, 1);
  EXPECT_EQ(stream.route_clears, 0);
}

TEST_F(RouteCacheTest, APathChangeRoutesAgain) {
  run([](http::DecoderFilterCallbacks& cb, HeaderMap& h) { replace(cb, h, ":path", "/moved/x"); });
  EXPECT_EQ(routed, "moved");
  EXPECT_EQ(stream.route_matches, 2);
}

TEST_F(RouteCacheTest, AMatchedHeaderRoutesAgain) {
  run([](http::DecoderFilterCallbacks& cb, HeaderMap& h) { add(cb, h, "X-Tenant"); });
  EXPECT_EQ(routed, "tenant");
}

TEST_F(RouteCacheTest, AnUnroutedEditAfterAPathChangeStillRoutesAgain) {
  run([](http::DecoderFilterCallbacks& cb, HeaderMap& h) {
    add(cb, h, "x-a");
    replace(cb, h, ":path", "/moved");
    add(cb, h, "x-b");
  });
  EXPECT_EQ(routed, "moved");
}

// Another filter changed :path without clearing the cache; Envoy's clear on the next (unrouted) edit
// would pick that up, so the manager must clear too.
TEST_F(RouteCacheTest, AnEarlierUnclearedChangeIsNotHidden) {
  run([](http::DecoderFilterCallbacks& cb, HeaderMap& h) {
    h.set(":path", "/moved");  // no clear: the cached route is now stale
    add(cb, h, "x-bench-lua");
  });
  EXPECT_EQ(routed, "moved");
}

TEST_F(RouteCacheTest, AStaleRouteStaysWhenNothingAsksForAClear) {
  // Envoy keeps a stale route until someone clears it: so does the manager.
  run([](http::DecoderFilterCallbacks&, HeaderMap& h) { h.set(":path", "/moved"); });
  EXPECT_EQ(routed, "default");
}

TEST_F(RouteCacheTest, AnEditBeforeAnyLookupIsHarmless) {
  run([](http::DecoderFilterCallbacks& cb, HeaderMap& h) { replace(cb, h, ":path", "/moved"); },
      /*lookup_first=*/false);
  EXPECT_EQ(routed, "moved");
  EXPECT_EQ(stream.route_matches, 1);
}

TEST_F(RouteCacheTest, AnExplicitClearMakesTheNextLookupFresh) {
  run([](http::DecoderFilterCallbacks& cb, HeaderMap& h) {
    h.set(":path", "/moved");
    cb.clearRouteCache();
    cb.route();  // re-matched from the current headers
    add(cb, h, "x-bench-lua");
  });
  EXPECT_EQ(routed, "moved");
  EXPECT_EQ(stream.route_matches, 2);
}

TEST_F(RouteCacheTest, NoRouteMeansEveryEditClears) {
  stream.table.reset();  // route() finds nothing: the route table's inputs are unknown
  run([](http::DecoderFilterCallbacks& cb, HeaderMap& h) { add(cb, h, "x-bench-lua"); });
  EXPECT_EQ(routed, "<none>");
  EXPECT_EQ(stream.route_clears, 1);
}

TEST(HeaderMapVersionTest, EveryChangeMovesItOn) {
  HeaderMap h;
  uint64_t v = h.version();
  auto moved = [&] {
    const bool changed = h.version() != v;
    v = h.version();
    return changed;
  };
  h.add("a", "1");
  EXPECT_TRUE(moved());
  h.set("a", "2");
  EXPECT_TRUE(moved());
  h.set("b", "1");
  EXPECT_TRUE(moved());
  h.setIfAbsent("b", "x");
  EXPECT_FALSE(moved());
  EXPECT_EQ(h.remove("zz"), 0u);
  EXPECT_FALSE(moved());
  h.remove("b");
  EXPECT_TRUE(moved());
  h.mutableEntries();
  EXPECT_TRUE(moved());
  HeaderMap other;
  h = other;  // an assignment is a change even from a map with a lower version
  EXPECT_TRUE(moved());
  h = HeaderMap();
  EXPECT_TRUE(moved());
  h.clear();
  EXPECT_TRUE(moved());
  (void)h.get("a");
  EXPECT_FALSE(moved());
}

// A moved-from map is emptied; edited back to its old size it must not look unchanged.
TEST(HeaderMapVersionTest, MoveChangesTheSource) {
  HeaderMap src;
  src.add(":path", "/a");
  const uint64_t before = src.version();
  HeaderMap dst(std::move(src));
  EXPECT_NE(src.version(), before);
  EXPECT_TRUE(src.empty());
  EXPECT_EQ(dst.getOr(":path"), "/a");
  EXPECT_NE(dst.version(), src.version());

  HeaderMap src2;
  src2.add(":path", "/b");
  const uint64_t before2 = src2.version();
  HeaderMap dst2;
  dst2 = std::move(src2);
  EXPECT_NE(src2.version(), before2);
  EXPECT_TRUE(src2.empty());
  EXPECT_EQ(dst2.getOr(":path"), "/b");
  // Refilled the source's version still differs from the one the old content had.
  src2.add(":path", "/c");
  EXPECT_NE(src2.version(), before2);
  EXPECT_GT(src2.version(), before2);
}

}  // namespace
}  // namespace skiff::server
