// RouterFilter: cluster choice, host selection, timeouts, retries with jittered backoff, and response relay.
#include "filters/http/router/router_filter.h"

#include "filters/http/router/shadow_request.h"

#include <charconv>

#include "envoy/extensions/filters/http/router/v3/router.pb.h"
#include "skiff/common/logging.h"
#include "skiff/common/random.h"
#include "skiff/upstream/conn_pool.h"
#include "skiff/upstream/transport_socket.h"

namespace skiff::router {

namespace {

std::optional<uint64_t> parseUint(const std::string* s) {
  if (s == nullptr) return std::nullopt;
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
  if (ec != std::errc() || p != s->data() + s->size()) return std::nullopt;
  return v;
}

uint64_t msSince(std::chrono::steady_clock::time_point t) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t).count());
}

bool isGrpcRequest(const http::HeaderMap& headers) {
  return headers.getOr(http::headers::kContentType).rfind("application/grpc", 0) == 0;
}

// gRPC's "TimeoutValue TimeoutUnit" (at most 8 digits; H M S m u n) in milliseconds, rounded up.
std::optional<std::chrono::milliseconds> parseGrpcTimeout(const std::string* v) {
  if (v == nullptr || v->size() < 2 || v->size() > 9) return std::nullopt;
  uint64_t n = 0;
  for (size_t i = 0; i + 1 < v->size(); ++i) {
    const char c = (*v)[i];
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  switch (v->back()) {
    case 'H':
      return std::chrono::milliseconds(n * 3600000);
    case 'M':
      return std::chrono::milliseconds(n * 60000);
    case 'S':
      return std::chrono::milliseconds(n * 1000);
    case 'm':
      return std::chrono::milliseconds(n);
    case 'u':
      return std::chrono::milliseconds((n + 999) / 1000);
    case 'n':
      return std::chrono::milliseconds((n + 999999) / 1000000);
    default:
      return std::nullopt;
  }
}

// retry_on's gRPC codes apply to a trailers-only response (grpc-status in the headers), as Envoy's.
bool grpcRetriable(const RetryPolicy& policy, const http::HeaderMap& headers) {
  const std::string* status = headers.get("grpc-status");
  if (status == nullptr) return false;
  const std::string& s = *status;
  return (s == "1" && (policy.retry_on & RetryPolicy::kGrpcCancelled)) ||
         (s == "4" && (policy.retry_on & RetryPolicy::kGrpcDeadlineExceeded)) ||
         (s == "8" && (policy.retry_on & RetryPolicy::kGrpcResourceExhausted)) ||
         (s == "14" && (policy.retry_on & RetryPolicy::kGrpcUnavailable)) ||
         (s == "13" && (policy.retry_on & RetryPolicy::kGrpcInternal));
}

std::string resetBody(std::string_view reason) {
  std::string body = "upstream connect error or disconnect/reset before headers. reset reason: ";
  body += reason;
  return body;
}

}  // namespace

RouterConfig::RouterConfig(stats::Store& store, const std::string& stat_prefix)
    : no_route(store.counter(stat_prefix + "no_route")),
      no_cluster(store.counter(stat_prefix + "no_cluster")),
      rq_redirect(store.counter(stat_prefix + "rq_redirect")),
      rq_direct_response(store.counter(stat_prefix + "rq_direct_response")),
      rq_total(store.counter(stat_prefix + "rq_total")),
      rq_reset_after_downstream_response_started(
          store.counter(stat_prefix + "rq_reset_after_downstream_response_started")) {}

RouterFilter::~RouterFilter() {
  cleanup();
}

