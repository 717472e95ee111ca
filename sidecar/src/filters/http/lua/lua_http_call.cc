// LuaHttpCall: the upstream exchange behind handle:httpCall(), with its timeout.
#include "filters/http/lua/lua_http_call.h"

#include <asio/post.hpp>

#include "skiff/upstream/conn_pool.h"
#include "skiff/upstream/thread_local_cluster.h"

namespace skiff::filters::lua {

std::shared_ptr<LuaHttpCall> LuaHttpCall::start(http::StreamCallbacks& callbacks, uint32_t buffer_limit,
                                                const std::string& cluster_name, http::HeaderMap headers,
                                                std::string body, std::chrono::milliseconds timeout,
                                                Done done, bool* unknown_cluster) {
  *unknown_cluster = false;
  upstream::ThreadLocalCluster* cluster = callbacks.clusterManager().get(cluster_name);
  if (cluster == nullptr) {
    *unknown_cluster = true;
    return nullptr;
  }
  upstream::HostSharedPtr host = cluster->chooseHost(upstream::LbContext{});
  if (!host) return nullptr;
  auto call = std::make_shared<LuaHttpCall>(callbacks.dispatcher());
  call->self_ = call;
  call->done_ = std::move(done);
  call->buffer_limit_ = buffer_limit;
  headers.remove(http::headers::kTransferEncoding);
  headers.set(http::headers::kContentLength, std::to_string(body.size()));
  auto& pool = callbacks.connPools().get(cluster->infoPtr());
  const bool head = headers.getOr(http::headers::kMethod) == "HEAD";
  call->upstream_ = std::make_shared<router::UpstreamRequest>(*call, callbacks.dispatcher(), pool, host, head,
                                                              buffer_limit);
  cluster->info().stats.upstream_rq_total.inc();
  if (timeout.count() > 0) {
    call->timer_.expires_after(timeout);
    std::weak_ptr<LuaHttpCall> weak = call;
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

void LuaHttpCall::onUpstreamHeaders(std::unique_ptr<http::HeaderMap> headers, bool end_stream) {
  response_headers_ = std::move(headers);
  if (end_stream) complete();
}

void LuaHttpCall::onUpstreamData(http::Buffer& data, bool end_stream) {
  body_ += data;
  if (buffer_limit_ != 0 && body_.size() > buffer_limit_) return fail();
  if (end_stream) complete();
}

void LuaHttpCall::complete() {
  upstream_.reset();  // let go without cancelling, so the connection can be reused
  finish(std::move(response_headers_));
}

void LuaHttpCall::fail() {
  if (upstream_) {
    upstream_->cancel();
    upstream_.reset();
  }
  finish(nullptr);
}

void LuaHttpCall::finish(std::unique_ptr<http::HeaderMap> headers) {
  timer_.cancel();
  if (starting_) {
    // Failed synchronously (e.g. circuit breaker): answer from the event loop, after the script yielded.
    std::shared_ptr<http::HeaderMap> shared(std::move(headers));
    asio::post(timer_.get_executor(), [self = shared_from_this(), shared] {
      self->starting_ = false;
      self->finish(shared ? std::make_unique<http::HeaderMap>(*shared) : nullptr);
    });
    return;
  }
  Done done = std::move(done_);
  done_ = nullptr;
  auto keep = std::move(self_);  // released when this returns
  if (done) done(std::move(headers), std::move(body_));
}

void LuaHttpCall::cancel() {
  done_ = nullptr;
  timer_.cancel();
  if (upstream_) {
    upstream_->cancel();
    upstream_.reset();
  }
  self_.reset();
}

}  // namespace skiff::filters::lua
