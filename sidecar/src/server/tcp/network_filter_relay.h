// Network (L4) filters in front of an HTTP connection manager, as Envoy runs them: the connection's bytes
// go through the chain's network filters (onNewConnection, onDownstreamData for what the client sends,
// onUpstreamData in reverse order for what the HCM answers, onClose) on their way to and from the HCM,
// which serves the other end of a socketpair. Used only by chains with such filters (the Wasm network
// filter); other HTTP connections are untouched.
#pragma once

#include "server/filter_chain.h"
#include "server/listener.h"
#include "server/worker_context.h"
#include "skiff/network/connection_info.h"
#include "skiff/network/transport.h"

namespace skiff::server {

// Runs those of `chain.network_filters` that run before an HCM (FilterFactory::runsBeforeHcm) over
// `transport` and starts `chain.hcm` behind them; without any, just the HCM. On the worker.
void startFilteredHttpConnection(WorkerContext& worker, const ListenerConfig& listener,
                                 const FilterChainConfig& chain, network::Transport transport,
                                 network::ConnectionInfoConstSharedPtr info);

}  // namespace skiff::server
