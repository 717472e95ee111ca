// istio.metadata_exchange for HTTP: peer workload metadata in x-envoy-peer-metadata(-id) headers, added
// towards the peer sidecar and stripped before the application sees them (Istio's HTTP exchange).
#include "filters/istio/istio.h"

namespace skiff::filters::istio {
namespace {

constexpr std::string_view kHeader = "x-envoy-peer-metadata";
constexpr std::string_view kHeaderId = "x-envoy-peer-metadata-id";

class MetadataExchangeFilter : public http::StreamFilter {
 public:
  explicit MetadataExchangeFilter(Reporter direction) : inbound_(direction != Reporter::kSource) {}
  void setDecoderFilterCallbacks(http::DecoderFilterCallbacks& cb) override { callbacks_ = &cb; }
  void setEncoderFilterCallbacks(http::EncoderFilterCallbacks&) override {}

  http::HeadersStatus decodeHeaders(http::HeaderMap& headers, bool) override {
    // The downstream peer (inbound): take its metadata and strip it.
    if (const std::string* id = headers.get(kHeaderId); id != nullptr && !id->empty()) {
      id_received_ = true;
    }
    headers.remove(kHeaderId);
    if (const std::string* value = headers.get(kHeader); value != nullptr && !value->empty()) {
      metadata_received_ = true;
      if (inbound_) {
        if (auto peer = cachedPeerMetadata(*value)) setStreamPeer(callbacks_->streamInfo(), std::move(peer));
      }
    }
    headers.remove(kHeader);
    if (!inbound_) {
      const LocalNode& local = localNode();
      if (!local.exchange_value.empty()) headers.set(kHeader, local.exchange_value);
      if (!local.id.empty()) headers.set(kHeaderId, local.id);
    }
    return http::HeadersStatus::kContinue;
  }

  http::HeadersStatus encodeHeaders(http::HeaderMap& headers, bool) override {
    // The upstream peer (outbound) answers with its metadata.
    if (const std::string* value = headers.get(kHeader); value != nullptr && !value->empty()) {
      if (auto peer = cachedPeerMetadata(*value)) setStreamPeer(callbacks_->streamInfo(), std::move(peer));
    }
    headers.remove(kHeader);
    headers.remove(kHeaderId);
    // Answer a peer that announced itself (as Istio: only then, so plain clients see no extra headers).
    if (inbound_) {
      const LocalNode& local = localNode();
      if (metadata_received_ && !local.exchange_value.empty()) headers.set(kHeader, local.exchange_value);
      if (id_received_ && !local.id.empty()) headers.set(kHeaderId, local.id);
    }
    return http::HeadersStatus::kContinue;
  }

 private:
  const bool inbound_;
  http::DecoderFilterCallbacks* callbacks_ = nullptr;
  bool metadata_received_ = false;
  bool id_received_ = false;
};

class MetadataExchangeFactory : public http::FilterFactory {
 public:
  explicit MetadataExchangeFactory(Reporter direction) : direction_(direction) {}
  void createFilters(http::FilterChainBuilder& builder) const override {
    builder.addStreamFilter(std::make_unique<MetadataExchangeFilter>(direction_));
  }
  bool wantsBody() const override { return false; }

 private:
  Reporter direction_;
};

}  // namespace

http::FilterFactorySharedPtr makeMetadataExchangeFactory(Reporter direction) {
  return std::make_shared<MetadataExchangeFactory>(direction);
}

}  // namespace skiff::filters::istio
