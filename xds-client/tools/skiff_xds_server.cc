// skiff-xds-server: the test/dev ADS control plane, driven by line commands on stdin with JSON replies on
// stdout.
//
//   skiff-xds-server [--address 127.0.0.1:0] [--snapshot PATH]
//                    [--tls-cert CHAIN.pem --tls-key KEY.pem [--tls-client-ca ROOT.pem]]
// Prints {"event":"listening","port":N} first. Commands (one per line; each gets one JSON line back):
//   load PATH                 replace the snapshot with PATH (file or directory)
//   push PATH                 add/replace the resources in PATH, keep the others
//   remove TYPE_URL NAME      delete one resource
//   invalid TYPE_URL NAME     push an undecodable resource of that type
//   drop                      cancel every open stream
//   stop | start              stop serving (streams end) / serve again on the same port
//   requests                  every request received: {"requests":[...]}
//   responses                 every response sent: {"responses":[...]}
//   status                    {"version":..,"streams":..,"serving":..}
//   generate N E [PREFIX]     add/replace N EDS clusters with E endpoints each (scale benchmark)
//   identifier [NAME]         put control_plane.identifier NAME on responses (none: stop)
//   timing                    per response: when it was written and when its ACK/NACK was read,
//                             microseconds on the server's steady clock: {"timing":[...]}
//   quit

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>

#include "skiff/xds/test_server.h"

namespace {

using skiff::xds::AdsTestServer;

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out + "\"";
}

std::string list(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + quote(items[i]);
  return out + "]";
}

std::string loadReply(AdsTestServer& server, const std::string& path, bool replace) {
  auto loaded = skiff::xds::loadSnapshot(path);
  const std::string version =
      replace ? server.setResources(loaded.resources) : server.upsert(loaded.resources);
  std::string counts = "{";
  bool first = true;
  for (const auto& [type, resources] : loaded.resources) {
    counts += (first ? "" : ",") + quote(type) + ":" + std::to_string(resources.size());
    first = false;
  }
  counts += "}";
  return "{\"ok\":true,\"version\":" + quote(version) + ",\"counts\":" + counts +
         ",\"errors\":" + list(loaded.errors) + ",\"warnings\":" + list(loaded.warnings) + "}";
}

std::string requestsJson(const AdsTestServer& server) {
  std::string out = "{\"requests\":[";
  bool first = true;
  for (const auto& r : server.requests()) {
    std::string versions = "{";
    bool f = true;
    for (const auto& [name, version] : r.initial_resource_versions) {
      versions += (f ? "" : ",") + quote(name) + ":" + quote(version);
      f = false;
    }
    versions += "}";
    out += std::string(first ? "" : ",") + "{\"stream\":" + std::to_string(r.stream) +
           ",\"delta\":" + (r.delta ? "true" : "false") + ",\"type_url\":" + quote(r.type_url) +
           ",\"version_info\":" + quote(r.version_info) + ",\"response_nonce\":" + quote(r.response_nonce) +
           ",\"resource_names\":" + list(r.resource_names) + ",\"subscribe\":" + list(r.subscribe) +
           ",\"unsubscribe\":" + list(r.unsubscribe) + ",\"initial_resource_versions\":" + versions +
           ",\"node_id\":" + quote(r.node_id) +
           (r.has_error ? ",\"error_detail\":{\"code\":" + std::to_string(r.error_code) +
                              ",\"message\":" + quote(r.error_message) + "}"
                        : std::string(",\"error_detail\":null")) +
           "}";
    first = false;
  }
  return out + "]}";
}

std::string responsesJson(const AdsTestServer& server) {
  std::string out = "{\"responses\":[";
  bool first = true;
  for (const auto& r : server.responses()) {
    out += std::string(first ? "" : ",") + "{\"stream\":" + std::to_string(r.stream) +
           ",\"delta\":" + (r.delta ? "true" : "false") + ",\"type_url\":" + quote(r.type_url) +
           ",\"version\":" + quote(r.version) + ",\"nonce\":" + quote(r.nonce) +
           ",\"names\":" + list(r.names) + ",\"removed\":" + list(r.removed) + "}";
    first = false;
  }
  return out + "]}";
}

// Pairs every response with the first request on its stream that answers its nonce.
std::string timingJson(const AdsTestServer& server) {
  const auto requests = server.requests();
  const auto responses = server.responses();
  std::map<std::pair<uint64_t, std::string>, const skiff::xds::ReceivedRequest*> answers;
  for (const auto& r : requests) {
    if (!r.response_nonce.empty()) answers.emplace(std::make_pair(r.stream, r.response_nonce), &r);
  }
  auto us = [](std::chrono::steady_clock::time_point t) {
    return std::to_string(
        std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count());
  };
  std::string out = "{\"timing\":[";
  bool first = true;
  for (const auto& r : responses) {
    auto it = answers.find({r.stream, r.nonce});
    out += std::string(first ? "" : ",") + "{\"stream\":" + std::to_string(r.stream) +
           ",\"type_url\":" + quote(r.type_url) + ",\"version\":" + quote(r.version) +
           ",\"nonce\":" + quote(r.nonce) + ",\"resources\":" + std::to_string(r.names.size()) +
           ",\"sent_us\":" + us(r.at);
    if (it == answers.end()) {
      out += ",\"answer_us\":null,\"nack\":null}";
    } else {
      out += ",\"answer_us\":" + us(it->second->at) +
             ",\"nack\":" + (it->second->has_error ? "true" : "false") + "}";
    }
    first = false;
  }
  return out + "]}";
}

}  // namespace

