// A grpc++ envoy.service.auth.v3.Authorization server for tests. The verdict comes from the request's
// `x-authz` header: allow (default), deny (401 with headers and body), deny-default (PERMISSION_DENIED and
// no denied_response: Envoy answers 403), error (the RPC fails with UNAVAILABLE), slow (allows after 2 s).
// An allowed request gets `x-authz-user: alice`, loses `x-remove-me`, gains `?authz=1`, and its response
// gets `x-authz-resp: ok`; `x-authz-seen` carries the header names the check saw (sorted, comma-joined),
// `x-authz-context` the context extensions and `x-authz-body` the body it was given. Allowed checks emit
// dynamic metadata {user: alice, checks: n + 1} where n is the forwarded metadata_context's checks (0 when
// none; also sent upstream as x-authz-md-checks).
//
//   skiff-ext-authz-test-server [--port N]     prints "listening on <port>", then "check <path>" per call
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "envoy/service/auth/v3/external_auth.grpc.pb.h"

namespace {

namespace auth = envoy::service::auth::v3;

std::mutex g_out;

void addHeader(google::protobuf::RepeatedPtrField<envoy::config::core::v3::HeaderValueOption>* list,
               const std::string& key, const std::string& value) {
  auto* opt = list->Add();
  opt->mutable_header()->set_key(key);
  opt->mutable_header()->set_value(value);
}

class Authz final : public auth::Authorization::Service {
 public:
  grpc::Status Check(grpc::ServerContext*, const auth::CheckRequest* req,
                     auth::CheckResponse* resp) override {
    const auto& http = req->attributes().request().http();
    const auto& headers = http.headers();
    {
      std::lock_guard<std::mutex> lock(g_out);
      std::printf("check %s\n", http.path().c_str());
      std::fflush(stdout);
    }
    auto it = headers.find("x-authz");
    const std::string verdict = it == headers.end() ? "allow" : it->second;
    if (verdict == "error") return grpc::Status(grpc::StatusCode::UNAVAILABLE, "authz failed on purpose");
    if (verdict == "deny") {
      resp->mutable_status()->set_code(grpc::StatusCode::PERMISSION_DENIED);
      auto* denied = resp->mutable_denied_response();
      denied->mutable_status()->set_code(envoy::type::v3::Unauthorized);
      addHeader(denied->mutable_headers(), "www-authenticate", "Bearer realm=\"skiff\"");
      addHeader(denied->mutable_headers(), "x-authz-denied", "yes");
      denied->set_body("denied by grpc authz");
      return grpc::Status::OK;
    }
    if (verdict == "deny-default") {
      resp->mutable_status()->set_code(grpc::StatusCode::PERMISSION_DENIED);
      return grpc::Status::OK;
    }
    if (verdict == "slow") std::this_thread::sleep_for(std::chrono::seconds(2));
    std::map<std::string, std::string> sorted(headers.begin(), headers.end());
    std::string seen;
    for (const auto& [k, v] : sorted) seen += (seen.empty() ? "" : ",") + k;
    std::map<std::string, std::string> ctx(req->attributes().context_extensions().begin(),
                                           req->attributes().context_extensions().end());
    std::string context;
    for (const auto& [k, v] : ctx) context += (context.empty() ? "" : ",") + k + "=" + v;
    resp->mutable_status()->set_code(0);
    auto* ok = resp->mutable_ok_response();
    addHeader(ok->mutable_headers(), "x-authz-user", "alice");
    addHeader(ok->mutable_headers(), "x-authz-seen", seen);
    addHeader(ok->mutable_headers(), "x-authz-context", context);
    addHeader(ok->mutable_headers(), "x-authz-body", http.body());
    ok->add_headers_to_remove("x-remove-me");
    auto* q = ok->add_query_parameters_to_set();
    q->set_key("authz");
    q->set_value("1");
    addHeader(ok->mutable_response_headers_to_add(), "x-authz-resp", "ok");
    // Dynamic metadata: user=alice and checks=<the checks count in metadata_context, if forwarded> + 1;
    // x-authz-md-checks tells the upstream what this check saw.
    int prior = 0;
    const auto& fm = req->attributes().metadata_context().filter_metadata();
    if (auto ns = fm.find("envoy.filters.http.ext_authz"); ns != fm.end()) {
      if (auto f = ns->second.fields().find("checks"); f != ns->second.fields().end()) {
        prior = static_cast<int>(f->second.number_value());
      }
    }
    auto& md = *resp->mutable_dynamic_metadata()->mutable_fields();
    md["user"].set_string_value("alice");
    md["checks"].set_number_value(prior + 1);
    addHeader(ok->mutable_headers(), "x-authz-md-checks", std::to_string(prior));
    return grpc::Status::OK;
  }
};

}  // namespace

int main(int argc, char** argv) {
  int port = 0;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--port") && i + 1 < argc) {
      port = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--port N]\n", argv[0]);
      return 2;
    }
  }
  Authz service;
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
