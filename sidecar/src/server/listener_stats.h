// listener.<address>.* stats, and the per-connection scope that keeps downstream_cx_active honest.
#pragma once

#include <chrono>
#include <string>

#include "skiff/stats/stats.h"

namespace skiff::server {

struct ListenerStats {
  ListenerStats(stats::Store& store, const std::string& prefix)
      : downstream_cx_total(store.counter(prefix + "downstream_cx_total")),
        downstream_cx_destroy(store.counter(prefix + "downstream_cx_destroy")),
        downstream_cx_overflow(store.counter(prefix + "downstream_cx_overflow")),
        no_filter_chain_match(store.counter(prefix + "no_filter_chain_match")),
        downstream_pre_cx_timeout(store.counter(prefix + "downstream_pre_cx_timeout")),
        downstream_listener_filter_error(store.counter(prefix + "downstream_listener_filter_error")),
        downstream_listener_filter_remote_close(
            store.counter(prefix + "downstream_listener_filter_remote_close")),
        downstream_cx_active(store.gauge(prefix + "downstream_cx_active")),
        downstream_pre_cx_active(store.gauge(prefix + "downstream_pre_cx_active")),
        downstream_cx_length_ms(store.histogram(prefix + "downstream_cx_length_ms")) {}

  stats::Counter downstream_cx_total, downstream_cx_destroy, downstream_cx_overflow, no_filter_chain_match;
  // Listener filters (before a connection exists).
  stats::Counter downstream_pre_cx_timeout, downstream_listener_filter_error,
      downstream_listener_filter_remote_close;
  stats::Gauge downstream_cx_active;
  stats::Gauge downstream_pre_cx_active;
  stats::Histogram downstream_cx_length_ms;

  // Lives as long as one accepted connection. Holds its own copy of the (cheap) stat handles, so a
  // connection may outlive the listener that accepted it (LDS removal, shutdown).
  class ConnectionScope {
   public:
    explicit ConnectionScope(const ListenerStats& stats)
        : active_(stats.downstream_cx_active),
          destroy_(stats.downstream_cx_destroy),
          length_ms_(stats.downstream_cx_length_ms) {
      stats.downstream_cx_total.inc();
      active_.inc();
    }
    ~ConnectionScope() {
      active_.dec();
      destroy_.inc();
      length_ms_.record(static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start_)
              .count()));
    }
    ConnectionScope(const ConnectionScope&) = delete;
    ConnectionScope& operator=(const ConnectionScope&) = delete;

   private:
    const stats::Gauge active_;
    const stats::Counter destroy_;
    const stats::Histogram length_ms_;
    const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  };
};

}  // namespace skiff::server
