// The CalloutSender that sends a Wasm VM's proxy_http_call / proxy_grpc_* on a worker: shared by the HTTP
// filter and the network filter (filters/network/wasm).
#pragma once

#include <memory>

#include "filters/http/common/http_callout.h"
#include "wasm/plugin.h"

namespace skiff::filters::wasm {

// Calls go out on `target`'s loop, clusters and pools (which outlive the VM on that worker).
std::unique_ptr<skiff::wasm::CalloutSender> makeCalloutSender(const CalloutTarget& target);

}  // namespace skiff::filters::wasm
