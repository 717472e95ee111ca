// proxy_http_call for the Wasm filter: a CalloutSender over the shared HttpCallout, bound to the worker
// whose VM makes the calls.
#include "filters/http/common/http_callout.h"
#include "filters/http/wasm/wasm_filter.h"

namespace skiff::filters::wasm {
namespace {

using skiff::wasm::HttpCallResponse;
using skiff::wasm::WasmResult;

// Envoy's default per-call buffer cap for async client responses is not configurable from Wasm; 16 MiB
// keeps a runaway upstream from growing the worker without bound.
constexpr uint32_t kMaxCallResponseBytes = 16 << 20;

class Sender final : public skiff::wasm::CalloutSender {
 public:
  explicit Sender(const CalloutTarget& target) : target_(target) {}

  WasmResult httpCall(const std::string& cluster, http::HeaderMap headers, std::string body,
                      std::chrono::milliseconds timeout, HttpDone done,
                      std::function<void()>* cancel) override {
    HttpCallout::StartError error;
    auto call = HttpCallout::start(
        target_, kMaxCallResponseBytes, cluster, std::move(headers), std::move(body), timeout,
        [done = std::move(done)](HttpCallout::Response r) {
          done(HttpCallResponse{std::move(r.headers), std::move(r.body), std::move(r.trailers)});
        },
        &error);
    if (error == HttpCallout::StartError::kUnknownCluster) return WasmResult::kBadArgument;
    if (!call) return WasmResult::kInternalFailure;
    *cancel = [weak = std::weak_ptr<HttpCallout>(call)] {
      if (auto c = weak.lock()) c->cancel();
    };
    return WasmResult::kOk;
  }

 private:
  CalloutTarget target_;
};

}  // namespace

std::unique_ptr<skiff::wasm::CalloutSender> makeCalloutSender(http::StreamCallbacks& callbacks) {
  return std::make_unique<Sender>(CalloutTarget::of(callbacks));
}

}  // namespace skiff::filters::wasm