http::HeadersStatus RouterFilter::decodeHeaders(http::HeaderMap& headers, bool end_stream) {
  http::StreamInfo& info = callbacks_->streamInfo();
  config_.rq_total.inc();
  request_headers_ = &headers;
  route_ = callbacks_->route();
  if (route_ == nullptr) {
    config_.no_route.inc();
    info.setFlag(http::ResponseFlag::kNoRouteFound);
    callbacks_->sendLocalReply(404, "", "route_not_found");
    return http::HeadersStatus::kStop;
  }
  info.route_name = route_->name;

  switch (route_->kind) {
    case RouteEntry::Kind::kDirectResponse:
      config_.rq_direct_response.inc();
      callbacks_->sendLocalReply(route_->direct_response_status, route_->direct_response_body,
                                 "direct_response",
                                 [this](http::HeaderMap& h) { route_->finalizeResponseHeaders(h); });
      return http::HeadersStatus::kStop;
    case RouteEntry::Kind::kRedirect: {
      config_.rq_redirect.inc();
      const std::string location =
          route_->redirectLocation(headers, headers.getOr(http::headers::kScheme, "http"));
      callbacks_->sendLocalReply(route_->redirect_code, "", "direct_response",
                                 [this, location](http::HeaderMap& h) {
                                   h.set("location", location);
                                   route_->finalizeResponseHeaders(h);
                                 });
      return http::HeadersStatus::kStop;
    }
    case RouteEntry::Kind::kNonForwarding:
      callbacks_->sendLocalReply(404, "", "route_not_found");
      return http::HeadersStatus::kStop;
    case RouteEntry::Kind::kRoute:
      break;
  }

  const WeightedClusterEntry* weighted = nullptr;
  std::string cluster_name;
  if (!route_->weighted_clusters.empty()) {
    weighted = route_->pickWeightedCluster(headers, random64());
    if (weighted != nullptr) {
      cluster_name = weighted->cluster_header.empty() ? weighted->name
                                                      : std::string(headers.getOr(weighted->cluster_header));
    }
  } else {
    cluster_name = route_->pickCluster(headers, random64());
  }
  cluster_ = callbacks_->clusterManager().get(cluster_name);
  if (cluster_ == nullptr) {
    config_.no_cluster.inc();
    info.setFlag(http::ResponseFlag::kNoClusterFound);
    callbacks_->sendLocalReply(503, "", "cluster_not_found");
    return http::HeadersStatus::kStop;
  }
  cluster_info_ = cluster_->infoPtr();
  info.upstream_cluster = cluster_info_->observability_name;

  // Timeouts and retries: the route's, overridden by Envoy's request headers.
  global_timeout_ = route_->timeout;
  if (auto v = parseUint(headers.get(http::headers::kEnvoyUpstreamRqTimeoutMs))) {
    global_timeout_ = std::chrono::milliseconds(*v);
  } else if (config_.respect_expected_rq_timeout) {
    // A downstream Envoy/Skiff told us how long its client waits: do not wait longer.
    if (auto expected = parseUint(headers.get(http::headers::kEnvoyExpectedTimeout))) {
      global_timeout_ = std::chrono::milliseconds(*expected);
    }
  }
  if (route_->max_grpc_timeout && isGrpcRequest(headers)) {
    // grpc_timeout_header_max: a gRPC request's own deadline (none = infinite) replaces the route timeout,
    // capped by the max (0 = no cap), less the offset. grpc-timeout itself travels on unchanged.
    std::chrono::milliseconds t{0};
    if (auto v = parseGrpcTimeout(headers.get("grpc-timeout"))) t = *v;
    const auto max = *route_->max_grpc_timeout;
    if (max.count() > 0 && (t.count() == 0 || t > max)) t = max;
    if (route_->grpc_timeout_offset && t > *route_->grpc_timeout_offset) t -= *route_->grpc_timeout_offset;
    global_timeout_ = t;
  }
  if (route_->has_retry_policy) retry_policy_ = route_->retry_policy;
  if (const std::string* on = headers.get(http::headers::kEnvoyRetryOn)) {
    retry_policy_.retry_on |= RetryPolicy::parseRetryOn(*on);
  }
  if (auto v = parseUint(headers.get(http::headers::kEnvoyMaxRetries))) {
    retry_policy_.num_retries = static_cast<uint32_t>(*v);
  }
  per_try_timeout_ = retry_policy_.per_try_timeout;
  if (auto v = parseUint(headers.get("x-envoy-upstream-rq-per-try-timeout-ms"))) {
    per_try_timeout_ = std::chrono::milliseconds(*v);
  }
  for (std::string_view h :
       {http::headers::kEnvoyUpstreamRqTimeoutMs, http::headers::kEnvoyRetryOn,
        http::headers::kEnvoyMaxRetries, std::string_view("x-envoy-upstream-rq-per-try-timeout-ms")}) {
    headers.remove(h);
  }
  retries_left_ = retry_policy_.retry_on != 0 ? retry_policy_.num_retries : 0;
  if (!config_.suppress_envoy_headers) {
    auto expected = global_timeout_;
    if (per_try_timeout_.count() > 0 && (expected.count() == 0 || per_try_timeout_ < expected)) {
      expected = per_try_timeout_;
    }
    if (expected.count() > 0) {
      headers.set(http::headers::kEnvoyExpectedTimeout, std::to_string(expected.count()));
    } else {
      headers.remove(http::headers::kEnvoyExpectedTimeout);
    }
  }

  FormatterContext ctx{&info, &headers};
  route_->finalizeRequestHeaders(headers, weighted, &ctx);
  route_->rewritePathAndHost(headers);
  if (weighted != nullptr && !weighted->host_rewrite_literal.empty()) {
    headers.set(http::headers::kAuthority, weighted->host_rewrite_literal);
  }

  for (const auto& mirror : route_->mirror_policies) {
    if (!mirror.enabled(random64())) continue;
    shadow_clusters_.push_back(
        mirror.cluster_header.empty() ? mirror.cluster : std::string(headers.getOr(mirror.cluster_header)));
  }
  if (!shadow_clusters_.empty()) shadow_headers_ = std::make_unique<http::HeaderMap>(headers);

  request_complete_ = end_stream;
  startAttempt();
  if (end_stream) onRequestComplete();
  return http::HeadersStatus::kStop;
}

