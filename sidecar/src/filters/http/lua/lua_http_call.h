// handle:httpCall(): one HTTP/1.1 request to a configured cluster on the worker's connection pools (an
// HttpCallout, shared with the Wasm filter's proxy_http_call).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "filters/http/common/http_callout.h"
#include "skiff/http/filter.h"

namespace skiff::filters::lua {

class LuaHttpCall {
 public:
  // `headers` is null on failure (reset, timeout, no host): the caller fakes Envoy's 503.
  using Done = std::function<void(std::unique_ptr<http::HeaderMap> headers, std::string body)>;

  // Starts the call; it keeps itself alive until it completes or is cancelled (dropping the returned
  // handle does not cancel it). Returns nullptr with `*unknown_cluster` set when the cluster does not
  // exist, or nullptr when it has no host (`done` is not called in either case). A zero `timeout` means
  // none.
  static std::shared_ptr<LuaHttpCall> start(http::StreamCallbacks& callbacks, uint32_t buffer_limit,
                                            const std::string& cluster, http::HeaderMap headers,
                                            std::string body, std::chrono::milliseconds timeout, Done done,
                                            bool* unknown_cluster);
  // No callback after this; the upstream exchange is abandoned.
  void cancel() { callout_->cancel(); }

 private:
  std::shared_ptr<HttpCallout> callout_;
};

}  // namespace skiff::filters::lua
