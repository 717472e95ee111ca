// A grpc++ ext_proc server for tests: by default the founding documents' processor (request headers get
// `X-Processed-By: ext-proc`, everything else an empty reply); other behaviours are chosen per request by
// the `x-ext-proc-mode` request header, or for every stream by --mode.
//
//   skiff-ext-proc-test-server [--port N] [--mode M] [--quiet]
// Prints "listening on <port>" once serving, then one line per received message:
//   msg <kind> eos=<0|1> len=<body bytes> path=<request :path>
//
// Modes: documents (default) · mutate (header/body/trailer mutations) · immediate (403 ImmediateResponse)
// · slow (replies after x-ext-proc-delay-ms, default 1000) · close (ends the stream OK at once)
// · error (ends the stream with INTERNAL) · replace (CONTINUE_AND_REPLACE with a new request body)
// · spurious (answers request headers with a response_headers reply) · override (mode_override: response
// headers SKIP) · duplex (FULL_DUPLEX_STREAMED: each body chunk comes back upper-cased as a
// streamed_response, with "|end" appended to the last) · metadata (request headers: x-ext-md lists the
// metadata_context namespaces it got, "ns.key=value;..."; the reply carries dynamic_metadata
// {ext.allowed: {from: processor}, ext.denied: {from: processor}}) · slowbody (body replies after
// x-ext-proc-delay-ms, default 1000) · slowduplex (duplex, each body reply after x-ext-proc-delay-ms).
// Request attributes come back in `x-ext-attributes` (name=value;...).
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "envoy/service/ext_proc/v3/external_processor.grpc.pb.h"

namespace {

namespace pb = envoy::service::ext_proc::v3;

std::mutex g_out;
bool g_quiet = false;  // --quiet: no per-message lines (benchmarks)

std::string headerOf(const envoy::config::core::v3::HeaderMap& map, const std::string& name) {
  for (const auto& h : map.headers()) {
    if (h.key() == name) return h.raw_value().empty() ? h.value() : h.raw_value();
  }
  return {};
}

void setHeader(pb::HeaderMutation* m, const std::string& key, const std::string& value) {
  auto* opt = m->add_set_headers();
  opt->mutable_header()->set_key(key);
  opt->mutable_header()->set_raw_value(value);
  opt->set_append_action(envoy::config::core::v3::HeaderValueOption::OVERWRITE_IF_EXISTS_OR_ADD);
}

std::string upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::toupper(c); });
  return s;
}

class Processor final : public pb::ExternalProcessor::Service {
 public:
  explicit Processor(std::string mode) : default_mode_(std::move(mode)) {}

  grpc::Status Process(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<pb::ProcessingResponse, pb::ProcessingRequest>* stream) override {
    pb::ProcessingRequest req;
    std::string mode = default_mode_;
    std::string path;
    int delay_ms = 1000;
    std::string seen;
    while (stream->Read(&req)) {
      const char* kind = "?";
      bool eos = false;
      size_t len = 0;
      switch (req.request_case()) {
        case pb::ProcessingRequest::kRequestHeaders: {
          kind = "request_headers";
          eos = req.request_headers().end_of_stream();
          const auto& h = req.request_headers().headers();
          path = headerOf(h, ":path");
          if (auto m = headerOf(h, "x-ext-proc-mode"); !m.empty()) mode = m;
          if (auto d = headerOf(h, "x-ext-proc-delay-ms"); !d.empty()) delay_ms = std::atoi(d.c_str());
          break;
        }
        case pb::ProcessingRequest::kResponseHeaders:
          kind = "response_headers";
          eos = req.response_headers().end_of_stream();
          break;
        case pb::ProcessingRequest::kRequestBody:
          kind = "request_body";
          eos = req.request_body().end_of_stream();
          len = req.request_body().body().size();
          break;
        case pb::ProcessingRequest::kResponseBody:
          kind = "response_body";
          eos = req.response_body().end_of_stream();
          len = req.response_body().body().size();
          break;
        case pb::ProcessingRequest::kRequestTrailers:
          kind = "request_trailers";
          break;
        case pb::ProcessingRequest::kResponseTrailers:
          kind = "response_trailers";
          break;
        default:
          break;
      }
      if (!g_quiet) {
        std::lock_guard<std::mutex> lock(g_out);
        std::printf("msg %s eos=%d len=%zu path=%s mode=%s\n", kind, eos ? 1 : 0, len, path.c_str(),
                    mode.c_str());
        std::fflush(stdout);
      }
      if (!seen.empty()) seen += ",";
      seen += kind;
      if (req.observability_mode()) continue;
      if (mode == "close") return grpc::Status::OK;
      if (mode == "error") return grpc::Status(grpc::StatusCode::INTERNAL, "processor failed on purpose");
      if (mode == "slow") std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
      if ((mode == "slowbody" || mode == "slowduplex") &&
          (req.has_request_body() || req.has_response_body())) {
        std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
      }
      if (ctx->IsCancelled()) return grpc::Status::CANCELLED;
      pb::ProcessingResponse resp;
      if (mode == "immediate" && req.has_request_headers()) {
        auto* ir = resp.mutable_immediate_response();
        ir->mutable_status()->set_code(envoy::type::v3::Forbidden);
        ir->set_body("denied by ext_proc");
        setHeader(ir->mutable_headers(), "x-ext-immediate", "yes");
        ir->set_details("ext_proc_test_immediate");
        stream->Write(resp);
        continue;
      }
      if ((mode == "duplex" || mode == "slowduplex") && (req.has_request_body() || req.has_response_body())) {
        const auto& b = req.has_request_body() ? req.request_body() : req.response_body();
        auto* common = req.has_request_body() ? resp.mutable_request_body()->mutable_response()
                                              : resp.mutable_response_body()->mutable_response();
        auto* sr = common->mutable_body_mutation()->mutable_streamed_response();
        sr->set_body(upper(b.body()) + (b.end_of_stream() ? "|end" : ""));
        sr->set_end_of_stream(b.end_of_stream());
        stream->Write(resp);
        continue;
      }
      if (mode == "spurious" && req.has_request_headers()) {
        resp.mutable_response_headers();
        stream->Write(resp);
        continue;
      }
      reply(mode, req, seen, &resp);
      stream->Write(resp);
    }
    return grpc::Status::OK;
  }

