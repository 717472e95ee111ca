// Which codec serves a downstream HTTP connection: HCM codec_type, TLS ALPN, or (AUTO over plain TCP) the
// HTTP/2 client preface sniffed from the first bytes, as Envoy's AUTO codec does.
#pragma once

#include <memory>

#include "server/http/connection_manager_config.h"
#include "server/listener.h"
#include "server/worker_context.h"
#include "skiff/network/connection_info.h"
#include "skiff/network/transport.h"

namespace skiff::server {

enum class HttpCodecChoice { kHttp1, kHttp2, kSniff };

// kSniff: AUTO over plaintext with nothing known yet; the first bytes decide. ALPN "h2" (after TLS) or
// http_inspector's "h2c" pick HTTP/2; `http_inspected` (the listener runs http_inspector) without "h2c" means
// HTTP/1. An "Upgrade: h2c" request is HTTP/1.1 and stays so (the upgrade is ignored, as Envoy does).
// Caveat of sniffing: http.<prefix>.downstream_cx_total counts the connection once its first bytes arrived.
HttpCodecChoice selectHttpCodec(const ConnectionManagerConfig& hcm, const network::ConnectionInfo& info,
                                bool tls, bool http_inspected = false);

// The listener runs http_inspector (its verdict then settles plaintext AUTO connections).
bool runsHttpInspector(const ListenerConfig& listener);

// Starts the HTTP connection `hcm` serves on `transport` (HTTP/1.1 or HTTP/2, sniffing when needed).
void startHttpConnection(WorkerContext& worker, const ListenerConfig& listener,
                         ConnectionManagerConfigSharedPtr hcm, network::Transport transport,
                         network::ConnectionInfoConstSharedPtr info);

}  // namespace skiff::server
