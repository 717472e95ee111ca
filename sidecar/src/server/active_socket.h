// What happens to an accepted socket before it becomes a connection: listener filters (peeking without
// blocking the worker, bounded by listener_filters_timeout), the use_original_dst hand-off to the
// listener that owns the restored destination, filter chain selection, and the network filter.
#pragma once

#include <asio/ip/tcp.hpp>

#include "server/listener.h"
#include "server/worker_context.h"

namespace skiff::server {

// Takes an accepted socket of `listener` (one of `index`'s listeners, which outlive it).
void onAccepted(WorkerContext& worker, const ListenerIndex& index, const ListenerConfig& listener,
                asio::ip::tcp::socket socket);

// Hands a socket whose listener filters are done to the chain `info` selects on `listener`; closes it
// (counting no_filter_chain_match) when none matches.
void serveConnection(WorkerContext& worker, const ListenerConfig& listener, asio::ip::tcp::socket socket,
                     std::shared_ptr<network::ConnectionInfo> info);

}  // namespace skiff::server
