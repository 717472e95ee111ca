/* Start-up metrics: _initialize (a C++ module's global constructors) defines and bumps a counter before any
 * context exists; every request bumps it again and reports its value in x-init-metric. */
#include "proxy_wasm.h"

static uint32_t started_metric;
static uint32_t start_status = 99;

EXPORT(_initialize) void _initialize(void) {
  start_status = proxy_define_metric(0, "wasm_test.started", 17, &started_metric);
  if (start_status == kOk) start_status = proxy_increment_metric(started_metric, 1);
  uint64_t v = 0;
  if (start_status == kOk) start_status = proxy_get_metric(started_metric, &v);
  if (start_status == kOk && v == 0) start_status = 98; /* the counter is store-wide: >= 1 */
}

EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t id, uint32_t parent) {}

EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t root, uint32_t size) {
  return start_status == kOk;
}

EXPORT(proxy_on_request_headers) uint32_t proxy_on_request_headers(uint32_t id, uint32_t n, uint32_t eos) {
  proxy_increment_metric(started_metric, 1);
  uint64_t v = 0;
  proxy_get_metric(started_metric, &v);
  char value[24];
  size_t pos = 0;
  append_u64(value, &pos, v);
  proxy_add_header_map_value(kRequestHeaders, "x-init-metric", 13, value, pos);
  return 0;
}

EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t id) {
  return 1;
}
