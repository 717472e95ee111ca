// envoy.filters.http.ext_authz: asks an authorization service (gRPC Authorization/Check or plain HTTP)
// about each request, then lets it through (with the service's header changes) or answers it locally.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "filters/http/common/http_callout.h"
#include "filters/http/ext_proc/ext_common.h"
#include "filters/http/ext_proc/metadata_matcher.h"
#include "skiff/filters/http_filter_registry.h"
#include "skiff/grpc/async_client.h"
#include "skiff/stats/stats.h"

namespace envoy::service::auth::v3 {
class CheckResponse;
}

namespace skiff::filters::ext_authz {

inline constexpr std::string_view kFilterName = "envoy.filters.http.ext_authz";
inline constexpr std::string_view kTypeUrl =
    "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz";
inline constexpr std::string_view kPerRouteTypeUrl =
    "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute";
inline constexpr std::string_view kCheckMethod = "/envoy.service.auth.v3.Authorization/Check";

// Envoy's names, under <hcm prefix>ext_authz.[<stat_prefix>.]
struct ExtAuthzStats {
  stats::Counter ok, denied, error, disabled, failure_mode_allowed, invalid;
};
// The same outcomes charged to the route's target cluster: cluster.<name>.ext_authz.[<stat_prefix>.]<x>
// (Envoy has no cluster-level "disabled").
struct ClusterAuthzStats {
  stats::Counter ok, denied, error, failure_mode_allowed, invalid;
};

struct ExtAuthzConfig {
  bool grpc = true;
  grpc::ServiceConfig service;  // gRPC mode
  // HTTP mode
  std::string http_cluster;
  std::string path_prefix;
  std::vector<std::pair<std::string, std::string>> headers_to_add;
  ext::ListMatcher allowed_upstream_headers, allowed_upstream_headers_to_append, allowed_client_headers,
      allowed_client_headers_on_success;
  bool has_allowed_client_headers = false;
  std::chrono::milliseconds timeout{200};
  // Both modes
  ext::ListMatcher allowed_headers, disallowed_headers;
  bool has_allowed_headers = false;
  bool failure_mode_allow = false;
  bool failure_mode_allow_header_add = false;
  bool with_request_body = false;
  uint32_t max_request_bytes = 0;
  bool allow_partial_message = false;
  bool pack_as_bytes = false;
  uint32_t status_on_error = 403;
  bool clear_route_cache = false;
  ext::MutationChecker decoder_rules;
  bool validate_mutations = false;
  uint32_t max_denied_response_body_bytes = 0;
  std::string filter_name = std::string(kFilterName);
  ExtAuthzStats stats;
  stats::Store* store = nullptr;
  std::string cluster_stat_suffix = "ext_authz.";  // after "cluster.<name>."; with the stat_prefix
  // filter_enabled: RuntimeFractionalPercent.default_value (runtime keys are not read: Skiff has no runtime
  // layer); enabled when random % denominator < numerator.
  uint32_t enabled_numerator = 1, enabled_denominator = 1;
  std::optional<ext::MetadataMatcher> filter_enabled_metadata;
  bool deny_at_disable = false;  // deny_at_disable.default_value
  // metadata_context_namespaces / typed_metadata_context_namespaces: copied from dynamic metadata.
  std::vector<std::string> metadata_context_namespaces, typed_metadata_context_namespaces;
  bool enable_dynamic_metadata_ingestion = true;

  // Cluster-level stats for the route's target cluster (cached per worker).
  std::shared_ptr<const ClusterAuthzStats> clusterStats(const std::string& cluster_stat_name) const;
};

class ExtAuthzFilter : public http::StreamFilter {
 public:
  explicit ExtAuthzFilter(std::shared_ptr<const ExtAuthzConfig> config) : config_(std::move(config)) {}
  ~ExtAuthzFilter() override;

  void setDecoderFilterCallbacks(http::DecoderFilterCallbacks& cb) override { decoder_ = &cb; }
  void setEncoderFilterCallbacks(http::EncoderFilterCallbacks& cb) override { encoder_ = &cb; }
  http::HeadersStatus decodeHeaders(http::HeaderMap& headers, bool end_stream) override;
  http::DataStatus decodeData(http::Buffer& data, bool end_stream) override;
  http::TrailersStatus decodeTrailers(http::HeaderMap& trailers) override;
  http::HeadersStatus encodeHeaders(http::HeaderMap& headers, bool end_stream) override;
  void onDestroy() override;

 private:
  enum class State { kIdle, kBuffering, kCalling, kDone };

  void startCheck(bool partial_body, const http::Buffer* chunk);
  void startGrpc(const std::string& body, bool partial);
  void startHttp(const std::string& body, bool partial);
  void onGrpcResult(const grpc::Status& status, const std::string& response);
  void onHttpResult(HttpCallout::Response response);
  void allow();
  void deny(uint32_t status, std::string body, http::HeaderMap headers);
  void onError();
  bool setHeader(http::HeaderMap& headers, const std::string& name, const std::string& value, bool append);
  void finish();   // continue decoding if we held it
  bool enabled();  // filter_enabled and filter_enabled_metadata
  void resolveClusterStats();
  template <class F>
  void chargeCluster(F member) {
    if (cluster_stats_) ((*cluster_stats_).*member).inc();
  }

  std::shared_ptr<const ExtAuthzConfig> config_;
  http::DecoderFilterCallbacks* decoder_ = nullptr;
  http::EncoderFilterCallbacks* encoder_ = nullptr;
  State state_ = State::kIdle;
  bool stopped_ = false;
  bool in_decode_ = false;  // a result inside decodeHeaders/Data: return instead of continuing
  bool skip_buffering_ = false;
  std::vector<std::pair<std::string, std::string>> context_extensions_;
  http::HeaderMap response_headers_to_add_;  // added to the response on success
  http::HeaderMap response_headers_to_set_;
  grpc::UnaryCallPtr grpc_call_;
  std::shared_ptr<HttpCallout> http_call_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::shared_ptr<const ClusterAuthzStats> cluster_stats_;  // the route's target cluster, when known
};

http::FilterFactorySharedPtr createExtAuthzFilterFactory(const google::protobuf::Any& config,
                                                         const FactoryContext& context);
void registerExtAuthzFilter();

}  // namespace skiff::filters::ext_authz
