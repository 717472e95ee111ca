/* A module that traps: in proxy_on_request_headers when the request has an x-trap header, and at start-up
 * or configuration when its configuration says so ("trap-configure", "reject-configure"). Otherwise it
 * adds x-trap-module: ok to responses, so a replaced VM is visible. */
#include "proxy_wasm.h"

EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root, uint32_t size) {
  const char* data = 0;
  size_t n = 0;
  if (size == 0 || proxy_get_buffer_bytes(kPluginConfiguration, 0, size, &data, &n) != kOk) return 1;
  if (str_eq(data, n, "trap-configure")) __builtin_trap();
  if (str_eq(data, n, "reject-configure")) return 0;
  return 1;
}

EXPORT(proxy_on_request_headers) uint32_t proxy_on_request_headers(uint32_t id, uint32_t n, uint32_t eos) {
  const char* v = 0;
  size_t len = 0;
  if (proxy_get_header_map_value(kRequestHeaders, "x-trap", 6, &v, &len) == kOk) __builtin_trap();
  return 0;
}

EXPORT(proxy_on_response_headers) uint32_t proxy_on_response_headers(uint32_t id, uint32_t n, uint32_t eos) {
  const char* v = 0;
  size_t len = 0;
  if (proxy_get_header_map_value(kResponseHeaders, "x-trap", 6, &v, &len) == kOk) __builtin_trap();
  proxy_add_header_map_value(kResponseHeaders, "x-trap-module", 13, "ok", 2);
  return 0;
}
