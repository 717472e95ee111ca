#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/security/credentials.h>

#include "envoy/config/core/v3/base.pb.h"
#include "envoy/config/core/v3/grpc_service.pb.h"
#include "skiff/xds/types.h"

namespace skiff::xds {

// Runs `fn` on the owner's thread, later (it must queue, never run inline). Every callback of the client runs
// through it, so the owner needs no locks.
using Executor = std::function<void(std::function<void()>)>;

struct AdsClientOptions {
  std::string target;                                     // host:port (see targetOf)
  std::shared_ptr<grpc::ChannelCredentials> credentials;  // null = insecure
  std::string ssl_target_name_override;                   // TLS: name checked against the server certificate
  bool delta = false;                                     // api_type DELTA_GRPC instead of GRPC
  envoy::config::core::v3::Node node;
  bool set_node_on_first_message_only = true;
  Executor executor;
  // Reconnect backoff: Envoy's defaults for the xDS stream (500 ms base, 30 s cap), fully jittered.
  std::chrono::milliseconds backoff_base{500};
  std::chrono::milliseconds backoff_max{30000};
  // google.rpc.Code put in a NACK's error_detail. Envoy uses INTERNAL (13).
  int nack_status_code = 13;
  // ApiConfigSource.rate_limit_settings: a token bucket on requests sent (Envoy's defaults when enabled:
  // 100 tokens, 10 per second). A request without a token waits, in order, and counts rate_limit_enforced.
  struct RateLimit {
    uint32_t max_tokens = 100;
    double fill_rate = 10;
  };
  std::optional<RateLimit> rate_limit;
  // Optional: told on every change of the stream state (control_plane.connected_state).
  std::function<void(bool connected)> on_connection_state;
};

// What one type's subscriber supplies.
struct SubscriptionCallbacks {
  // Validate and apply one response. Return "" to ACK, or an error naming the resource and field to NACK
  // (the previous good config stays in force; the text becomes error_detail.message).
  std::function<std::string(const ConfigUpdate&)> on_update;
  // The first response did not arrive within initial_fetch_timeout (the owner stops waiting for it).
  std::function<void()> on_initial_fetch_timeout;
  std::chrono::milliseconds initial_fetch_timeout{15000};  // 0 = wait forever
  // Delta, optional: calls `visit(name, version)` for every resource the owner holds, for the
  // initial_resource_versions of a new stream. When set, the client keeps no per-resource versions of its
  // own for this type (the owner has them: with 10,000s of clusters a second copy costs ~100 B each).
  // Names no longer subscribed (named types) are skipped by the client.
  using VersionVisitor = std::function<void(const std::string& name, const std::string& version)>;
  std::function<void(const VersionVisitor& visit)> known_versions;
};

// Counters per type URL, mapped by the owner to Envoy's names (cluster_manager.cds.*,
// listener_manager.lds.*).
struct TypeStats {
  uint64_t update_attempt = 0;
  uint64_t update_success = 0;
  uint64_t update_rejected = 0;
  uint64_t update_failure = 0;  // stream closed while subscribed
  uint64_t init_fetch_timeout = 0;
  std::string version_info;  // last accepted (SotW version_info / Delta system_version_info)
};

struct AdsStats {
  bool connected = false;                // control_plane.connected_state
  uint64_t rate_limit_enforced = 0;      // control_plane.rate_limit_enforced: requests that had to wait
  std::string control_plane_identifier;  // the last response's control_plane.identifier
  uint64_t streams_started = 0;
  uint64_t streams_closed = 0;
  std::map<std::string, TypeStats> types;
};

class AdsClientImpl;

// One ADS stream (SotW or Delta) carrying every subscribed type. All methods must be called on the owner's
// thread (the one the executor runs on); every callback runs there too.
class AdsClient {
 public:
  explicit AdsClient(AdsClientOptions options);
  // Cancels the stream and waits for gRPC to let go of it; callbacks already queued become no-ops.
  ~AdsClient();
  AdsClient(const AdsClient&) = delete;
  AdsClient& operator=(const AdsClient&) = delete;

  // Adds a subscription. Empty `names` on LDS/CDS means wildcard. Takes effect on the open stream at once
  // (or on the next one); requests go out in Envoy's type order on every (re)connect.
  void subscribe(const std::string& type_url, std::vector<std::string> names,
                 SubscriptionCallbacks callbacks);
  // Replaces the names of a named subscription: SotW sends the full list with the current version and nonce;
  // Delta sends the difference. Dropped names are unsubscribed and forgotten.
  void updateSubscription(const std::string& type_url, std::vector<std::string> names);
  // Opens the stream. Until then subscriptions are only recorded (so they go out in order on connect).
  void start();

  const AdsStats& stats() const;

 private:
  std::shared_ptr<AdsClientImpl> impl_;
};

// host:port of an ApiConfigSource's GrpcService: google_grpc.target_uri as is; envoy_grpc.cluster_name
// through `resolve_cluster` (the owner knows its static clusters). nullopt when neither yields a target.
std::optional<std::string> targetOf(
    const envoy::config::core::v3::GrpcService& service,
    const std::function<std::optional<std::string>(const std::string&)>& resolve_cluster);

}  // namespace skiff::xds
