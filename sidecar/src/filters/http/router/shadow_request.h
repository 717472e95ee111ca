// Request mirroring (route `request_mirror_policies`): a fire-and-forget copy of the request to another
// cluster, whose response is read and dropped. The copy's authority gets Envoy's "-shadow" suffix.
#pragma once

#include <memory>
#include <string>

#include "filters/http/router/upstream_request.h"
#include "skiff/http/filter.h"

namespace skiff::router {

class ShadowRequest : public UpstreamRequest::Owner, public std::enable_shared_from_this<ShadowRequest> {
 public:
  // Starts the copy now; it keeps itself alive until the exchange ends. Returns false (and counts nothing)
  // when the cluster is unknown or has no host.
  static bool send(http::DecoderFilterCallbacks& callbacks, const std::string& cluster_name,
                   const http::HeaderMap& request, const http::Buffer& body);

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
  void done() { self_.reset(); }

  std::shared_ptr<UpstreamRequest> request_;
  std::shared_ptr<ShadowRequest> self_;  // alive while the exchange runs
};

}  // namespace skiff::router
