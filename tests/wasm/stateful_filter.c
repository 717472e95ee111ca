/* The stateful variant of the documents' filter: the header named by the configuration gets "hello" or
 * "world", skipping values evicted in shared data (key eviction:<value> = Unix time in ns until which it is
 * skipped, visible to every worker's VM); a 4xx answer evicts the value it was sent with for a minute and
 * counts it in the wasm_demo_evictions counter. */
#include "proxy_wasm.h"

static const char* const kValues[2] = {"hello", "world"};
static char header[256];
static size_t header_len;
static uint32_t evictions_metric;
static uint8_t chosen[1024]; /* per context id (mod 1024): index + 1 of the value sent, 0 = none */

static uint64_t now_ns(void) {
  uint64_t t = 0;
  wasi_clock_time_get(0, 1, &t);
  return t;
}

static size_t eviction_key(char* buf, uint32_t index) {
  size_t pos = 0;
  append_str(buf, &pos, "eviction:");
  append_str(buf, &pos, kValues[index]);
  return pos;
}

static int evicted(uint32_t index, uint64_t now) {
  char key[32];
  size_t n = eviction_key(key, index);
  const char* v = 0;
  size_t vn = 0;
  uint32_t cas = 0;
  if (proxy_get_shared_data(key, n, &v, &vn, &cas) != kOk || vn != 8) return 0;
  uint64_t until;
  char* u = (char*)&until;
  for (int i = 0; i < 8; ++i) u[i] = v[i];
  return until > now;
}

static void evict(uint32_t index, uint64_t until) {
  char key[32];
  size_t n = eviction_key(key, index);
  for (int attempt = 0; attempt < 8; ++attempt) { /* read-modify-write with cas */
    const char* v = 0;
    size_t vn = 0;
    uint32_t cas = 0;
    proxy_get_shared_data(key, n, &v, &vn, &cas);
    if (proxy_set_shared_data(key, n, (const char*)&until, 8, cas) != kCasMismatch) return;
  }
}

EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root, uint32_t size) {
  const char* data = 0;
  size_t n = 0;
  header_len = 0;
  if (size != 0 && proxy_get_buffer_bytes(kPluginConfiguration, 0, size, &data, &n) == kOk &&
      n < sizeof(header)) {
    for (size_t i = 0; i < n; ++i) header[i] = data[i];
    header_len = n;
  }
  return proxy_define_metric(0, "wasm_demo_evictions", 19, &evictions_metric) == kOk;
}

EXPORT(proxy_on_request_headers) uint32_t proxy_on_request_headers(uint32_t id, uint32_t n, uint32_t eos) {
  chosen[id % 1024] = 0;
  if (header_len == 0) return 0;
  const uint64_t now = now_ns();
  uint32_t candidates[2];
  uint32_t count = 0;
  for (uint32_t i = 0; i < 2; ++i)
    if (!evicted(i, now)) candidates[count++] = i;
  if (count == 0) {
    log_str(kWarn, "every value is evicted; header left as is");
    return 0;
  }
  unsigned char coin = 0;
  wasi_random_get(&coin, 1);
  const uint32_t index = candidates[coin % count];
  chosen[id % 1024] = (uint8_t)(index + 1);
  proxy_replace_header_map_value(kRequestHeaders, header, header_len, kValues[index], 5);
  return 0;
}

EXPORT(proxy_on_response_headers) uint32_t proxy_on_response_headers(uint32_t id, uint32_t n, uint32_t eos) {
  proxy_add_header_map_value(kResponseHeaders, "x-proxy-wasm", 12, "my-wasm-filter", 14);
  const uint32_t index = chosen[id % 1024];
  if (index == 0) return 0;
  const char* v = 0;
  size_t vn = 0;
  uint64_t code = 0;
  if (proxy_get_property("response\0code", 13, &v, &vn) != kOk || vn != 8) return 0;
  char* c = (char*)&code;
  for (int i = 0; i < 8; ++i) c[i] = v[i];
  if (code >= 400 && code < 500) {
    evict(index - 1, now_ns() + 60ull * 1000000000ull);
    proxy_increment_metric(evictions_metric, 1);
    char line[64];
    size_t pos = 0;
    append_str(line, &pos, "evicted ");
    append_str(line, &pos, kValues[index - 1]);
    append_str(line, &pos, " for a minute");
    proxy_log(kInfo, line, pos);
  }
  return 0;
}
