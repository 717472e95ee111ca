// The per-stream logic the HTTP/1 and HTTP/2 downstream connections share: the stream's callbacks (route
// cache, worker resources, local replies), its setup from the connection, the response decoration both
// codecs apply, its timeouts and its end (stats, access log). The codec-specific parts (framing, reset,
// back-pressure) stay in each connection's ActiveStream, which derives from this.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "server/http/connection_manager_config.h"
#include "server/http/filter_manager.h"
#include "server/worker_context.h"
#include "skiff/http/stream_info.h"
#include "skiff/network/connection_info.h"

namespace skiff::server {

// What a stream learns from its downstream connection; all of it outlives the stream.
struct StreamOrigin {
  uint64_t connection_id;
  const network::ConnectionInfoConstSharedPtr& info;  // never null
  const std::string& local_address;
  const std::string& remote_address;
};

class ActiveStreamBase : public http::StreamCallbacks {
 public:
  // `sink` receives the response leaving the filter chain; it may be the derived stream itself (then list
  // FilterManagerSink before ActiveStreamBase among its bases, so it is constructed first).
  ActiveStreamBase(WorkerContext& worker, const ConnectionManagerConfig& config, FilterManagerSink& sink,
                   uint64_t id);

  // http::StreamCallbacks (resetStream is the codec's).
  http::StreamInfo& streamInfo() override { return info_; }
  const router::RouteEntry* route() override;
  void clearRouteCache() override { route_cached_ = false; }
  asio::io_context& dispatcher() override { return worker_.io; }
  upstream::ThreadLocalClusterManager& clusterManager() override { return worker_.clusters; }
  upstream::ConnPoolMap& connPools() override { return worker_.pools; }
  uint64_t streamId() const override { return id_; }
  void sendLocalReply(uint32_t status, std::string_view body, std::string_view details,
                      const std::function<void(http::HeaderMap&)>& modify) override;

  // A timeout's local reply: 408, or Envoy's gRPC form (trailers-only, grpc-status) for a gRPC request.
  void sendTimeoutReply(std::string_view body, std::string_view details);

  // Fills the stream info from the connection, applies the HCM's request header handling (forwarding
  // headers, x-forwarded-client-cert) to `headers` and builds the filter chain. The codec then sets its
  // back-pressure hooks and hands the headers to fm_.decodeHeaders().
  void begin(const StreamOrigin& origin, std::string_view protocol, http::HeaderMap& headers);

  // What both codecs do to response headers leaving the chain: the status into the stream info, the
  // server header, x-request-id when configured. Returns the status (500 when missing).
  uint32_t decorateResponseHeaders(http::HeaderMap& headers);

  // The stream's idle timeout and max duration: the route's, else the HCM's (0: none).
  std::chrono::milliseconds idleTimeout() const;
  std::chrono::milliseconds maxStreamDuration() const;

  // The end of the stream: stats (completed and the response code when `completed`, else neither), the
  // filters' onDestroy, the access log. Flags and codec-specific stats are the caller's, before this.
  void finish(bool completed);

  WorkerContext& worker_;
  const ConnectionManagerConfig& config_;
  const uint64_t id_;
  // Declared before fm_ so the filters (which may hold route entries) go first.
  std::shared_ptr<const router::RouteTable> route_table_;
  http::StreamInfo info_;
  FilterManager fm_;
  const router::RouteEntry* route_ = nullptr;
  bool route_cached_ = false;
  // The last resolved route's timeouts (see route()).
  std::optional<std::chrono::milliseconds> route_idle_timeout_;
  std::optional<std::chrono::milliseconds> route_max_stream_duration_;
  bool request_complete_ = false;
  bool head_request_ = false;
};

}  // namespace skiff::server