int main(int argc, char** argv) {
  std::string address = "127.0.0.1:0";
  std::string snapshot;
  std::string tls_cert, tls_key, tls_client_ca;
  auto readFile = [](const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
  };
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--tls-cert" && i + 1 < argc) {
      tls_cert = readFile(argv[++i]);
    } else if (arg == "--tls-key" && i + 1 < argc) {
      tls_key = readFile(argv[++i]);
    } else if (arg == "--tls-client-ca" && i + 1 < argc) {
      tls_client_ca = readFile(argv[++i]);
    } else if (arg == "--address" && i + 1 < argc) {
      address = argv[++i];
    } else if (arg == "--snapshot" && i + 1 < argc) {
      snapshot = argv[++i];
    } else {
      std::cerr << "usage: skiff-xds-server [--address HOST:PORT] [--snapshot PATH] [--tls-cert PEM "
                   "--tls-key PEM [--tls-client-ca PEM]]\n";
      return 2;
    }
  }
  AdsTestServer server;
  if (!tls_cert.empty() || !tls_key.empty()) {
    if (tls_cert.empty() || tls_key.empty()) {
      std::cerr << "--tls-cert and --tls-key go together (and must name readable files)\n";
      return 2;
    }
    server.setTls(tls_cert, tls_key, tls_client_ca);
  }
  if (!snapshot.empty()) std::cerr << loadReply(server, snapshot, true) << "\n";
  const int port = server.start(address);
  if (port == 0) {
    std::cout << "{\"event\":\"error\",\"message\":" << quote("cannot listen on " + address) << "}"
              << std::endl;
    return 1;
  }
  std::cout << "{\"event\":\"listening\",\"port\":" << port << "}" << std::endl;
  bool serving = true;
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream words(line);
    std::string command, a, b;
    words >> command >> a >> b;
    std::string reply;
    if (command.empty()) continue;
    if (command == "load" || command == "push") {
      reply = a.empty() ? R"({"ok":false,"error":"missing path"})" : loadReply(server, a, command == "load");
    } else if (command == "remove") {
      reply = "{\"ok\":true,\"version\":" + quote(server.remove(a, b)) + "}";
    } else if (command == "invalid") {
      reply = "{\"ok\":true,\"version\":" + quote(server.pushInvalid(a, b)) + "}";
    } else if (command == "drop") {
      server.dropStreams();
      reply = R"({"ok":true})";
    } else if (command == "stop") {
      server.stop();
      serving = false;
      reply = R"({"ok":true})";
    } else if (command == "start") {
      serving = server.start(address) != 0;
      reply = serving ? R"({"ok":true})" : R"({"ok":false,"error":"cannot listen"})";
    } else if (command == "requests") {
      reply = requestsJson(server);
    } else if (command == "responses") {
      reply = responsesJson(server);
    } else if (command == "status") {
      reply = "{\"version\":" + quote(server.version()) +
              ",\"streams\":" + std::to_string(server.openStreams()) +
              ",\"serving\":" + (serving ? "true" : "false") + "}";
    } else if (command == "generate") {
      std::string prefix;
      words >> prefix;
      char* end_a = nullptr;
      char* end_b = nullptr;
      const long n = std::strtol(a.c_str(), &end_a, 10);
      const long e = std::strtol(b.c_str(), &end_b, 10);
      if (a.empty() || b.empty() || *end_a || *end_b || n < 0 || e < 0 || n > 1000000 || e > 10000) {
        reply = R"({"ok":false,"error":"usage: generate CLUSTERS ENDPOINTS_PER_CLUSTER [PREFIX]"})";
      } else {
        auto resources = skiff::xds::generateScaleSnapshot(static_cast<int>(n), static_cast<int>(e),
                                                           prefix.empty() ? "bench-" : prefix);
        reply = "{\"ok\":true,\"version\":" + quote(server.upsert(resources)) + "}";
      }
    } else if (command == "identifier") {
      server.setIdentifier(a);
      reply = R"({"ok":true})";
    } else if (command == "timing") {
      reply = timingJson(server);
    } else if (command == "quit") {
      break;
    } else {
      reply = "{\"ok\":false,\"error\":" + quote("unknown command '" + command + "'") + "}";
    }
    std::cout << reply << std::endl;
  }
  server.stop();
  return 0;
}
