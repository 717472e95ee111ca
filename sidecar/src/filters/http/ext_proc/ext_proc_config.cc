// ext_proc config: ExternalProcessor proto → ExtProcConfig (checked once), the factory, the registration.
#include "filters/http/ext_proc/ext_proc_config.h"

#include <google/protobuf/util/time_util.h>

#include <stdexcept>

#include "envoy/extensions/filters/http/ext_proc/v3/ext_proc.pb.h"
#include "filters/http/ext_proc/ext_proc_filter.h"
#include "skiff/common/logging.h"

namespace skiff::filters::ext_proc {

namespace v3 = envoy::extensions::filters::http::ext_proc::v3;

Mode Mode::fromProto(const v3::ProcessingMode& proto, const std::string& path) {
  auto body = [&](v3::ProcessingMode::BodySendMode m, const char* field) {
    switch (m) {
      case v3::ProcessingMode::NONE:
        return BodyMode::kNone;
      case v3::ProcessingMode::STREAMED:
        return BodyMode::kStreamed;
      case v3::ProcessingMode::BUFFERED:
        return BodyMode::kBuffered;
      case v3::ProcessingMode::BUFFERED_PARTIAL:
        return BodyMode::kBufferedPartial;
      case v3::ProcessingMode::FULL_DUPLEX_STREAMED:
        return BodyMode::kFullDuplexStreamed;
      default:
        throw std::invalid_argument(path + "." + field + ": " + v3::ProcessingMode::BodySendMode_Name(m) +
                                    " is not supported (NONE, STREAMED, BUFFERED, BUFFERED_PARTIAL, "
                                    "FULL_DUPLEX_STREAMED are)");
    }
  };
  Mode m;
  m.request_headers = proto.request_header_mode() != v3::ProcessingMode::SKIP;
  m.response_headers = proto.response_header_mode() != v3::ProcessingMode::SKIP;
  m.request_trailers = proto.request_trailer_mode() == v3::ProcessingMode::SEND;
  m.response_trailers = proto.response_trailer_mode() == v3::ProcessingMode::SEND;
  m.request_body = body(proto.request_body_mode(), "request_body_mode");
  m.response_body = body(proto.response_body_mode(), "response_body_mode");
  return m;
}

MetadataOptions MetadataOptions::fromProto(const v3::MetadataOptions& proto) {
  MetadataOptions m;
  const auto& f = proto.forwarding_namespaces();
  m.forward_untyped.assign(f.untyped().begin(), f.untyped().end());
  m.forward_typed.assign(f.typed().begin(), f.typed().end());
  const auto& r = proto.receiving_namespaces();
  m.receive_untyped.assign(r.untyped().begin(), r.untyped().end());
  if (!r.typed().empty()) {
    // ProcessingResponse.dynamic_metadata is a Struct: nothing typed can come back.
    SKIFF_LOG(kConfig, warn, "ext_proc: metadata_options.receiving_namespaces.typed is ignored");
  }
  return m;
}

namespace {

std::chrono::milliseconds millis(const google::protobuf::Duration& d, const std::string& path) {
  const int64_t ms = google::protobuf::util::TimeUtil::DurationToMilliseconds(d);
  if (ms < 0) throw std::invalid_argument(path + " must not be negative");
  return std::chrono::milliseconds(ms);
}

class ExtProcFactory : public http::FilterFactory {
 public:
  explicit ExtProcFactory(std::shared_ptr<const ExtProcConfig> config) : config_(std::move(config)) {}
  void createFilters(http::FilterChainBuilder& builder) const override {
    builder.addStreamFilter(std::make_unique<ExtProcFilter>(config_));
  }
  // Per-route overrides and mode_override can turn body processing on for any stream.
  bool wantsBody() const override { return true; }

