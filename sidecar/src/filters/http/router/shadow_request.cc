// ShadowRequest: sends a mirrored copy of a request and discards the answer.
#include "filters/http/router/shadow_request.h"

#include "skiff/upstream/conn_pool.h"
#include "skiff/upstream/thread_local_cluster.h"

namespace skiff::router {

std::string ShadowRequest::shadowAuthority(std::string_view authority) {
  std::string out(authority);
  // The port (if any) stays last; an IPv6 literal keeps its brackets.
  size_t host_end = out.size();
  const size_t bracket = out.rfind(']');
  const size_t colon = out.rfind(':');
  if (colon != std::string::npos &&
      (bracket == std::string::npos ? out.find(':') == colon : colon > bracket)) {
    host_end = colon;
  }
  out.insert(host_end, "-shadow");
  return out;
}

ShadowRequest::~ShadowRequest() {
  if (request_) request_->cancel();  // timed out or shut down: the connection goes, nothing calls back
}

bool ShadowRequest::send(http::DecoderFilterCallbacks& callbacks, const std::string& cluster_name,
                         const http::HeaderMap& request, const http::Buffer& body,
                         std::chrono::milliseconds timeout) {
  upstream::ThreadLocalCluster* cluster = callbacks.clusterManager().get(cluster_name);
  if (cluster == nullptr) return false;
  upstream::HostSharedPtr host = cluster->chooseHost(upstream::LbContext{});
  if (!host) return false;
  auto shadow = std::make_shared<ShadowRequest>(callbacks.dispatcher());
  http::HeaderMap headers = request;
  headers.set(http::headers::kAuthority, shadowAuthority(headers.getOr(http::headers::kAuthority)));
  headers.remove(http::headers::kTransferEncoding);
  if (!body.empty()) headers.set(http::headers::kContentLength, std::to_string(body.size()));
  auto& pool = callbacks.connPools().get(cluster->infoPtr());
  const bool head = headers.getOr(http::headers::kMethod) == "HEAD";
  shadow->request_ = std::make_shared<UpstreamRequest>(*shadow, callbacks.dispatcher(), pool, host, head,
                                                       callbacks.bufferLimit());
  if (timeout.count() > 0) {
    shadow->deadline_.expires_after(timeout);
  } else {
    shadow->deadline_.expires_at(asio::steady_timer::time_point::max());
  }
  shadow->deadline_.async_wait([shadow, info = cluster->infoPtr()](std::error_code ec) {
    if (!ec && !shadow->done_) info->trafficStats().upstream_rq_timeout.inc();
  });
  cluster->info().trafficStats().upstream_rq_total.inc();
  shadow->request_->start(headers, &body, true);
  return true;
}

}  // namespace skiff::router
