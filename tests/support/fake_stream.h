// A stream for driving a FilterManager in unit tests: local replies go through the encoder filters, as in
// the connection manager, and are recorded; resets are counted.
#pragma once

#include <asio/io_context.hpp>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "server/http/filter_manager.h"
#include "skiff/http/filter.h"

namespace skiff::testing {

class FakeStream : public http::StreamCallbacks {
 public:
  http::StreamInfo& streamInfo() override { return info; }
  const router::RouteEntry* route() override { return route_entry; }
  void clearRouteCache() override { ++route_clears; }
  asio::io_context& dispatcher() override { return io; }
  upstream::ThreadLocalClusterManager& clusterManager() override { std::abort(); }
  upstream::ConnPoolMap& connPools() override { std::abort(); }
  uint64_t streamId() const override { return 1; }
  void sendLocalReply(uint32_t status, std::string_view body, std::string_view details,
                      const std::function<void(http::HeaderMap&)>& modify) override {
    info.response_code_details = std::string(details);
    auto h = std::make_unique<http::HeaderMap>();
    h->add(":status", std::to_string(status));
    if (!body.empty()) h->add("content-length", std::to_string(body.size()));
    if (modify) modify(*h);
    fm->encodeHeaders(std::move(h), body.empty());
    if (!body.empty()) {
      http::Buffer b(body);
      fm->encodeData(b, true);
    }
    local_replies.push_back(status);
  }
  void resetStream() override { ++resets; }

  asio::io_context io;
  http::StreamInfo info;
  server::FilterManager* fm = nullptr;
  const router::RouteEntry* route_entry = nullptr;
  int route_clears = 0;
  std::vector<uint32_t> local_replies;
  int resets = 0;
};

}  // namespace skiff::testing