 private:
  std::shared_ptr<const ExtProcConfig> config_;
};

}  // namespace

http::FilterFactorySharedPtr createExtProcFilterFactory(const google::protobuf::Any& any,
                                                        const FactoryContext& context) {
  v3::ExternalProcessor proto;
  if (!any.UnpackTo(&proto))
    throw std::invalid_argument("ext_proc: typed_config is not an ExternalProcessor");
  if (!proto.has_grpc_service()) throw std::invalid_argument("ext_proc: grpc_service is required");
  auto config = std::make_shared<ExtProcConfig>();
  config->service = grpc::ServiceConfig::fromProto(proto.grpc_service(), "ext_proc: grpc_service");
  config->failure_mode_allow = proto.failure_mode_allow();
  if (proto.has_processing_mode())
    config->mode = Mode::fromProto(proto.processing_mode(), "ext_proc: processing_mode");
  if (proto.has_message_timeout()) {
    config->message_timeout = millis(proto.message_timeout(), "ext_proc: message_timeout");
  }
  if (proto.has_max_message_timeout()) {
    config->max_message_timeout = millis(proto.max_message_timeout(), "ext_proc: max_message_timeout");
  }
  if (proto.has_mutation_rules()) {
    config->checker = ext::MutationChecker::fromProto(proto.mutation_rules(), "ext_proc: mutation_rules");
  }
  if (proto.has_forward_rules()) {
    const auto& f = proto.forward_rules();
    if (f.has_allowed_headers()) {
      config->allowed_headers =
          ext::ListMatcher::fromProto(f.allowed_headers(), "ext_proc: forward_rules.allowed_headers");
    }
    if (f.has_disallowed_headers()) {
      config->disallowed_headers =
          ext::ListMatcher::fromProto(f.disallowed_headers(), "ext_proc: forward_rules.disallowed_headers");
    }
  }
  config->request_attributes.assign(proto.request_attributes().begin(), proto.request_attributes().end());
  config->response_attributes.assign(proto.response_attributes().begin(), proto.response_attributes().end());
  config->allow_mode_override = proto.allow_mode_override();
  for (int i = 0; i < proto.allowed_override_modes_size(); ++i) {
    config->allowed_override_modes.push_back(Mode::fromProto(
        proto.allowed_override_modes(i), "ext_proc: allowed_override_modes[" + std::to_string(i) + "]"));
  }
  config->disable_immediate_response = proto.disable_immediate_response();
  config->observability_mode = proto.observability_mode();
  config->disable_clear_route_cache = proto.disable_clear_route_cache();
  config->route_cache_action = proto.route_cache_action();
  if (proto.send_body_without_waiting_for_header_response()) {
    SKIFF_LOG(kConfig, warn,
              "ext_proc: send_body_without_waiting_for_header_response is not supported; bodies "
              "wait for the header reply");
  }
  if (proto.has_metadata_options()) config->metadata = MetadataOptions::fromProto(proto.metadata_options());
  if (!context.filter_name.empty()) config->filter_name = context.filter_name;
  std::string prefix = context.stat_prefix + "ext_proc.";
  if (!proto.stat_prefix().empty()) prefix += proto.stat_prefix() + ".";
  auto c = [&](const char* name) { return context.stats.counter(prefix + name); };
  config->stats = ExtProcStats{c("streams_started"),
                               c("stream_msgs_sent"),
                               c("stream_msgs_received"),
                               c("spurious_msgs_received"),
                               c("streams_closed"),
                               c("streams_failed"),
                               c("failure_mode_allowed"),
                               c("message_timeouts"),
                               c("rejected_header_mutations"),
                               c("override_message_timeout_received"),
                               c("override_message_timeout_ignored"),
                               c("clear_route_cache_ignored"),
                               c("clear_route_cache_disabled")};
  return std::make_shared<ExtProcFactory>(std::move(config));
}

void registerExtProcFilter() {
  registerHttpFilter(HttpFilterRegistration{std::string(kFilterName), std::string(kTypeUrl),
                                            createExtProcFilterFactory, false});
}

}  // namespace skiff::filters::ext_proc
