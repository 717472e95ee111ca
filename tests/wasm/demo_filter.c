/* The documents' Wasm filter in C: the request header named by the plugin configuration is replaced by
 * "hello" or "world" (chosen at random), responses get x-proxy-wasm: my-wasm-filter, and it logs. */
#include "proxy_wasm.h"

static char header[256];
static size_t header_len;

EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t root, uint32_t size) {
  return 1;
}

EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root, uint32_t size) {
  header_len = 0;
  if (size == 0) return 1;
  const char* data = 0;
  size_t n = 0;
  if (proxy_get_buffer_bytes(kPluginConfiguration, 0, size, &data, &n) != kOk) return 0;
  if (n >= sizeof(header)) return 0;
  for (size_t i = 0; i < n; ++i) header[i] = data[i];
  header_len = n;
  char line[320];
  size_t pos = 0;
  append_str(line, &pos, "configured header: ");
  append(line, &pos, header, header_len);
  proxy_log(kInfo, line, pos);
  return 1;
}

EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t id, uint32_t parent) {}

EXPORT(proxy_on_request_headers) uint32_t proxy_on_request_headers(uint32_t id, uint32_t n, uint32_t eos) {
  if (header_len == 0) return 0;
  unsigned char coin = 0;
  wasi_random_get(&coin, 1);
  const char* value = (coin & 1) ? "world" : "hello";
  proxy_replace_header_map_value(kRequestHeaders, header, header_len, value, 5);
  char line[320];
  size_t pos = 0;
  append_str(line, &pos, "replaced header ");
  append(line, &pos, header, header_len);
  append_str(line, &pos, " with ");
  append_str(line, &pos, value);
  proxy_log(kInfo, line, pos);
  return 0;
}

EXPORT(proxy_on_response_headers) uint32_t proxy_on_response_headers(uint32_t id, uint32_t n, uint32_t eos) {
  proxy_add_header_map_value(kResponseHeaders, "x-proxy-wasm", 12, "my-wasm-filter", 14);
  return 0;
}

EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t id) {
  char line[64];
  size_t pos = 0;
  append_str(line, &pos, "stream ");
  append_u64(line, &pos, id);
  append_str(line, &pos, " done");
  proxy_log(kInfo, line, pos);
  return 1;
}
