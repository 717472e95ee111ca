// envoy.filters.http.ext_proc: the validated filter config shared by every stream, and its registration.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "filters/http/ext_proc/ext_common.h"
#include "skiff/filters/http_filter_registry.h"
#include "skiff/grpc/async_client.h"
#include "skiff/stats/stats.h"

namespace envoy::extensions::filters::http::ext_proc::v3 {
class ProcessingMode;
class MetadataOptions;
}  // namespace envoy::extensions::filters::http::ext_proc::v3

namespace skiff::filters::ext_proc {

inline constexpr std::string_view kFilterName = "envoy.filters.http.ext_proc";
inline constexpr std::string_view kTypeUrl =
    "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor";
inline constexpr std::string_view kPerRouteTypeUrl =
    "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute";
inline constexpr std::string_view kProcessMethod = "/envoy.service.ext_proc.v3.ExternalProcessor/Process";

// kFullDuplexStreamed: chunks go to the processor as they arrive, without waiting for replies; the
// processor's streamed_response chunks replace the body.
enum class BodyMode { kNone, kStreamed, kBuffered, kBufferedPartial, kFullDuplexStreamed };

// ProcessingMode with DEFAULT resolved (headers SEND, trailers SKIP).
struct Mode {
  bool request_headers = true;
  bool response_headers = true;
  BodyMode request_body = BodyMode::kNone;
  BodyMode response_body = BodyMode::kNone;
  bool request_trailers = false;
  bool response_trailers = false;
  // Throws std::invalid_argument for body modes Skiff does not have (GRPC).
  static Mode fromProto(const envoy::extensions::filters::http::ext_proc::v3::ProcessingMode& proto,
                        const std::string& path);
};

// Envoy's names, under <hcm prefix>ext_proc.[<stat_prefix>.]
struct ExtProcStats {
  stats::Counter streams_started, stream_msgs_sent, stream_msgs_received, spurious_msgs_received,
      streams_closed, streams_failed, failure_mode_allowed, message_timeouts, rejected_header_mutations,
      override_message_timeout_received, override_message_timeout_ignored, clear_route_cache_ignored,
      clear_route_cache_disabled;
};

// metadata_options: which dynamic-metadata namespaces go to the processor (metadata_context) and which
// of its dynamic_metadata namespaces are taken back.
struct MetadataOptions {
  std::vector<std::string> forward_untyped, forward_typed, receive_untyped;
  static MetadataOptions fromProto(
      const envoy::extensions::filters::http::ext_proc::v3::MetadataOptions& proto);
};

struct ExtProcConfig {
  grpc::ServiceConfig service;
  bool failure_mode_allow = false;
  Mode mode;
  std::chrono::milliseconds message_timeout{200};
  std::chrono::milliseconds max_message_timeout{0};  // zero: override_message_timeout not accepted
  ext::MutationChecker checker;
  ext::ListMatcher allowed_headers, disallowed_headers;  // forward_rules
  std::vector<std::string> request_attributes, response_attributes;
  MetadataOptions metadata;
  bool allow_mode_override = false;
  std::vector<Mode> allowed_override_modes;  // empty: any
  bool disable_immediate_response = false;
  bool observability_mode = false;
  bool disable_clear_route_cache = false;
  int route_cache_action = 0;  // ExternalProcessor.RouteCacheAction
  std::string filter_name = std::string(kFilterName);
  ExtProcStats stats;
};

http::FilterFactorySharedPtr createExtProcFilterFactory(const google::protobuf::Any& config,
                                                        const FactoryContext& context);
void registerExtProcFilter();

}  // namespace skiff::filters::ext_proc
