// Listener filters: what runs on an accepted socket before a filter chain is chosen. Filters are
// immutable config objects shared by every worker; per-connection state lives in ConnectionInfo and in
// the peeked bytes, which are handed to the filter again from the first byte each time more arrive.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "envoy/config/listener/v3/listener_components.pb.h"
#include "skiff/network/connection_info.h"
#include "skiff/stats/stats.h"

namespace skiff::server {

enum class ListenerFilterStatus {
  kContinue,  // done; run the next filter
  kNeedData,  // peek more bytes and call onData() again
  kClose,     // close the connection (counted as downstream_listener_filter_error)
};

class ListenerFilter {
 public:
  virtual ~ListenerFilter() = default;
  // The filter's turn has come. `fd` is the accepted socket (getsockopt only, never read).
  virtual ListenerFilterStatus onAccept(int fd, network::ConnectionInfo& info) const = 0;
  // After onAccept() returned kNeedData: every byte peeked so far; `end_stream` when no more will come
  // (the peer half-closed), so the filter must decide.
  virtual ListenerFilterStatus onData(std::string_view data, bool end_stream,
                                      network::ConnectionInfo& info) const {
    (void)data;
    (void)end_stream;
    (void)info;
    return ListenerFilterStatus::kContinue;
  }
  // Upper bound of the bytes onData() may want.
  virtual size_t maxReadBytes() const { return 0; }
};
using ListenerFilterConstSharedPtr = std::shared_ptr<const ListenerFilter>;

// ListenerFilterChainMatchPredicate (`filter_disabled`), evaluated on the (restored) local address.
class ListenerFilterPredicate {
 public:
  // Throws std::invalid_argument naming `path`.
  ListenerFilterPredicate(const envoy::config::listener::v3::ListenerFilterChainMatchPredicate& proto,
                          const std::string& path);
  bool matches(const network::ConnectionInfo& info) const;

 private:
  enum class Kind { kAny, kOr, kAnd, kNot, kPortRange };
  Kind kind_ = Kind::kAny;
  int32_t start_ = 0, end_ = 0;  // [start, end)
  std::vector<ListenerFilterPredicate> children_;
};

struct ListenerFilterEntry {
  std::string name;
  ListenerFilterConstSharedPtr filter;
  std::optional<ListenerFilterPredicate> disabled;  // filter_disabled: skip when it matches
};

// Builds one listener filter from its config. Unknown types throw std::invalid_argument naming `path`.
// `transparent`: the listener's socket is IP_TRANSPARENT (original_dst then trusts the local address).
ListenerFilterEntry buildListenerFilter(const envoy::config::listener::v3::ListenerFilter& proto,
                                        const std::string& path, stats::Store& store, bool transparent);

// Tells the config validator which listener filters exist, and which network filters the filter chain
// builder accepts besides the terminal ones (Istio's telemetry filters, skipped; RBAC, failing closed).
// Idempotent; call before loading a config.
void registerListenerExtensions();

// The original_dst filter on its own (use_original_dst adds one implicitly, as Envoy does).
ListenerFilterConstSharedPtr makeOriginalDstFilter(bool transparent);

}  // namespace skiff::server
