// handle:httpCall(): one HTTP/1.1 request to a configured cluster on the worker's connection pools.
#pragma once

#include <asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "filters/http/router/upstream_request.h"
#include "skiff/http/filter.h"

namespace skiff::filters::lua {

class LuaHttpCall : public router::UpstreamRequest::Owner, public std::enable_shared_from_this<LuaHttpCall> {
 public:
  // `headers` is null on failure (reset, timeout, no host): the caller fakes Envoy's 503.
  using Done = std::function<void(std::unique_ptr<http::HeaderMap> headers, std::string body)>;

  // Starts the call; it keeps itself alive until it completes or is cancelled. Returns nullptr with
  // `*unknown_cluster` set when the cluster does not exist, or nullptr when it has no host (`done` is not
  // called in either case). A zero `timeout` means none.
  static std::shared_ptr<LuaHttpCall> start(http::StreamCallbacks& callbacks, uint32_t buffer_limit,
                                            const std::string& cluster, http::HeaderMap headers,
                                            std::string body, std::chrono::milliseconds timeout, Done done,
                                            bool* unknown_cluster);
  // No callback after this; the upstream exchange is abandoned.
  void cancel();

  explicit LuaHttpCall(asio::io_context& io) : timer_(io) {}

  void onUpstreamConnected(const upstream::UpstreamConnection&) override {}
  void onUpstreamHeaders(std::unique_ptr<http::HeaderMap> headers, bool end_stream) override;
  void onUpstreamData(http::Buffer& data, bool end_stream) override;
  void onUpstreamTrailers(std::unique_ptr<http::HeaderMap>) override { complete(); }
  void onUpstreamReset(router::ResetReason, std::string_view, bool) override { fail(); }
  void onUpstreamWriteBackedUp(bool) override {}

 private:
  void complete();
  void fail();
  void finish(std::unique_ptr<http::HeaderMap> headers);

  asio::steady_timer timer_;
  std::shared_ptr<router::UpstreamRequest> upstream_;
  std::shared_ptr<LuaHttpCall> self_;
  std::unique_ptr<http::HeaderMap> response_headers_;
  std::string body_;
  uint32_t buffer_limit_ = 0;
  bool starting_ = false;  // inside start(): a completion now must wait until the script has yielded
  Done done_;
};

}  // namespace skiff::filters::lua
