// proxy_http_call for the Wasm filter: a CalloutSender over the shared HttpCallout, bound to the worker
// whose VM makes the calls.
#include "filters/http/wasm/wasm_callouts.h"

#include "envoy/config/core/v3/grpc_service.pb.h"
#include "filters/http/common/http_callout.h"
#include "filters/http/wasm/wasm_filter.h"
#include "skiff/grpc/async_client.h"
#include "skiff/upstream/thread_local_cluster.h"

namespace skiff::filters::wasm {
namespace {

using skiff::wasm::HttpCallResponse;
using skiff::wasm::WasmResult;

// Envoy's default per-call buffer cap for async client responses is not configurable from Wasm; 16 MiB
// keeps a runaway upstream from growing the worker without bound.
constexpr uint32_t kMaxCallResponseBytes = 16 << 20;

// One proxy_grpc_call / proxy_grpc_stream on the worker's raw gRPC client. Events are copied before they
// run: the plugin may destroy this object from inside one (proxy_grpc_cancel, or the close itself).
class GrpcCall final : public skiff::wasm::GrpcCallout, public grpc::RawCallbacks {
 public:
  explicit GrpcCall(skiff::wasm::GrpcEvents events) : events_(std::move(events)) {}
  bool send(std::string message, bool end_stream) override {
    return stream_ && stream_->send(std::move(message), end_stream);
  }
  void closeSend() override {
    if (stream_) stream_->closeSend();
  }
  void onInitialMetadata(grpc::Metadata&& metadata) override {
    auto cb = events_.initial_metadata;
    cb(std::move(metadata));
  }
  void onMessage(std::string&& message) override {
    auto cb = events_.message;
    cb(std::move(message));
  }
  void onTrailingMetadata(grpc::Metadata&& metadata) override {
    auto cb = events_.trailing_metadata;
    cb(std::move(metadata));
  }
  void onClose(const grpc::Status& status) override {
    auto cb = events_.close;
    cb(static_cast<uint32_t>(status.code), status.message);
  }
  skiff::wasm::GrpcEvents events_;
  grpc::RawStreamPtr stream_;  // last: cancelled before the callbacks it calls go
};

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

  // `service`: a serialized GrpcService, else a cluster name (as Envoy reads it).
  WasmResult grpcCall(skiff::wasm::GrpcRequest request, skiff::wasm::GrpcEvents events,
                      std::unique_ptr<skiff::wasm::GrpcCallout>* call) override {
    grpc::ServiceConfig service;
    envoy::config::core::v3::GrpcService proto;
    if (!request.service.empty() && proto.ParseFromString(request.service) &&
        (proto.has_envoy_grpc() || proto.has_google_grpc())) {
      try {
        service = grpc::ServiceConfig::fromProto(proto, "grpc_service");
      } catch (const std::invalid_argument&) {
        return WasmResult::kParseFailure;
      }
    } else {
      service.cluster = request.service;
      service.authority = request.service;
    }
    if (!service.cluster.empty() && target_.clusters->get(service.cluster) == nullptr) {
      return WasmResult::kParseFailure;  // Envoy: unknown cluster
    }
    auto impl = std::make_unique<GrpcCall>(std::move(events));
    grpc::RawCallOptions options;
    options.timeout = request.timeout;
    options.initial_metadata = std::move(request.initial_metadata);
    auto& client = grpc::AsyncClient::forWorker(*target_.dispatcher, *target_.clusters);
    impl->stream_ = request.message ? client.rawUnary(service, request.service_name, request.method,
                                                      std::move(*request.message), *impl, std::move(options))
                                    : client.rawStream(service, request.service_name, request.method, *impl,
                                                       std::move(options));
    if (!impl->stream_) return WasmResult::kInternalFailure;
    *call = std::move(impl);
    return WasmResult::kOk;
  }

 private:
  CalloutTarget target_;
};

}  // namespace

std::unique_ptr<skiff::wasm::CalloutSender> makeCalloutSender(http::StreamCallbacks& callbacks) {
  return std::make_unique<Sender>(CalloutTarget::of(callbacks));
}

std::unique_ptr<skiff::wasm::CalloutSender> makeCalloutSender(const CalloutTarget& target) {
  return std::make_unique<Sender>(target);
}

}  // namespace skiff::filters::wasm
