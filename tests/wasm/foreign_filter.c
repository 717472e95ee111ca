/* proxy_call_foreign_function from a guest: t_* exports call it with the test's arguments (results in
 * `out`); as an HTTP filter, a request with `x-reroute: <path>` gets its :path replaced and calls
 * clear_route_cache (`x-rewrite-only: <path>`: replaced without it), and every request gets
 * `x-foreign: ok` when compress + uncompress gave its text back (else `bad`). */
#include "proxy_wasm.h"

IMPORT(proxy_call_foreign_function)
uint32_t proxy_call_foreign_function(const char* name, size_t name_size, const char* args, size_t args_size,
                                     const char** results, size_t* results_size);

static char out[65536];
static uint32_t out_len;

EXPORT(t_out) uint32_t t_out(void) {
  return (uint32_t)(uintptr_t)out;
}
EXPORT(t_out_len) uint32_t t_out_len(void) {
  return out_len;
}

EXPORT(t_foreign) uint32_t t_foreign(const char* name, uint32_t nn, const char* args, uint32_t an) {
  const char* res = 0;
  size_t size = 12345;
  out_len = 0;
  uint32_t r = proxy_call_foreign_function(name, nn, args, an, &res, &size);
  if (r == kOk) {
    if (size > sizeof(out)) size = sizeof(out);
    for (size_t i = 0; i < size; ++i) out[i] = res[i];
    out_len = (uint32_t)size;
  }
  return r;
}
/* Result pointers chosen by the test (0, or out of bounds). */
EXPORT(t_foreign_raw)
uint32_t t_foreign_raw(const char* name, uint32_t nn, const char* args, uint32_t an, uint32_t rp,
                       uint32_t sp) {
  return proxy_call_foreign_function(name, nn, args, an, (const char**)rp, (size_t*)sp);
}
EXPORT(t_set_property)
uint32_t t_set_property(const char* p, uint32_t pn, const char* v, uint32_t vn) {
  return proxy_set_property(p, pn, v, vn);
}
EXPORT(t_get_property) uint32_t t_get_property(const char* p, uint32_t pn) {
  const char* v = 0;
  size_t n = 0;
  out_len = 0;
  uint32_t r = proxy_get_property(p, pn, &v, &n);
  if (r == kOk) {
    for (size_t i = 0; i < n && i < sizeof(out); ++i) out[i] = v[i];
    out_len = (uint32_t)n;
  }
  return r;
}

EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t root, uint32_t size) {
  return 1;
}
EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root, uint32_t size) {
  return 1;
}
EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t id, uint32_t parent) {}

static const char kText[] = "proxy-wasm foreign functions, proxy-wasm foreign functions, proxy-wasm";

static int round_trip(void) {
  const char* packed = 0;
  size_t packed_n = 0;
  if (proxy_call_foreign_function("compress", 8, kText, sizeof(kText) - 1, &packed, &packed_n) != kOk)
    return 0;
  const char* plain = 0;
  size_t plain_n = 0;
  if (proxy_call_foreign_function("uncompress", 10, packed, packed_n, &plain, &plain_n) != kOk) return 0;
  return plain_n == sizeof(kText) - 1 && str_eq(plain, plain_n, kText);
}

EXPORT(proxy_on_request_headers)
uint32_t proxy_on_request_headers(uint32_t id, uint32_t headers, uint32_t end_of_stream) {
  const char* ok = round_trip() ? "ok" : "bad";
  proxy_add_header_map_value(kRequestHeaders, "x-foreign", 9, ok, str_len(ok));
  const char* to = 0;
  size_t to_n = 0;
  if (proxy_get_header_map_value(kRequestHeaders, "x-reroute", 9, &to, &to_n) == kOk) {
    proxy_replace_header_map_value(kRequestHeaders, ":path", 5, to, to_n);
    proxy_call_foreign_function("clear_route_cache", 17, "", 0, 0, 0);
  } else if (proxy_get_header_map_value(kRequestHeaders, "x-rewrite-only", 14, &to, &to_n) == kOk) {
    proxy_replace_header_map_value(kRequestHeaders, ":path", 5, to, to_n); /* the route stays */
  }
  return 0;
}
