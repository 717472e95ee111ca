// Request mirroring (route `request_mirror_policies`): a fire-and-forget copy of the request to another
// cluster, whose response is read and dropped. The copy's authority gets Envoy's "-shadow" suffix.
#pragma once

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "filters/http/router/upstream_request.h"
#include "skiff/http/filter.h"

namespace skiff::router {

class ShadowRequest : public UpstreamRequest::Owner {
 public:
  // Starts the copy now. It lives until the exchange ends, `timeout` (the route's; 0: none) passes, or the
  // worker's loop is destroyed: its deadline's wait owns it, so nothing is left behind at shutdown. Returns
  // false (and counts nothing) when the cluster is unknown or has no host.
  static bool send(http::DecoderFilterCallbacks& callbacks, const std::string& cluster_name,
                   const http::HeaderMap& request, const http::Buffer& body,
                   std::chrono::milliseconds timeout);

  explicit ShadowRequest(asio::io_context& io) : deadline_(io) {}
  ~ShadowRequest() override;

  // "host:port" → "host-shadow:port", as Envoy names the shadow authority.
  static std::string shadowAuthority(std::string_view authority);

  void onUpstreamConnected(const upstream::UpstreamConnection&) override {}
  void onUpstreamHeaders(std::unique_ptr<http::HeaderMap>, bool end_stream) override {
    if (end_stream) done();
  }
  void onUpstreamData(http::Buffer&, bool end_stream) override {
    if (end_stream) done();
  }
  void onUpstreamTrailers(std::unique_ptr<http::HeaderMap>) override { done(); }
  void onUpstreamReset(ResetReason, std::string_view, bool) override { done(); }
  void onUpstreamWriteBackedUp(bool) override {}

 private:
  void done() {
    done_ = true;        // an expiry already queued is then not counted as a timeout
    deadline_.cancel();  // the wait's handler holds the last reference
  }

  std::shared_ptr<UpstreamRequest> request_;
  asio::steady_timer deadline_;
  bool done_ = false;
};

}  // namespace skiff::router
