// HttpCallout: one upstream exchange to a named cluster for a filter, with its timeout.
#include "filters/http/common/http_callout.h"

#include <asio/post.hpp>

#include "skiff/upstream/conn_pool.h"
#include "skiff/upstream/thread_local_cluster.h"

namespace skiff::filters {

std::shared_ptr<HttpCallout> HttpCallout::start(const CalloutTarget& target, uint32_t buffer_limit,
                                                const std::string& cluster_name, http::HeaderMap headers,
                                                std::string body, std::chrono::milliseconds timeout,
                                                Done done, StartError* error) {
  *error = StartError::kNone;
  upstream::ThreadLocalCluster* cluster = target.clusters->get(cluster_name);
  if (cluster == nullptr) {
    *error = StartError::kUnknownCluster;
    return nullptr;
  }
  upstream::HostSharedPtr host = cluster->chooseHost(upstream::LbContext{});
  if (!host) {
    *error = StartError::kNoHost;
    return nullptr;
  }
  auto call = std::make_shared<HttpCallout>(*target.dispatcher);
  call->self_ = call;
  call->done_ = std::move(done);
  call->buffer_limit_ = buffer_limit;
  headers.remove(http::headers::kTransferEncoding);
  headers.set(http::headers::kContentLength, std::to_string(body.size()));
  auto& pool = target.pools->get(cluster->infoPtr());
  const bool head = headers.getOr(http::headers::kMethod) == "HEAD";
  call->upstream_ =
      std::make_shared<router::UpstreamRequest>(*call, *target.dispatcher, pool, host, head, buffer_limit);
  cluster->info().trafficStats().upstream_rq_total.inc();
  if (timeout.count() > 0) {
    call->timer_.expires_after(timeout);
    std::weak_ptr<HttpCallout> weak = call;
    call->timer_.async_wait([weak](std::error_code ec) {
      auto c = weak.lock();
      if (!ec && c) c->fail();
    });
  }
  call->starting_ = true;
  call->upstream_->start(headers, body.empty() ? nullptr : &body, true);
  call->starting_ = false;
  return call;
}

void HttpCallout::onUpstreamHeaders(std::unique_ptr<http::HeaderMap> headers, bool end_stream) {
  response_.headers = std::move(headers);
  if (end_stream) complete();
}

void HttpCallout::onUpstreamData(http::Buffer& data, bool end_stream) {
  response_.body += data;
  if (buffer_limit_ != 0 && response_.body.size() > buffer_limit_) return fail();
  if (end_stream) complete();
}

void HttpCallout::onUpstreamTrailers(std::unique_ptr<http::HeaderMap> trailers) {
  response_.trailers = std::move(trailers);
  complete();
}

void HttpCallout::complete() {
  upstream_.reset();  // let go without cancelling, so the connection can be reused
  finish(true);
}

void HttpCallout::fail() {
  if (upstream_) {
    upstream_->cancel();
    upstream_.reset();
  }
  finish(false);
}

void HttpCallout::finish(bool ok) {
  timer_.cancel();
  if (!ok) {
    response_.headers.reset();
    response_.body.clear();
    response_.trailers.reset();
  }
  if (starting_) {
    // Finished synchronously (e.g. circuit breaker): answer from the event loop, after the caller returned.
    starting_ = false;
    asio::post(timer_.get_executor(), [self = shared_from_this()] { self->deliver(); });
    return;
  }
  deliver();
}

void HttpCallout::deliver() {
  Done done = std::move(done_);
  done_ = nullptr;
  auto keep = std::move(self_);  // released when this returns
  if (done) done(std::move(response_));
}

void HttpCallout::cancel() {
  done_ = nullptr;
  timer_.cancel();
  if (upstream_) {
    upstream_->cancel();
    upstream_.reset();
  }
  self_.reset();
}

}  // namespace skiff::filters
