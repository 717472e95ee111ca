/* A filter stuck in a loop: requests with x-loop: 1 spin forever in proxy_on_request_headers (the
 * execution-time limit must stop them); others pass with x-loop-filter: ok on the response. */
#include "proxy_wasm.h"

EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t root, uint32_t size) {
  return 1;
}
EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t id, uint32_t parent) {}

static volatile uint32_t sink;

EXPORT(proxy_on_request_headers) uint32_t proxy_on_request_headers(uint32_t id, uint32_t n, uint32_t eos) {
  const char* v = 0;
  size_t len = 0;
  if (proxy_get_header_map_value(kRequestHeaders, "x-loop", 6, &v, &len) == kOk && str_eq(v, len, "1")) {
    for (;;) sink = sink + 1;
  }
  return 0;
}

EXPORT(proxy_on_response_headers) uint32_t proxy_on_response_headers(uint32_t id, uint32_t n, uint32_t eos) {
  proxy_add_header_map_value(kResponseHeaders, "x-loop-filter", 13, "ok", 2);
  return 0;
}
