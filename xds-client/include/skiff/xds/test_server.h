#pragma once

// A small ADS server for tests and local development (not a production control plane): serves versioned
// snapshots over SotW and Delta, pushes changes, drops streams, and records every request it receives.

#include <chrono>
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
  std::string node_id;                       // empty when the request carried no node
  std::chrono::steady_clock::time_point at;  // when the server read it
};

struct SentResponse {
  uint64_t stream = 0;
  bool delta = false;
  std::string type_url;
  std::string version;  // SotW version_info / Delta system_version_info
  std::string nonce;
  std::vector<std::string> names;            // resources sent
  std::vector<std::string> removed;          // Delta
  std::chrono::steady_clock::time_point at;  // just before the write
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
  // Serve TLS from the next start(): PEM server chain and key; with `client_ca`, clients must present a
  // certificate it signed.
  void setTls(std::string cert_chain, std::string private_key, std::string client_ca = "");

  // Replaces everything with `resources`: types whose content changed get a new version; streams are updated.
  std::string setResources(const ResourceMap& resources);
  // Adds or replaces resources, keeping the others.
  std::string upsert(const ResourceMap& resources);
  std::string remove(const std::string& type_url, const std::string& name);
  // A resource that no client can decode (its name is readable, the rest is truncated).
  std::string pushInvalid(const std::string& type_url, const std::string& name);
  // control_plane.identifier put on every response from now on ("" = none).
  void setIdentifier(const std::string& identifier);
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
  std::string tls_cert_, tls_key_, tls_client_ca_;
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

// A synthetic snapshot for scale benchmarks: `clusters` EDS clusters named <prefix><i> (ads eds_config,
// round robin, 1 s connect timeout) and one ClusterLoadAssignment each with `endpoints_per_cluster`
// endpoints on distinct 10.0.0.0/8 addresses (port 8080), so no two hosts share an address.
ResourceMap generateScaleSnapshot(int clusters, int endpoints_per_cluster,
                                  const std::string& prefix = "bench-");

}  // namespace skiff::xds
