// A FakeStream whose route() behaves like the connection manager's: matched against a real route table
// from the filter manager's request headers, cached until clearRouteCache(). Counts the matches.
#pragma once

#include <memory>

#include "skiff/router/route_table.h"
#include "support/fake_stream.h"

namespace skiff::testing {

class CachingRouteStream : public FakeStream {
 public:
  const router::RouteEntry* route() override {
    if (!cached_) {
      cached_ = true;
      ++route_matches;
      const http::HeaderMap* h = fm != nullptr ? fm->requestHeaders() : nullptr;
      cached_route_ = h != nullptr && table ? table->route(*h, 0) : nullptr;
    }
    return cached_route_;
  }
  void clearRouteCache() override {
    cached_ = false;
    ++route_clears;
  }

  std::shared_ptr<const router::RouteTable> table;
  int route_matches = 0;

 private:
  bool cached_ = false;
  const router::RouteEntry* cached_route_ = nullptr;
};

}  // namespace skiff::testing
