// LuaHttpCall: handle:httpCall() over the shared HttpCallout.
#include "filters/http/lua/lua_http_call.h"

namespace skiff::filters::lua {

std::shared_ptr<LuaHttpCall> LuaHttpCall::start(http::StreamCallbacks& callbacks, uint32_t buffer_limit,
                                                const std::string& cluster, http::HeaderMap headers,
                                                std::string body, std::chrono::milliseconds timeout,
                                                Done done, bool* unknown_cluster) {
  HttpCallout::Done on_done;
  if (done) {
    on_done = [done = std::move(done)](HttpCallout::Response r) {
      done(std::move(r.headers), std::move(r.body));
    };
  }
  HttpCallout::StartError error;
  auto callout = HttpCallout::start(CalloutTarget::of(callbacks), buffer_limit, cluster, std::move(headers),
                                    std::move(body), timeout, std::move(on_done), &error);
  *unknown_cluster = error == HttpCallout::StartError::kUnknownCluster;
  if (!callout) return nullptr;
  auto call = std::make_shared<LuaHttpCall>();
  call->callout_ = std::move(callout);
  return call;
}

}  // namespace skiff::filters::lua
