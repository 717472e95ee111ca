// Every HTTP filter compiled into skiff, registered in one place (static registrars would be dropped by
// the linker from a static library).
#include "filters/http/ext_authz/ext_authz.h"
#include "filters/http/ext_proc/ext_proc_config.h"
#include "filters/http/lua/lua_filter.h"
#include "filters/http/router/router_filter.h"
#include "filters/http/wasm/wasm_filter.h"
#include "filters/istio/istio.h"
#include "filters/network/wasm/network_wasm.h"
#include "skiff/filters/http_filter_registry.h"

namespace skiff::filters {

void registerAllHttpFilters() {
  router::registerRouterFilter();
  lua::registerLuaFilter();
  wasm::registerWasmFilter();
  network::wasm::registerNetworkWasmFilter();  // the L4 Wasm filter (network filter registry)
  ext_proc::registerExtProcFilter();
  ext_authz::registerExtAuthzFilter();
  istio::registerIstioFilters();  // after wasm: wraps its registration for null-VM built-ins
}

}  // namespace skiff::filters
