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

bool ShadowRequest::send(http::DecoderFilterCallbacks& callbacks, const std::string& cluster_name,
                         const http::HeaderMap& request, const http::Buffer& body) {
  upstream::ThreadLocalCluster* cluster = callbacks.clusterManager().get(cluster_name);
  if (cluster == nullptr) return false;
  upstream::HostSharedPtr host = cluster->chooseHost(upstream::LbContext{});
  if (!host) return false;
  auto shadow = std::make_shared<ShadowRequest>();
  http::HeaderMap headers = request;
  headers.set(http::headers::kAuthority, shadowAuthority(headers.getOr(http::headers::kAuthority)));
  headers.remove(http::headers::kTransferEncoding);
  if (!body.empty()) headers.set(http::headers::kContentLength, std::to_string(body.size()));
  auto& pool = callbacks.connPools().get(cluster->infoPtr());
  const bool head = headers.getOr(http::headers::kMethod) == "HEAD";
  shadow->self_ = shadow;
  shadow->request_ = std::make_shared<UpstreamRequest>(*shadow, callbacks.dispatcher(), pool, host, head,
                                                       callbacks.bufferLimit());
  cluster->info().trafficStats().upstream_rq_total.inc();
  shadow->request_->start(headers, &body, true);
  return true;
}

}  // namespace skiff::router
