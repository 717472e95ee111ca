// skiff-grpc-test-client: one Echo call, result as one JSON line on stdout.
//   skiff-grpc-test-client --target HOST:PORT [--rpc unary|stream] [--message M] [--count N] [--status S]
//                          [--deadline-ms D] [--sleep-ms X] [--fail-first F] [--pad-bytes B] [--calls K]
//                          [--ca ROOT.pem [--server-name NAME]]
// Output:
// {"code":..,"message":"..","replies":[..],"deadlines":[..],"trailer":"..","initial":"..","ok_calls":..}
#include <grpcpp/grpcpp.h>
#include <fstream>
#include <sstream>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>

#include "echo.grpc.pb.h"

namespace {

std::string jsonEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    if (static_cast<unsigned char>(c) < 0x20) continue;
    out.push_back(c);
  }
  return out;
}

std::string metadata(const std::multimap<grpc::string_ref, grpc::string_ref>& md, const char* key) {
  auto it = md.find(key);
  return it == md.end() ? std::string() : std::string(it->second.data(), it->second.size());
}

}  // namespace

int main(int argc, char** argv) {
  std::string target, rpc = "unary", message = "hi";
  std::string ca_file, server_name;
  int count = 3, status = 0, deadline_ms = 0, sleep_ms = 0, fail_first = 0, pad = 0, calls = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--target")
      target = v;
    else if (k == "--rpc")
      rpc = v;
    else if (k == "--message")
      message = v;
    else if (k == "--count")
      count = std::atoi(v.c_str());
    else if (k == "--status")
      status = std::atoi(v.c_str());
    else if (k == "--deadline-ms")
      deadline_ms = std::atoi(v.c_str());
    else if (k == "--sleep-ms")
      sleep_ms = std::atoi(v.c_str());
    else if (k == "--fail-first")
      fail_first = std::atoi(v.c_str());
    else if (k == "--pad-bytes")
      pad = std::atoi(v.c_str());
    else if (k == "--calls")
      calls = std::atoi(v.c_str());
    else if (k == "--ca")
      ca_file = v;
    else if (k == "--server-name")
      server_name = v;
  }
  // --ca: TLS (gRPC offers ALPN h2) trusting that root; --server-name: the name the certificate must carry.
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  grpc::ChannelArguments args;
  if (!ca_file.empty()) {
    std::ifstream in(ca_file);
    std::stringstream pem;
    pem << in.rdbuf();
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = pem.str();
    credentials = grpc::SslCredentials(ssl);
    if (!server_name.empty()) args.SetSslTargetNameOverride(server_name);
  }
  auto channel = grpc::CreateCustomChannel(target, credentials, args);
  auto stub = skiff::test::Echo::NewStub(channel);
  skiff::test::EchoRequest rq;
  rq.set_message(message);
  rq.set_count(count);
  rq.set_status(status);
  rq.set_sleep_ms(sleep_ms);
  rq.set_fail_first(fail_first);
  rq.set_pad_bytes(pad);

  grpc::Status st;
  std::string replies, deadlines, trailer, initial;
  int ok_calls = 0;
  for (int call = 0; call < calls; ++call) {
    grpc::ClientContext ctx;
    if (deadline_ms > 0)
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(deadline_ms));
    replies.clear();
    deadlines.clear();
    auto add = [&](const skiff::test::EchoReply& r) {
      if (!replies.empty()) replies += ",";
      replies += "\"" + jsonEscape(r.message()) + "\"";
      if (!deadlines.empty()) deadlines += ",";
      deadlines += std::to_string(r.deadline_ms());
    };
    if (rpc == "stream") {
      auto reader = stub->Stream(&ctx, rq);
      skiff::test::EchoReply r;
      while (reader->Read(&r)) add(r);
      st = reader->Finish();
    } else {
      skiff::test::EchoReply r;
      st = stub->Unary(&ctx, rq, &r);
      if (st.ok()) add(r);
    }
    if (st.ok()) ++ok_calls;
    trailer = metadata(ctx.GetServerTrailingMetadata(), "x-echo-trailer");
    initial = metadata(ctx.GetServerInitialMetadata(), "x-echo-initial");
  }
  std::cout << "{\"code\":" << static_cast<int>(st.error_code()) << ",\"message\":\""
            << jsonEscape(st.error_message()) << "\",\"replies\":[" << replies << "],\"deadlines\":["
            << deadlines << "],\"trailer\":\"" << jsonEscape(trailer) << "\",\"initial\":\""
            << jsonEscape(initial) << "\",\"ok_calls\":" << ok_calls << "}" << std::endl;
  return 0;
}
