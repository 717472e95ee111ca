// The router: the terminal HTTP filter that sends a request upstream, with timeouts, retries and
// circuit breaking, and streams the response back through the encoder filters.
#pragma once

#include <asio/steady_timer.hpp>
#include <memory>
#include <optional>

#include "filters/http/router/h2_upstream_request.h"
#include "filters/http/router/upstream_request.h"
#include "skiff/filters/http_filter_registry.h"
#include "skiff/http/filter.h"
#include "skiff/router/route_table.h"
#include "skiff/stats/stats.h"
#include "skiff/upstream/thread_local_cluster.h"

namespace skiff::router {

// Router config plus the HCM-level router stats (http.<prefix>.*), built once per HCM.
struct RouterConfig {
  RouterConfig(stats::Store& store, const std::string& stat_prefix);
  bool suppress_envoy_headers = false;
  bool respect_expected_rq_timeout = false;
  stats::Counter no_route, no_cluster, rq_redirect, rq_direct_response, rq_total,
      rq_reset_after_downstream_response_started;
};

class RouterFilter : public http::StreamDecoderFilter, public UpstreamRequest::Owner {
 public:
  explicit RouterFilter(const RouterConfig& config) : config_(config) {}
  ~RouterFilter() override;

  // StreamDecoderFilter
  void setDecoderFilterCallbacks(http::DecoderFilterCallbacks& callbacks) override {
    callbacks_ = &callbacks;
  }
  http::HeadersStatus decodeHeaders(http::HeaderMap& headers, bool end_stream) override;
  http::DataStatus decodeData(http::Buffer& data, bool end_stream) override;
  http::TrailersStatus decodeTrailers(http::HeaderMap& trailers) override;
  void onDestroy() override;

  // UpstreamRequest::Owner
  void onUpstreamConnected(const upstream::UpstreamConnection& conn) override;
  void onUpstreamHeaders(std::unique_ptr<http::HeaderMap> headers, bool end_stream) override;
  void onUpstreamData(http::Buffer& data, bool end_stream) override;
  void onUpstreamTrailers(std::unique_ptr<http::HeaderMap> trailers) override;
  void onUpstreamReset(ResetReason reason, std::string_view details, bool no_response_on_reused) override;
  void onUpstreamWriteBackedUp(bool backed_up) override;

 private:
  enum class RetryTrigger { kStatus, kReset, kConnectFailure, kPerTryTimeout, kRefusedStream };

  void startAttempt();
  void onRequestComplete();
  bool tryRetry(RetryTrigger trigger, uint32_t status);
  void onGlobalTimeout();
  void onPerTryTimeout();
  void sendUpstreamFailure(uint32_t status, http::ResponseFlag flag, std::string_view body,
                           std::string_view details);
  void finishAttemptStats(bool success);
  void cleanup();
  void resumeUpstreamReading();
  void sendShadows();

  const RouterConfig& config_;
  http::DecoderFilterCallbacks* callbacks_ = nullptr;
  const RouteEntry* route_ = nullptr;
  upstream::ThreadLocalCluster* cluster_ = nullptr;
  upstream::ClusterInfoConstSharedPtr cluster_info_;  // keeps stats/limits alive across cluster updates
  http::HeaderMap* request_headers_ = nullptr;
  GenericUpstreamPtr upstream_;  // HTTP/1.1 or HTTP/2 attempt (h2_upstream_request.h)
  upstream::HostSharedPtr previous_host_;

  RetryPolicy retry_policy_;
  uint32_t retries_left_ = 0;
  uint32_t attempt_ = 0;
  bool retry_body_complete_ = true;  // the whole body is retained, so an attempt can be replayed
  http::Buffer retained_body_;
  std::unique_ptr<http::HeaderMap> retained_trailers_;
  // Mirroring: the request as sent upstream and its body, kept until the request completes.
  std::vector<std::string> shadow_clusters_;
  std::unique_ptr<http::HeaderMap> shadow_headers_;
  http::Buffer shadow_body_;
  bool request_complete_ = false;
  bool downstream_response_started_ = false;
  bool transparent_replay_done_ = false;
  bool holds_request_resource_ = false;
  bool holds_retry_resource_ = false;
  bool upstream_paused_ = false;
  bool destroyed_ = false;

  std::chrono::milliseconds global_timeout_{0};
  std::chrono::milliseconds per_try_timeout_{0};
  std::optional<asio::steady_timer> global_timer_;
  std::optional<asio::steady_timer> per_try_timer_;
  std::optional<asio::steady_timer> backoff_timer_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

void registerRouterFilter();

}  // namespace skiff::router
