#pragma once

// A small ADS server for tests and local development (not a production control plane): serves versioned
// snapshots over SotW and Delta, pushes changes, drops streams, and records every request it receives.

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <google/protobuf/any.pb.h>

namespace grpc {
class Server;
}

namespace skiff::xds {

// type URL -> resource name -> resource.
using ResourceMap = std::map<std::string, std::map<std::string, google::protobuf::Any>>;

struct ReceivedRequest {
  uint64_t stream = 0;
  bool delta = false;
  std::string type_url;
  std::string version_info;  // SotW
  std::string response_nonce;
  std::vector<std::string> resource_names;  // SotW
  std::vector<std::string> subscribe;       // Delta
  std::vector<std::string> unsubscribe;     // Delta
  std::map<std::string, std::string> initial_resource_versions;
  bool has_error = false;
  int error_code = 0;
  std::string error_message;
  std::string node_id;  // empty when the request carried no node
};

struct SentResponse {
  uint64_t stream = 0;
  bool delta = false;
  std::string type_url;
  std::string version;  // SotW version_info / Delta system_version_info
  std::string nonce;
  std::vector<std::string> names;    // resources sent
  std::vector<std::string> removed;  // Delta
};

class AdsTestServer {
 public:
  AdsTestServer();
  ~AdsTestServer();

  // Listens on `address` ("127.0.0.1:0" picks a port; restarting reuses the port it got). Returns the port,
  // or 0 when it could not bind.
  int start(const std::string& address = "127.0.0.1:0");
  // Ends every stream and stops listening; resources and the request log are kept.
  void stop();
  int port() const { return port_; }

  // Replaces everything with `resources`: types whose content changed get a new version; streams are updated.
  std::string setResources(const ResourceMap& resources);
  // Adds or replaces resources, keeping the others.
  std::string upsert(const ResourceMap& resources);
  std::string remove(const std::string& type_url, const std::string& name);
  // A resource that no client can decode (its name is readable, the rest is truncated).
  std::string pushInvalid(const std::string& type_url, const std::string& name);
  // Cancels every open stream (clients see the stream end and reconnect).
  void dropStreams();

  std::vector<ReceivedRequest> requests() const;
  std::vector<SentResponse> responses() const;
  size_t openStreams() const;
  std::string version() const;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

// Loads resources from an Envoy-style YAML/JSON file or a directory of them (*.yaml, *.yml, *.json). A file
// is either a snapshot (`listeners`, `clusters`, `routes`, `endpoints`, `secrets` lists, or `resources` with
// "@type" on each) or an Envoy /config_dump (its dynamic listeners, clusters, routes, endpoints and secrets),
// in snake_case or lowerCamelCase. A type this build does not know is sent inside a udpa.type.v1.TypedStruct.
// Resources that cannot be converted are skipped and listed in `errors`.
struct LoadedSnapshot {
  ResourceMap resources;
  std::vector<std::string> errors;    // "<where>: <why>" per skipped resource
  std::vector<std::string> warnings;  // e.g. unknown fields dropped
};
LoadedSnapshot loadSnapshot(const std::string& path);
// The same from text (YAML or JSON).
LoadedSnapshot loadSnapshotText(const std::string& text, const std::string& origin = "<text>");

}  // namespace skiff::xds