http::DataStatus RouterFilter::decodeData(http::Buffer& data, bool end_stream) {
  if (retries_left_ > 0 && retry_body_complete_) {
    if (retained_body_.size() + data.size() > callbacks_->bufferLimit()) {
      retry_body_complete_ = false;  // too big to replay: this request will not be retried
      retained_body_.clear();
      retained_body_.shrink_to_fit();
    } else {
      retained_body_.append(data);
    }
  }
  if (shadow_headers_) {
    if (shadow_body_.size() + data.size() > callbacks_->bufferLimit()) {
      cluster_info_->trafficStats().retry_or_shadow_abandoned.inc();
      shadow_headers_.reset();
      shadow_body_.clear();
    } else {
      shadow_body_.append(data);
    }
  }
  request_complete_ = end_stream;
  if (upstream_) upstream_->sendData(data, end_stream);
  data.clear();
  if (end_stream) onRequestComplete();
  return http::DataStatus::kContinue;
}

http::TrailersStatus RouterFilter::decodeTrailers(http::HeaderMap& trailers) {
  retained_trailers_ = std::make_unique<http::HeaderMap>(trailers);
  request_complete_ = true;
  if (upstream_) upstream_->sendTrailers(trailers);
  onRequestComplete();
  return http::TrailersStatus::kContinue;
}

void RouterFilter::onRequestComplete() {
  if (shadow_headers_) sendShadows();
  auto& io = callbacks_->dispatcher();
  std::weak_ptr<bool> alive = alive_;
  if (global_timeout_.count() > 0 && !global_timer_) {
    global_timer_.emplace(io);
    global_timer_->expires_after(global_timeout_);
    global_timer_->async_wait([this, alive](std::error_code ec) {
      if (!ec && !alive.expired()) onGlobalTimeout();
    });
  }
  if (per_try_timeout_.count() > 0 && upstream_ && !per_try_timer_) {
    per_try_timer_.emplace(io);
    per_try_timer_->expires_after(per_try_timeout_);
    per_try_timer_->async_wait([this, alive](std::error_code ec) {
      if (!ec && !alive.expired()) onPerTryTimeout();
    });
  }
}

