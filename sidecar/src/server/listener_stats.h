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
        downstream_cx_active(store.gauge(prefix + "downstream_cx_active")),
        downstream_cx_length_ms(store.histogram(prefix + "downstream_cx_length_ms")) {}

  stats::Counter downstream_cx_total, downstream_cx_destroy, downstream_cx_overflow, no_filter_chain_match;
  stats::Gauge downstream_cx_active;
  stats::Histogram downstream_cx_length_ms;

  // Lives as long as one accepted connection.
  class ConnectionScope {
   public:
    explicit ConnectionScope(const ListenerStats& stats) : stats_(stats) {
      stats_.downstream_cx_total.inc();
      stats_.downstream_cx_active.inc();
    }
    ~ConnectionScope() {
      stats_.downstream_cx_active.dec();
      stats_.downstream_cx_destroy.inc();
      stats_.downstream_cx_length_ms.record(static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start_)
              .count()));
    }
    ConnectionScope(const ConnectionScope&) = delete;
    ConnectionScope& operator=(const ConnectionScope&) = delete;

   private:
    const ListenerStats& stats_;
    const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  };
};

}  // namespace skiff::server
