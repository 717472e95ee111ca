/* A network (L4) filter for tcp_proxy: downstream bytes are rewritten (lower-case letters upper-cased, and
 * every 'x' doubled: the data grows), upstream bytes get '!' turned into '?'. "trap" in the downstream data
 * traps, "close" closes the connection, "hold" holds the bytes until more arrive. Counters: tcp_connections,
 * tcp_downstream_bytes, tcp_upstream_bytes, tcp_downstream_closes, tcp_upstream_closes. */
#include "proxy_wasm.h"

enum { kDownstreamData = 2, kUpstreamData = 3, kStreamDownstream = 2 };

static uint32_t m_connections, m_down_bytes, m_up_bytes, m_down_closes, m_up_closes;

EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t root, uint32_t size) {
  proxy_define_metric(0, "tcp_connections", 15, &m_connections);
  proxy_define_metric(0, "tcp_downstream_bytes", 20, &m_down_bytes);
  proxy_define_metric(0, "tcp_upstream_bytes", 18, &m_up_bytes);
  proxy_define_metric(0, "tcp_downstream_closes", 21, &m_down_closes);
  proxy_define_metric(0, "tcp_upstream_closes", 19, &m_up_closes);
  return 1;
}

EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t id, uint32_t parent) {}

EXPORT(proxy_on_new_connection) uint32_t proxy_on_new_connection(uint32_t id) {
  proxy_increment_metric(m_connections, 1);
  return 0;
}

static int contains(const char* data, size_t n, const char* word) {
  size_t w = str_len(word);
  for (size_t i = 0; i + w <= n; ++i) {
    size_t k = 0;
    while (k < w && data[i + k] == word[k]) ++k;
    if (k == w) return 1;
  }
  return 0;
}

EXPORT(proxy_on_downstream_data) uint32_t proxy_on_downstream_data(uint32_t id, uint32_t size, uint32_t eos) {
  if (size == 0) return 0;
  const char* data = 0;
  size_t n = 0;
  if (proxy_get_buffer_bytes(kDownstreamData, 0, size, &data, &n) != kOk) return 0;
  if (contains(data, n, "trap")) __builtin_trap();
  if (contains(data, n, "close")) {
    proxy_close_stream(kStreamDownstream);
    return 1;
  }
  if (contains(data, n, "hold") && !contains(data, n, "\n")) return 1; /* wait for the end of the line */
  char* out = proxy_on_memory_allocate(2 * n);
  size_t m = 0;
  for (size_t i = 0; i < n; ++i) {
    char c = data[i];
    if (c == 'x') {
      out[m++] = 'x';
      out[m++] = 'x';
    } else {
      out[m++] = (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
    }
  }
  proxy_set_buffer_bytes(kDownstreamData, 0, n, out, m);
  proxy_increment_metric(m_down_bytes, (int64_t)n);
  return 0;
}

EXPORT(proxy_on_upstream_data) uint32_t proxy_on_upstream_data(uint32_t id, uint32_t size, uint32_t eos) {
  if (size == 0) return 0;
  const char* data = 0;
  size_t n = 0;
  if (proxy_get_buffer_bytes(kUpstreamData, 0, size, &data, &n) != kOk) return 0;
  char* out = proxy_on_memory_allocate(n);
  for (size_t i = 0; i < n; ++i) out[i] = data[i] == '!' ? '?' : data[i];
  proxy_set_buffer_bytes(kUpstreamData, 0, n, out, n);
  proxy_increment_metric(m_up_bytes, (int64_t)n);
  return 0;
}

EXPORT(proxy_on_downstream_connection_close)
void proxy_on_downstream_connection_close(uint32_t id, uint32_t peer) {
  proxy_increment_metric(m_down_closes, 1);
}

EXPORT(proxy_on_upstream_connection_close)
void proxy_on_upstream_connection_close(uint32_t id, uint32_t peer) {
  proxy_increment_metric(m_up_closes, 1);
}

EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t id) {
  return 1;
}
