// Network (L4) filters in front of a terminal filter (tcp_proxy): they see the bytes of each direction, may
// rewrite or hold them, and may close the connection. Registered by type URL like the HTTP filters.
#pragma once

#include <google/protobuf/any.pb.h>

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "skiff/http/stream_info.h"

namespace asio {
class io_context;
}
namespace skiff::stats {
class Store;
}
namespace skiff::upstream {
class ThreadLocalClusterManager;
class ConnPoolMap;
}  // namespace skiff::upstream

namespace skiff::filters::network {

enum class FilterStatus { kContinue, kStop };

class Filter;

// What the connection offers its filters.
class FilterCallbacks {
 public:
  virtual ~FilterCallbacks() = default;
  virtual asio::io_context& dispatcher() = 0;
  virtual const http::StreamInfo& streamInfo() const = 0;
  // Closes both sides; safe to call from inside a filter callback (takes effect when it returns).
  virtual void closeConnection(std::string_view details) = 0;
  // Resumes the downstream (read) chain after `filter` stopped it (kStop from onNewConnection or
  // onDownstreamData): the bytes it held go on at once, through the filters after it, and the upstream
  // connect starts if it was waiting. Deferred past the current callback; ignored unless the chain is
  // stopped at `filter`.
  virtual void continueReading(Filter& filter) {}
  // The connection's StreamInfo for filters that keep per-connection state in it (Envoy's filter state:
  // Istio's TCP metadata exchange); nullptr where there is none.
  virtual http::StreamInfo* mutableStreamInfo() { return nullptr; }
  // Queues `bytes` for the downstream ahead of whatever is read from the upstream after this call (Envoy's
  // injectWriteDataToFilterChain); they do not pass through onUpstreamData. Ignored where unsupported.
  virtual void writeDownstream(std::string_view bytes) {}
  // The worker's clusters and connection pools, for callouts (nullptr: none here).
  virtual upstream::ThreadLocalClusterManager* clusterManager() { return nullptr; }
  virtual upstream::ConnPoolMap* connPools() { return nullptr; }
};

class Filter {
 public:
  virtual ~Filter() = default;
  virtual void setCallbacks(FilterCallbacks& callbacks) = 0;
  // The downstream connection was accepted (before the upstream is connected). kStop holds the filters
  // after this one and the upstream connect until continueReading(); bytes read meanwhile come to the
  // filters up to this one (as Envoy's onNewConnection StopIteration).
  virtual FilterStatus onNewConnection() { return FilterStatus::kContinue; }
  // Bytes read from downstream (on their way upstream) / from upstream; `data` may be rewritten. kStop
  // holds them: they come again, followed by what is read next, on the next call. Downstream bytes (and the
  // FIN) also go on, from the next filter, on continueReading(); held upstream bytes are passed on as they
  // are at end of stream (there is no continue for them, as in Envoy).
  virtual FilterStatus onDownstreamData(std::string& data, bool end_stream) {
    return FilterStatus::kContinue;
  }
  virtual FilterStatus onUpstreamData(std::string& data, bool end_stream) { return FilterStatus::kContinue; }
  // The connection ended (once). `details`: the termination details ("" when both sides closed normally).
  virtual void onClose(std::string_view details) {}
};

class FilterFactory {
 public:
  virtual ~FilterFactory() = default;
  // One per connection, on the worker; nullptr: nothing to run for this connection.
  virtual std::unique_ptr<Filter> createFilter() const = 0;
  // Also run in front of an http_connection_manager (the connection's bytes are relayed through it, see
  // server/tcp/network_filter_relay.h). Filters written for tcp_proxy only keep false: skipped there.
  virtual bool runsBeforeHcm() const { return false; }
};
using FilterFactorySharedPtr = std::shared_ptr<const FilterFactory>;

struct FilterRegistration {
  std::string name;      // e.g. "envoy.filters.network.wasm"
  std::string type_url;  // e.g. "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm"
  // Builds the factory once per filter chain (main thread). Throws std::invalid_argument naming the field
  // (relative to `path`); nullptr means the filter is not run here (skipped as before).
  std::function<FilterFactorySharedPtr(const google::protobuf::Any& config, stats::Store& stats,
                                       const std::string& path)>
      create;
};

void registerNetworkFilter(FilterRegistration registration);
// By type URL (preferred) or, without typed_config, by name.
const FilterRegistration* findNetworkFilter(std::string_view type_url, std::string_view name);

}  // namespace skiff::filters::network