 private:
  static void reply(const std::string& mode, const pb::ProcessingRequest& req, const std::string& seen,
                    pb::ProcessingResponse* resp) {
    const bool mutate = mode == "mutate";
    switch (req.request_case()) {
      case pb::ProcessingRequest::kRequestHeaders: {
        auto* common = resp->mutable_request_headers()->mutable_response();
        auto* m = common->mutable_header_mutation();
        setHeader(m, "x-processed-by", "ext-proc");
        if (mutate) {
          setHeader(m, "x-ext-added", "1");
          m->add_remove_headers("x-remove-me");
          setHeader(m, "x-envoy-forbidden", "1");  // refused by the default mutation rules
        }
        // Attributes (request_attributes) come back as one header: "name=value;..." sorted by name.
        std::map<std::string, std::string> attrs;
        for (const auto& [ns, st] : req.attributes()) {
          for (const auto& [k, v] : st.fields()) {
            attrs[k] = v.has_string_value() ? v.string_value() : std::to_string(v.number_value());
          }
        }
        std::string joined;
        for (const auto& [k, v] : attrs) joined += (joined.empty() ? "" : ";") + k + "=" + v;
        if (!joined.empty()) setHeader(m, "x-ext-attributes", joined);
        if (mode == "metadata") {
          std::string got;
          for (const auto& [ns, st] : req.metadata_context().filter_metadata()) {
            for (const auto& [k, v] : st.fields()) {
              got += (got.empty() ? "" : ";") + ns + "." + k + "=" + v.string_value();
            }
          }
          for (const auto& [ns, any] : req.metadata_context().typed_filter_metadata()) {
            got += (got.empty() ? "" : ";") + ns + "=<typed>";
          }
          setHeader(m, "x-ext-md", got.empty() ? "none" : got);
          auto& md = *resp->mutable_dynamic_metadata()->mutable_fields();
          (*md["ext.allowed"].mutable_struct_value()->mutable_fields())["from"].set_string_value("processor");
          (*md["ext.denied"].mutable_struct_value()->mutable_fields())["from"].set_string_value("processor");
        }
        if (mode == "override") {
          // Asks for no response headers (honoured only with allow_mode_override).
          resp->mutable_mode_override()->set_response_header_mode(
              envoy::extensions::filters::http::ext_proc::v3::ProcessingMode::SKIP);
        }
        if (mode == "replace") {
          common->set_status(pb::CommonResponse::CONTINUE_AND_REPLACE);
          common->mutable_body_mutation()->set_body("replaced-body");
        }
        break;
      }
      case pb::ProcessingRequest::kResponseHeaders: {
        auto* common = resp->mutable_response_headers()->mutable_response();
        if (mutate) {
          auto* m = common->mutable_header_mutation();
          setHeader(m, "x-ext-response", "yes");
          setHeader(m, "x-ext-seen", seen);
          m->add_remove_headers("x-drop");
        } else if (mode != "documents") {
          setHeader(common->mutable_header_mutation(), "x-ext-seen", seen);
        }
        break;
      }
      case pb::ProcessingRequest::kRequestBody: {
        auto* common = resp->mutable_request_body()->mutable_response();
        if (mutate) common->mutable_body_mutation()->set_body(upper(req.request_body().body()));
        if (mutate) setHeader(common->mutable_header_mutation(), "x-ext-body-seen", "request");
        break;
      }
      case pb::ProcessingRequest::kResponseBody: {
        auto* common = resp->mutable_response_body()->mutable_response();
        if (mutate) common->mutable_body_mutation()->set_body(upper(req.response_body().body()));
        break;
      }
      case pb::ProcessingRequest::kRequestTrailers: {
        auto* t = resp->mutable_request_trailers();
        if (mutate) setHeader(t->mutable_header_mutation(), "x-ext-trailer", "request");
        break;
      }
      case pb::ProcessingRequest::kResponseTrailers: {
        auto* t = resp->mutable_response_trailers();
        if (mutate) setHeader(t->mutable_header_mutation(), "x-ext-trailer", "response");
        break;
      }
      default:
        break;
    }
  }

  std::string default_mode_;
};

}  // namespace

int main(int argc, char** argv) {
  int port = 0;
  std::string mode = "documents";
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--port") && i + 1 < argc) {
      port = std::atoi(argv[++i]);
    } else if (!std::strcmp(argv[i], "--mode") && i + 1 < argc) {
      mode = argv[++i];
    } else if (!std::strcmp(argv[i], "--quiet")) {
      g_quiet = true;
    } else {
      std::fprintf(stderr, "usage: %s [--port N] [--mode M] [--quiet]\n", argv[0]);
      return 2;
    }
  }
  Processor service(mode);
  grpc::ServerBuilder builder;
  int bound = 0;
  builder.AddListeningPort("127.0.0.1:" + std::to_string(port), grpc::InsecureServerCredentials(), &bound);
  builder.RegisterService(&service);
  auto server = builder.BuildAndStart();
  if (!server || bound == 0) {
    std::fprintf(stderr, "cannot listen on port %d\n", port);
    return 1;
  }
  std::printf("listening on %d\n", bound);
  std::fflush(stdout);
  server->Wait();
  return 0;
}