void RouterFilter::startAttempt() {
  http::StreamInfo& info = callbacks_->streamInfo();
  ++attempt_;
  info.attempt_count = attempt_;
  // The cluster may have changed or gone while we backed off.
  if (attempt_ > 1) {
    cluster_ = callbacks_->clusterManager().get(cluster_info_->name);
    if (cluster_ == nullptr) {
      info.setFlag(http::ResponseFlag::kNoClusterFound);
      callbacks_->sendLocalReply(503, "", "cluster_not_found");
      return;
    }
  }
  const upstream::ClusterInfo& cluster = *cluster_info_;
  if (!cluster.resources.tryAcquireRequest()) {
    cluster.trafficStats().upstream_rq_pending_overflow.inc();
    sendUpstreamFailure(503, http::ResponseFlag::kUpstreamOverflow, resetBody("overflow"),
                        "upstream_reset_before_response_started{overflow}");
    return;
  }
  holds_request_resource_ = true;
  upstream::LbContext lb;
  lb.avoid = previous_host_.get();
  lb.connection = info.connection.get();
  if (cluster.original_dst && cluster.original_dst->use_http_header) {
    lb.override_host = request_headers_->getOr(cluster.original_dst->http_header_name);
  }
  upstream::HostSharedPtr host = cluster_->chooseHost(lb);
  if (!host) {
    cluster.trafficStats().upstream_cx_none_healthy.inc();
    sendUpstreamFailure(503, http::ResponseFlag::kNoHealthyUpstream, "no healthy upstream",
                        "no_healthy_upstream");
    return;
  }
  upstream::UpstreamSource source = upstream::upstreamSourceFor(cluster, info.connection.get());
  if (cluster.transport && cluster.transport->autoSni()) {  // from the host as the client sent it
    // override_auto_sni_header when present and non-empty, else :authority (as Envoy).
    std::string_view sni_from = request_headers_->getOr(cluster.transport->autoSniHeader());
    if (sni_from.empty()) sni_from = request_headers_->getOr(http::headers::kAuthority);
    source.sni = cluster.transport->requestSni(sni_from);
  }
  if (route_->auto_host_rewrite && !host->hostname.empty()) {
    request_headers_->set(http::headers::kAuthority, host->hostname);
  }
  info.upstream_host = host->address();
  cluster.trafficStats().upstream_rq_total.inc();
  cluster.trafficStats().upstream_rq_active.inc();
  upstream::HostStats& host_stats = host->stats();
  host_stats.rq_total.fetch_add(1, std::memory_order_relaxed);
  host_stats.rq_active.fetch_add(1, std::memory_order_relaxed);

  const bool head = request_headers_->getOr(http::headers::kMethod) == "HEAD";
  upstream_ = makeUpstream(*this, callbacks_->dispatcher(), callbacks_->connPools(), cluster_info_, host,
                           head, callbacks_->bufferLimit(), std::move(source), info.protocol);
  auto attempt = upstream_;  // start() may fail synchronously and replace upstream_
  const bool replay = attempt_ > 1;
  attempt->start(*request_headers_, replay ? &retained_body_ : nullptr,
                 request_complete_ && !(replay && retained_trailers_));
  if (replay && retained_trailers_ && upstream_ == attempt) attempt->sendTrailers(*retained_trailers_);
  if (request_complete_ && upstream_ == attempt) {
    per_try_timer_.reset();
    onRequestComplete();
  }
}

void RouterFilter::onUpstreamConnected(const upstream::UpstreamConnection& conn) {
  callbacks_->streamInfo().upstream_local_address = conn.local_address;
  if (!conn.tls_info && conn.transport.tlsInfo() != nullptr) {
    conn.tls_info = std::make_shared<const tls::TlsConnectionInfo>(*conn.transport.tlsInfo());
  }
  callbacks_->streamInfo().upstream_tls = conn.tls_info;  // the source reporter's principals (istio.stats)
}

void RouterFilter::onUpstreamHeaders(std::unique_ptr<http::HeaderMap> headers, bool end_stream) {
  http::StreamInfo& info = callbacks_->streamInfo();
  const upstream::ClusterInfo& cluster = *cluster_info_;
  uint32_t code = 0;
  if (auto v = parseUint(headers->get(http::headers::kStatus))) code = static_cast<uint32_t>(*v);

  const bool retriable_status =
      retry_policy_.retry_on != 0 &&
      (retry_policy_.shouldRetryStatus(code) || (end_stream && grpcRetriable(retry_policy_, *headers)));
  if (retriable_status && retries_left_ > 0 && request_complete_ && retry_body_complete_) {
    cluster.trafficStats().recordResponse(code, /*is_retry_attempt_result=*/true);
    finishAttemptStats(false);
    if (tryRetry(RetryTrigger::kStatus, code)) return;
    cluster.trafficStats().recordResponse(code, false);
  } else {
    if (retriable_status && attempt_ > 1) {
      cluster.trafficStats().upstream_rq_retry_limit_exceeded.inc();
      info.setFlag(http::ResponseFlag::kUpstreamRetryLimitExceeded);
    }
    cluster.trafficStats().recordResponse(code, false);
    if (attempt_ > 1 && !retriable_status) cluster.trafficStats().upstream_rq_retry_success.inc();
  }
  const auto started = upstream_ ? upstream_->startTime() : std::chrono::steady_clock::now();
  cluster.trafficStats().recordResponseTime(msSince(started));
  per_try_timer_.reset();
  info.first_upstream_rx = info.elapsed();
  if (!config_.suppress_envoy_headers) {
    headers->set(http::headers::kEnvoyUpstreamServiceTime, std::to_string(msSince(started)));
  }
  FormatterContext ctx{&info, request_headers_};
  route_->finalizeResponseHeaders(*headers, nullptr, &ctx);
  downstream_response_started_ = true;
  if (end_stream) {
    // The attempt is over: let go of it (without cancelling) so teardown cannot close a reusable connection.
    finishAttemptStats(true);
    upstream_.reset();
  }
  callbacks_->encodeHeaders(std::move(headers), end_stream);
  if (end_stream) cleanup();
}

