// An HTTP/1.1 request from a filter (or a Wasm root context) to a configured cluster on the worker's
// connection pools, with a timeout: what Lua's httpCall() and Wasm's proxy_http_call both need.
#pragma once

#include <asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "filters/http/router/upstream_request.h"
#include "skiff/http/filter.h"

namespace skiff::filters {

// Where a callout goes out from: the worker's loop, clusters and pools (all outlive any callout).
struct CalloutTarget {
  asio::io_context* dispatcher;
  upstream::ThreadLocalClusterManager* clusters;
  upstream::ConnPoolMap* pools;
  static CalloutTarget of(http::StreamCallbacks& callbacks) {
    return {&callbacks.dispatcher(), &callbacks.clusterManager(), &callbacks.connPools()};
  }
};

class HttpCallout : public router::UpstreamRequest::Owner, public std::enable_shared_from_this<HttpCallout> {
 public:
  struct Response {
    std::unique_ptr<http::HeaderMap> headers;  // null on failure (reset, timeout, body over the limit)
    std::string body;
    std::unique_ptr<http::HeaderMap> trailers;  // null when the response had none
  };
  using Done = std::function<void(Response)>;
  enum class StartError { kNone, kUnknownCluster, kNoHost };

  // Starts the call; it keeps itself alive until it completes or is cancelled. Returns nullptr with
  // `*error` set when the cluster does not exist or has no host (`done` is not called then). `done` is
  // never called from inside start(). A zero `timeout` means none; a zero `buffer_limit` no limit.
  static std::shared_ptr<HttpCallout> start(const CalloutTarget& target, uint32_t buffer_limit,
                                            const std::string& cluster, http::HeaderMap headers,
                                            std::string body, std::chrono::milliseconds timeout, Done done,
                                            StartError* error);
  // No callback after this; the upstream exchange is abandoned.
  void cancel();

  explicit HttpCallout(asio::io_context& io) : timer_(io) {}

  void onUpstreamConnected(const upstream::UpstreamConnection&) override {}
  void onUpstreamHeaders(std::unique_ptr<http::HeaderMap> headers, bool end_stream) override;
  void onUpstreamData(http::Buffer& data, bool end_stream) override;
  void onUpstreamTrailers(std::unique_ptr<http::HeaderMap> trailers) override;
  void onUpstreamReset(router::ResetReason, std::string_view, bool) override { fail(); }
  void onUpstreamWriteBackedUp(bool) override {}

 private:
  void complete();
  void fail();
  void finish(bool ok);
  void deliver();

  asio::steady_timer timer_;
  std::shared_ptr<router::UpstreamRequest> upstream_;
  std::shared_ptr<HttpCallout> self_;
  Response response_;
  uint32_t buffer_limit_ = 0;
  bool starting_ = false;  // inside start(): a completion now is delivered from the event loop
  Done done_;
};

}  // namespace skiff::filters
