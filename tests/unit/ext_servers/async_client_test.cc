// skiff::grpc::AsyncClient against in-process grpc++ servers: unary and bidi calls complete on the
// io_context, deadlines and unreachable services surface as statuses, cancel() silences callbacks.
#include "skiff/grpc/async_client.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <atomic>
#include <chrono>
#include <thread>

#include "envoy/config/core/v3/grpc_service.pb.h"
#include "envoy/service/auth/v3/external_auth.grpc.pb.h"
#include "envoy/service/ext_proc/v3/external_processor.grpc.pb.h"
#include "skiff/upstream/thread_local_cluster.h"

namespace skiff::grpc {
namespace {

namespace auth = envoy::service::auth::v3;
namespace pb = envoy::service::ext_proc::v3;

class Authz final : public auth::Authorization::Service {
 public:
  ::grpc::Status Check(::grpc::ServerContext* context, const auth::CheckRequest* req,
                       auth::CheckResponse* resp) override {
    const std::string& path = req->attributes().request().http().path();
    if (path == "/slow") {
      // A slow server that notices when the client gives up, so no handler is still running when the
      // fixture shuts the server down (grpc's sync server can crash when it is torn down under one).
      const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
      while (std::chrono::steady_clock::now() < until && !context->IsCancelled()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    }
    if (path == "/fail") return ::grpc::Status(::grpc::StatusCode::PERMISSION_DENIED, "no");
    resp->mutable_status()->set_code(0);
    resp->mutable_ok_response()->add_headers_to_remove(path);
    return ::grpc::Status::OK;
  }
};

// Echoes every request's header count back as a request_headers reply; ends after two messages.
class Echo final : public pb::ExternalProcessor::Service {
 public:
  ::grpc::Status Process(
      ::grpc::ServerContext*,
      ::grpc::ServerReaderWriter<pb::ProcessingResponse, pb::ProcessingRequest>* s) override {
    pb::ProcessingRequest req;
    int n = 0;
    while (s->Read(&req)) {
      pb::ProcessingResponse resp;
      auto* opt =
          resp.mutable_request_headers()->mutable_response()->mutable_header_mutation()->add_set_headers();
      opt->mutable_header()->set_key("n");
      opt->mutable_header()->set_value(std::to_string(req.request_headers().headers().headers_size()));
      s->Write(resp);
      if (++n == 2) return ::grpc::Status(::grpc::StatusCode::RESOURCE_EXHAUSTED, "two is enough");
    }
    return ::grpc::Status::OK;
  }
};

class AsyncClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", ::grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&authz_);
    builder.RegisterService(&echo_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(port_, 0);
    service_.target = "127.0.0.1:" + std::to_string(port_);
  }
  void TearDown() override { server_->Shutdown(std::chrono::system_clock::now()); }

  // Runs the loop until `done` or the deadline.
  void runUntil(const std::function<bool()>& done,
                std::chrono::milliseconds limit = std::chrono::seconds(5)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      io_.restart();
      io_.run_for(std::chrono::milliseconds(10));
    }
  }

  static auth::CheckRequest check(const std::string& path) {
    auth::CheckRequest req;
    req.mutable_attributes()->mutable_request()->mutable_http()->set_path(path);
    return req;
  }

  asio::io_context io_;
  upstream::ThreadLocalClusterManager clusters_;
  Authz authz_;
  Echo echo_;
  std::unique_ptr<::grpc::Server> server_;
  int port_ = 0;
  ServiceConfig service_;
};

TEST_F(AsyncClientTest, UnaryCallCompletesOnTheWorker) {
  AsyncClient client(io_, clusters_);
  const auto worker = std::this_thread::get_id();
  std::optional<Status> status;
  auth::CheckResponse response;
  auto call = client.unary(service_, "/envoy.service.auth.v3.Authorization/Check", check("/a"),
                           std::chrono::seconds(5), [&](const Status& s, std::string bytes) {
                             EXPECT_EQ(std::this_thread::get_id(), worker);
                             status = s;
                             response.ParseFromString(bytes);
                           });
  runUntil([&] { return status.has_value(); });
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(status->ok()) << status->message;
  ASSERT_EQ(response.ok_response().headers_to_remove_size(), 1);
  EXPECT_EQ(response.ok_response().headers_to_remove(0), "/a");
  // The second call reuses the channel.
  status.reset();
  client.unary(service_, "/envoy.service.auth.v3.Authorization/Check", check("/fail"),
               std::chrono::seconds(5), [&](const Status& s, std::string) { status = s; });
  runUntil([&] { return status.has_value(); });
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->code, kPermissionDenied);
  EXPECT_EQ(status->message, "no");
  EXPECT_EQ(client.channelCount(), 1u);
}

TEST_F(AsyncClientTest, DeadlineExceeded) {
  AsyncClient client(io_, clusters_);
  std::optional<Status> status;
  client.unary(service_, "/envoy.service.auth.v3.Authorization/Check", check("/slow"),
               std::chrono::milliseconds(50), [&](const Status& s, std::string) { status = s; });
  runUntil([&] { return status.has_value(); });
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->code, kDeadlineExceeded);
}