void RouterFilter::onUpstreamData(http::Buffer& data, bool end_stream) {
  if (end_stream) {
    finishAttemptStats(true);
    upstream_.reset();
  }
  callbacks_->encodeData(data, end_stream);
  if (end_stream) {
    cleanup();
    return;
  }
  if (!destroyed_ && upstream_ && !upstream_paused_ && callbacks_->downstreamBackedUp()) {
    upstream_paused_ = true;
    upstream_->pauseReading(true);
    std::weak_ptr<bool> alive = alive_;
    callbacks_->onDownstreamWritable([this, alive] {
      if (!alive.expired()) resumeUpstreamReading();
    });
  }
}

void RouterFilter::resumeUpstreamReading() {
  upstream_paused_ = false;
  if (upstream_) upstream_->pauseReading(false);
}

void RouterFilter::onUpstreamTrailers(std::unique_ptr<http::HeaderMap> trailers) {
  finishAttemptStats(true);
  upstream_.reset();
  callbacks_->encodeTrailers(std::move(trailers));
  cleanup();
}

void RouterFilter::onUpstreamWriteBackedUp(bool backed_up) {
  callbacks_->pauseDownstreamReading(backed_up);
}

void RouterFilter::onUpstreamReset(ResetReason reason, std::string_view details, bool no_response_on_reused) {
  finishAttemptStats(false);
  const upstream::ClusterInfo& cluster = *cluster_info_;
  http::StreamInfo& info = callbacks_->streamInfo();
  if (downstream_response_started_) {
    cluster.trafficStats().upstream_rq_rx_reset.inc();
    config_.rq_reset_after_downstream_response_started.inc();
    info.setFlag(http::ResponseFlag::kUpstreamConnectionTermination);
    upstream_.reset();
    callbacks_->resetStream();
    return;
  }
  // A kept-alive connection the upstream had already closed: replay once on a fresh one, uncounted.
  const bool bodyless = request_headers_->get(http::headers::kTransferEncoding) == nullptr &&
                        request_headers_->getOr(http::headers::kContentLength, "0") == "0";
  const bool replayable = request_complete_ && bodyless;
  if (no_response_on_reused && !transparent_replay_done_ && replayable) {
    transparent_replay_done_ = true;
    upstream_.reset();
    --attempt_;
    startAttempt();
    return;
  }
  if (reason != ResetReason::kOverflow) {
    const auto trigger = (reason == ResetReason::kConnectFailure || reason == ResetReason::kConnectTimeout)
                             ? RetryTrigger::kConnectFailure
                         : reason == ResetReason::kRefusedStream ? RetryTrigger::kRefusedStream
                                                                 : RetryTrigger::kReset;
    if (tryRetry(trigger, 0)) return;
  }
  upstream_.reset();
  switch (reason) {
    case ResetReason::kConnectFailure:
    case ResetReason::kConnectTimeout:
      info.upstream_transport_failure_reason = std::string(details);
      sendUpstreamFailure(503, http::ResponseFlag::kUpstreamConnectionFailure,
                          resetBody("connection failure"),
                          "upstream_reset_before_response_started{connection_failure}");
      break;
    case ResetReason::kOverflow:
      sendUpstreamFailure(503, http::ResponseFlag::kUpstreamOverflow, resetBody("overflow"),
                          "upstream_reset_before_response_started{overflow}");
      break;
    case ResetReason::kRefusedStream:
      sendUpstreamFailure(503, http::ResponseFlag::kUpstreamConnectionTermination,
                          resetBody("remote refused stream reset"),
                          "upstream_reset_before_response_started{remote_refused_stream_reset}");
      break;
    case ResetReason::kConnectionTermination:
      cluster.trafficStats().upstream_rq_rx_reset.inc();
      sendUpstreamFailure(503, http::ResponseFlag::kUpstreamConnectionTermination,
                          resetBody("connection termination"),
                          "upstream_reset_before_response_started{connection_termination}");
      break;
    case ResetReason::kProtocolError:
      sendUpstreamFailure(503, http::ResponseFlag::kUpstreamProtocolError, resetBody("protocol error"),
                          "upstream_reset_before_response_started{protocol_error}");
      break;
  }
}

