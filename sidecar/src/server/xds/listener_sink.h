// Where LDS hands listeners (ListenerManager implements it). Main thread only.
#pragma once

#include <string>

#include "envoy/config/listener/v3/listener.pb.h"

namespace skiff::server {

class ListenerSink {
 public:
  virtual ~ListenerSink() = default;
  // Validates and adds, or replaces (drain the old one, Envoy's drain_type), the listener named
  // `listener.name()`. Returns "" or an error naming the field (the previous listener, if any, keeps
  // serving). Must not throw.
  virtual std::string addOrUpdateListener(const envoy::config::listener::v3::Listener& listener,
                                          const std::string& version) = 0;
  // Stops and drains the listener; false when no dynamic listener has that name.
  virtual bool removeListener(const std::string& name) = 0;
  // A route config arrived or its initial fetch timed out: listeners warming on it may go active.
  virtual void onRouteConfigsChanged() {}
  // True while the listener `name` waits for its route configs (not accepting yet).
  virtual bool isWarming(const std::string& /*name*/) const { return false; }
};

}  // namespace skiff::server