TEST_F(AsyncClientTest, UnknownClusterAndUnreachableTargetFailLater) {
  AsyncClient client(io_, clusters_);
  ServiceConfig missing;
  missing.cluster = "nope";
  std::optional<Status> a, b;
  client.unary(missing, "/envoy.service.auth.v3.Authorization/Check", check("/"), std::chrono::seconds(1),
               [&](const Status& s, std::string) { a = s; });
  EXPECT_FALSE(a.has_value());  // never inside the call
  ServiceConfig closed;
  {
    // A port that was just free: nothing listens there.
    asio::ip::tcp::acceptor acceptor(io_, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    closed.target = "127.0.0.1:" + std::to_string(acceptor.local_endpoint().port());
  }
  client.unary(closed, "/envoy.service.auth.v3.Authorization/Check", check("/"), std::chrono::seconds(3),
               [&](const Status& s, std::string) { b = s; });
  runUntil([&] { return a.has_value() && b.has_value(); });
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->code, kUnavailable);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->code, kUnavailable);
}

TEST_F(AsyncClientTest, CancelSilencesTheCallback) {
  AsyncClient client(io_, clusters_);
  bool called = false;
  auto call = client.unary(service_, "/envoy.service.auth.v3.Authorization/Check", check("/slow"),
                           std::chrono::seconds(5), [&](const Status&, std::string) { called = true; });
  call->cancel();
  runUntil([] { return false; }, std::chrono::milliseconds(700));
  EXPECT_FALSE(called);
}

struct Collector : StreamCallbacks {
  std::vector<std::string> messages;
  std::optional<Status> closed;
  void onReceiveMessage(std::string m) override { messages.push_back(std::move(m)); }
  void onRemoteClose(const Status& s) override { closed = s; }
};

TEST_F(AsyncClientTest, BidiStreamDeliversRepliesThenTheStatus) {
  AsyncClient client(io_, clusters_);
  Collector c;
  auto stream = client.stream(service_, "/envoy.service.ext_proc.v3.ExternalProcessor/Process", c);
  pb::ProcessingRequest req;
  auto* h = req.mutable_request_headers()->mutable_headers();
  h->add_headers()->set_key("a");
  EXPECT_TRUE(stream->sendMessage(req));
  h->add_headers()->set_key("b");
  EXPECT_TRUE(stream->sendMessage(req));
  runUntil([&] { return c.closed.has_value(); });
  ASSERT_EQ(c.messages.size(), 2u);
  pb::ProcessingResponse r;
  ASSERT_TRUE(r.ParseFromString(c.messages[1]));
  EXPECT_EQ(r.request_headers().response().header_mutation().set_headers(0).header().value(), "2");
  ASSERT_TRUE(c.closed.has_value());
  EXPECT_EQ(c.closed->code, 8);  // RESOURCE_EXHAUSTED
  EXPECT_FALSE(stream->sendMessage(req));
}

TEST_F(AsyncClientTest, CancelledStreamReportsNothing) {
  AsyncClient client(io_, clusters_);
  Collector c;
  auto stream = client.stream(service_, "/envoy.service.ext_proc.v3.ExternalProcessor/Process", c);
  pb::ProcessingRequest req;
  req.mutable_request_headers();
  stream->sendMessage(req);
  stream->cancel();
  stream.reset();
  runUntil([] { return false; }, std::chrono::milliseconds(300));
  EXPECT_TRUE(c.messages.empty());
  EXPECT_FALSE(c.closed.has_value());
}

TEST(ServiceConfigTest, FromProto) {
  envoy::config::core::v3::GrpcService proto;
  EXPECT_THROW(ServiceConfig::fromProto(proto, "x"), std::invalid_argument);
  proto.mutable_envoy_grpc()->set_cluster_name("authz");
  proto.mutable_timeout()->set_nanos(250'000'000);
  auto* md = proto.add_initial_metadata();
  md->set_key("X-Token");
  md->set_value("t");
  ServiceConfig c = ServiceConfig::fromProto(proto, "x");
  EXPECT_EQ(c.cluster, "authz");
  EXPECT_EQ(c.authority, "authz");
  EXPECT_EQ(c.timeout, std::chrono::milliseconds(250));
  ASSERT_EQ(c.initial_metadata.size(), 1u);
  EXPECT_EQ(c.initial_metadata[0].first, "x-token");
  proto.mutable_google_grpc()->set_target_uri("127.0.0.1:1");
  proto.mutable_google_grpc()->mutable_channel_credentials()->mutable_ssl_credentials();
  EXPECT_NE(ServiceConfig::fromProto(proto, "x").google_ssl, nullptr);  // gRPC's default roots
  proto.mutable_google_grpc()->mutable_channel_credentials()->mutable_google_default();
  EXPECT_THROW(ServiceConfig::fromProto(proto, "x"), std::invalid_argument);
  proto.mutable_google_grpc()
      ->mutable_channel_credentials()
      ->mutable_ssl_credentials()
      ->mutable_cert_chain()
      ->set_filename("/nonexistent/chain.pem");
  EXPECT_THROW(ServiceConfig::fromProto(proto, "x"), std::invalid_argument);
}

}  // namespace
}  // namespace skiff::grpc