// Mirrors go out once the whole request is known; their answers are dropped.
void RouterFilter::sendShadows() {
  auto headers = std::move(shadow_headers_);
  for (const auto& cluster : shadow_clusters_)
    ShadowRequest::send(*callbacks_, cluster, *headers, shadow_body_, global_timeout_);
  shadow_body_.clear();
}

bool RouterFilter::tryRetry(RetryTrigger trigger, uint32_t status) {
  if (retries_left_ == 0 || destroyed_) return false;
  const uint32_t on = retry_policy_.retry_on;
  bool wanted = false;
  switch (trigger) {
    case RetryTrigger::kStatus:
      wanted = true;  // the caller checked shouldRetryStatus
      break;
    case RetryTrigger::kReset:
    case RetryTrigger::kPerTryTimeout:
      wanted = on & (RetryPolicy::k5xx | RetryPolicy::kGatewayError | RetryPolicy::kReset);
      break;
    case RetryTrigger::kConnectFailure:
      wanted = on & (RetryPolicy::k5xx | RetryPolicy::kGatewayError | RetryPolicy::kReset |
                     RetryPolicy::kConnectFailure);
      break;
    case RetryTrigger::kRefusedStream:
      wanted = on & (RetryPolicy::k5xx | RetryPolicy::kGatewayError | RetryPolicy::kReset |
                     RetryPolicy::kRefusedStream);
      break;
  }
  if (!wanted || !request_complete_ || !retry_body_complete_) return false;
  const upstream::ClusterInfo& cluster = *cluster_info_;
  if (holds_retry_resource_) {
    cluster.resources.releaseRetry();
    holds_retry_resource_ = false;
  }
  if (!cluster.resources.tryAcquireRetry()) {
    cluster.trafficStats().upstream_rq_retry_overflow.inc();
    return false;
  }
  holds_retry_resource_ = true;
  --retries_left_;
  cluster.trafficStats().upstream_rq_retry.inc();
  cluster.trafficStats().upstream_rq_retry_backoff_exponential.inc();
  if (upstream_) {
    previous_host_ = upstream_->host();
    upstream_->cancel();
    upstream_.reset();
  }
  per_try_timer_.reset();

  // Exponential backoff with full jitter: uniform in [0, min(base * 2^n, max)).
  const uint32_t n = attempt_ - 1;
  const int64_t base = std::max<int64_t>(1, retry_policy_.base_interval.count());
  const int64_t cap =
      std::min<int64_t>(retry_policy_.max_interval.count(), base << std::min<uint32_t>(n, 20));
  const auto delay = std::chrono::milliseconds(
      static_cast<int64_t>(random64() % static_cast<uint64_t>(std::max<int64_t>(cap, 1))));
  backoff_timer_.emplace(callbacks_->dispatcher());
  backoff_timer_->expires_after(delay);
  std::weak_ptr<bool> alive = alive_;
  backoff_timer_->async_wait([this, alive](std::error_code ec) {
    if (ec || alive.expired()) return;
    startAttempt();
  });
  (void)status;
  return true;
}

void RouterFilter::onGlobalTimeout() {
  const upstream::ClusterInfo& cluster = *cluster_info_;
  cluster.trafficStats().upstream_rq_timeout.inc();
  if (upstream_) upstream_->host()->stats().rq_timeout.fetch_add(1, std::memory_order_relaxed);
  finishAttemptStats(false);
  if (upstream_) {
    upstream_->cancel();
    upstream_.reset();
  }
  backoff_timer_.reset();
  per_try_timer_.reset();
  http::StreamInfo& info = callbacks_->streamInfo();
  info.setFlag(http::ResponseFlag::kUpstreamRequestTimeout);
  if (downstream_response_started_) {
    callbacks_->resetStream();
    return;
  }
  callbacks_->sendLocalReply(504, "upstream request timeout", "upstream_response_timeout");
}

void RouterFilter::onPerTryTimeout() {
  const upstream::ClusterInfo& cluster = *cluster_info_;
  cluster.trafficStats().upstream_rq_per_try_timeout.inc();
  if (upstream_) upstream_->host()->stats().rq_timeout.fetch_add(1, std::memory_order_relaxed);
  finishAttemptStats(false);
  per_try_timer_.reset();
  if (downstream_response_started_) return;
  if (tryRetry(RetryTrigger::kPerTryTimeout, 0)) return;
  if (upstream_) {
    upstream_->cancel();
    upstream_.reset();
  }
  callbacks_->streamInfo().setFlag(http::ResponseFlag::kUpstreamRequestTimeout);
  callbacks_->sendLocalReply(504, "upstream request timeout", "upstream_per_try_timeout");
}

void RouterFilter::sendUpstreamFailure(uint32_t status, http::ResponseFlag flag, std::string_view body,
                                       std::string_view details) {
  http::StreamInfo& info = callbacks_->streamInfo();
  info.setFlag(flag);
  if (attempt_ > 1 && retries_left_ == 0 && retry_policy_.retry_on != 0) {
    info.setFlag(http::ResponseFlag::kUpstreamRetryLimitExceeded);
  }
  finishAttemptStats(false);
  cleanup();
  callbacks_->sendLocalReply(status, body, details);
}

void RouterFilter::finishAttemptStats(bool success) {
  if (!holds_request_resource_) return;
  holds_request_resource_ = false;
  const upstream::ClusterInfo& cluster = *cluster_info_;
  cluster.resources.releaseRequest();
  cluster.trafficStats().upstream_rq_active.dec();
  if (upstream_) {
    const auto& host = upstream_->host();
    host->stats().rq_active.fetch_sub(1, std::memory_order_relaxed);
    if (!success) host->stats().rq_error.fetch_add(1, std::memory_order_relaxed);
  }
}

void RouterFilter::cleanup() {
  global_timer_.reset();
  per_try_timer_.reset();
  backoff_timer_.reset();
  if (holds_retry_resource_ && cluster_info_) {
    cluster_info_->resources.releaseRetry();
    holds_retry_resource_ = false;
  }
}

void RouterFilter::onDestroy() {
  if (destroyed_) return;
  destroyed_ = true;
  alive_.reset();
  finishAttemptStats(false);
  if (upstream_) {
    upstream_->cancel();
    upstream_.reset();
  }
  cleanup();
}

namespace {

class RouterFactory : public http::FilterFactory {
 public:
  RouterFactory(std::shared_ptr<RouterConfig> config) : config_(std::move(config)) {}
  void createFilters(http::FilterChainBuilder& builder) const override {
    builder.addDecoderFilter(std::make_unique<RouterFilter>(*config_));
  }

 private:
  std::shared_ptr<RouterConfig> config_;
};

}  // namespace

void registerRouterFilter() {
  filters::registerHttpFilter(filters::HttpFilterRegistration{
      "envoy.filters.http.router", "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
      [](const google::protobuf::Any& any,
         const filters::FactoryContext& ctx) -> http::FilterFactorySharedPtr {
        envoy::extensions::filters::http::router::v3::Router proto;
        if (!any.type_url().empty() && !any.UnpackTo(&proto)) {
          throw std::invalid_argument("envoy.filters.http.router: typed_config does not hold a Router");
        }
        auto config = std::make_shared<RouterConfig>(ctx.stats, ctx.stat_prefix);
        config->suppress_envoy_headers = proto.suppress_envoy_headers();
        config->respect_expected_rq_timeout = proto.respect_expected_rq_timeout();
        return std::make_shared<RouterFactory>(std::move(config));
      },
      /*terminal=*/true});
}

}  // namespace skiff::router
