/* Host-function exerciser: t_* exports call one host function each with arguments the test chooses (the
 * test writes inputs into guest memory through proxy_on_memory_allocate) and leave results in `out`; the
 * proxy_on_* callbacks drive the filter tests through the x-action request header. */
#include "proxy_wasm.h"

static char out[65536];
static uint32_t out_len;
static uint32_t last_cas;
static uint32_t ticks;

EXPORT(t_out) uint32_t t_out(void) {
  return (uint32_t)(uintptr_t)out;
}
EXPORT(t_out_len) uint32_t t_out_len(void) {
  return out_len;
}
EXPORT(t_cas) uint32_t t_cas(void) {
  return last_cas;
}
EXPORT(t_ticks) uint32_t t_ticks(void) {
  return ticks;
}

static void set_out(const char* p, size_t n) {
  if (n > sizeof(out)) n = sizeof(out);
  for (size_t i = 0; i < n; ++i) out[i] = p[i];
  out_len = (uint32_t)n;
}
static void set_out_u64(uint64_t v) {
  set_out((const char*)&v, 8);
}

EXPORT(t_log) uint32_t t_log(uint32_t level, const char* p, uint32_t n) {
  return proxy_log(level, p, n);
}
EXPORT(t_log_level) uint32_t t_log_level(void) {
  uint32_t level = 99;
  uint32_t r = proxy_get_log_level(&level);
  set_out_u64(level);
  return r;
}
EXPORT(t_get_header) uint32_t t_get_header(uint32_t map, const char* k, uint32_t kn) {
  const char* v = 0;
  size_t n = 0;
  out_len = 0;
  uint32_t r = proxy_get_header_map_value(map, k, kn, &v, &n);
  if (r == kOk) set_out(v, n);
  return r;
}
/* The host's result pointers are given by the test (possibly out of bounds). */
EXPORT(t_get_header_raw)
uint32_t t_get_header_raw(uint32_t map, const char* k, uint32_t kn, uint32_t vp, uint32_t np) {
  return proxy_get_header_map_value(map, k, kn, (const char**)vp, (size_t*)np);
}
EXPORT(t_add_header)
uint32_t t_add_header(uint32_t map, const char* k, uint32_t kn, const char* v, uint32_t vn) {
  return proxy_add_header_map_value(map, k, kn, v, vn);
}
EXPORT(t_replace_header)
uint32_t t_replace_header(uint32_t map, const char* k, uint32_t kn, const char* v, uint32_t vn) {
  return proxy_replace_header_map_value(map, k, kn, v, vn);
}
EXPORT(t_remove_header) uint32_t t_remove_header(uint32_t map, const char* k, uint32_t kn) {
  return proxy_remove_header_map_value(map, k, kn);
}
EXPORT(t_get_pairs) uint32_t t_get_pairs(uint32_t map) {
  const char* p = 0;
  size_t n = 0;
  out_len = 0;
  uint32_t r = proxy_get_header_map_pairs(map, &p, &n);
  if (r == kOk) set_out(p, n);
  return r;
}
EXPORT(t_set_pairs) uint32_t t_set_pairs(uint32_t map, const char* p, uint32_t n) {
  return proxy_set_header_map_pairs(map, p, n);
}
EXPORT(t_map_size) uint32_t t_map_size(uint32_t map) {
  uint32_t size = 0;
  uint32_t r = proxy_get_header_map_size(map, &size);
  set_out_u64(size);
  return r;
}
EXPORT(t_buffer_status) uint32_t t_buffer_status(uint32_t type) {
  size_t size = 0;
  uint32_t flags = 7;
  uint32_t r = proxy_get_buffer_status(type, &size, &flags);
  set_out_u64(((uint64_t)flags << 32) | size);
  return r;
}
EXPORT(t_get_buffer) uint32_t t_get_buffer(uint32_t type, uint32_t start, uint32_t len) {
  const char* p = (const char*)1;
  size_t n = 12345;
  out_len = 0;
  uint32_t r = proxy_get_buffer_bytes(type, start, len, &p, &n);
  if (r == kOk && n != 12345) set_out(p, n);
  if (r == kOk && n == 12345) set_out("untouched", 9);
  return r;
}
EXPORT(t_set_buffer)
uint32_t t_set_buffer(uint32_t type, uint32_t start, uint32_t len, const char* p, uint32_t n) {
  return proxy_set_buffer_bytes(type, start, len, p, n);
}
EXPORT(t_get_property) uint32_t t_get_property(const char* p, uint32_t n) {
  const char* v = 0;
  size_t vn = 0;
  out_len = 0;
  uint32_t r = proxy_get_property(p, n, &v, &vn);
  if (r == kOk) set_out(v, vn);
  return r;
}
EXPORT(t_set_property) uint32_t t_set_property(const char* p, uint32_t n, const char* v, uint32_t vn) {
  return proxy_set_property(p, n, v, vn);
}
EXPORT(t_shared_get) uint32_t t_shared_get(const char* k, uint32_t kn) {
  const char* v = 0;
  size_t vn = 0;
  out_len = 0;
  uint32_t r = proxy_get_shared_data(k, kn, &v, &vn, &last_cas);
  if (r == kOk) set_out(v, vn);
  return r;
}
EXPORT(t_shared_set)
uint32_t t_shared_set(const char* k, uint32_t kn, const char* v, uint32_t vn, uint32_t cas) {
  return proxy_set_shared_data(k, kn, v, vn, cas);
}
EXPORT(t_define_metric) uint32_t t_define_metric(uint32_t type, const char* p, uint32_t n) {
  uint32_t id = 0xffffffff;
  uint32_t r = proxy_define_metric(type, p, n, &id);
  set_out_u64(id);
  return r;
}
EXPORT(t_increment) uint32_t t_increment(uint32_t id, int32_t offset) {
  return proxy_increment_metric(id, offset);
}
EXPORT(t_record) uint32_t t_record(uint32_t id, uint32_t value) {
  return proxy_record_metric(id, value);
}
EXPORT(t_get_metric) uint32_t t_get_metric(uint32_t id) {
  uint64_t v = 0;
  uint32_t r = proxy_get_metric(id, &v);
  set_out_u64(v);
  return r;
}
EXPORT(t_get_metric_raw) uint32_t t_get_metric_raw(uint32_t id, uint32_t ptr) {
  return proxy_get_metric(id, (uint64_t*)ptr);
}
EXPORT(t_send_local) uint32_t t_send_local(uint32_t status) {
  /* one header: x-local: 1 */
  static const char pairs[] =
      "\x01\x00\x00\x00\x07\x00\x00\x00\x01\x00\x00\x00x-local\0"
      "1\0";
  return proxy_send_local_response(status, "denied by wasm", 14, "denied", 6, pairs, sizeof(pairs) - 1, -1);
}
EXPORT(t_continue) uint32_t t_continue(uint32_t type) {
  return proxy_continue_stream(type);
}
EXPORT(t_close) uint32_t t_close(uint32_t type) {
  return proxy_close_stream(type);
}
EXPORT(t_fd_write) uint32_t t_fd_write(uint32_t fd, const char* p, uint32_t n) {
  uint32_t iov[2] = {(uint32_t)(uintptr_t)p, n};
  size_t written = 0;
  uint32_t r = wasi_fd_write(fd, iov, 1, &written);
  set_out_u64(written);
  return r;
}
EXPORT(t_fd_write_raw) uint32_t t_fd_write_raw(uint32_t fd, uint32_t iovs, uint32_t count) {
  size_t written = 0;
  return wasi_fd_write(fd, (const void*)iovs, count, &written);
}
EXPORT(t_clock) uint32_t t_clock(uint32_t id) {
  uint64_t t = 0;
  uint32_t r = wasi_clock_time_get(id, 1, &t);
  set_out_u64(t);
  return r;
}
EXPORT(t_random) uint32_t t_random(uint32_t len) {
  out_len = 0;
  uint32_t r = wasi_random_get(out, len);
  if (r == 0) out_len = len;
  return r;
}
EXPORT(t_random_raw) uint32_t t_random_raw(uint32_t ptr, uint32_t len) {
  return wasi_random_get((void*)ptr, len);
}
EXPORT(t_environ) uint32_t t_environ(void) {
  size_t count = 0, size = 0;
  uint32_t r = wasi_environ_sizes_get(&count, &size);
  if (r != 0 || count > 16 || size > 4096) return 99;
  char* ptrs[16];
  static char buf[4096];
  r = wasi_environ_get(ptrs, buf);
  size_t pos = 0;
  for (size_t i = 0; i < count; ++i) {
    append_str(out, &pos, ptrs[i]);
    out[pos++] = ';';
  }
  out_len = (uint32_t)pos;
  return r;
}
EXPORT(t_tick) uint32_t t_tick(uint32_t ms) {
  return proxy_set_tick_period_milliseconds(ms);
}

EXPORT(proxy_on_tick) void proxy_on_tick(uint32_t root) {
  ++ticks;
}

EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root, uint32_t size) {
  const char* data = 0;
  size_t n = 0;
  if (size != 0 && proxy_get_buffer_bytes(kPluginConfiguration, 0, size, &data, &n) == kOk) {
    if (str_eq(data, n, "tick")) proxy_set_tick_period_milliseconds(10);
  }
  return 1;
}

static int action_is(const char* want) {
  const char* v = 0;
  size_t n = 0;
  if (proxy_get_header_map_value(kRequestHeaders, "x-action", 8, &v, &n) != kOk) return 0;
  return str_eq(v, n, want);
}

static uint32_t body_action;

EXPORT(proxy_on_request_headers) uint32_t proxy_on_request_headers(uint32_t id, uint32_t n, uint32_t eos) {
  body_action = 0;
  if (action_is("local")) {
    t_send_local(403);
    return 0; /* the host stops the stream anyway */
  }
  if (action_is("stop")) return 1;
  if (action_is("body")) body_action = 1;
  if (action_is("close")) {
    proxy_close_stream(0);
    return 0;
  }
  char line[32];
  size_t pos = 0;
  append_u64(line, &pos, n);
  proxy_add_header_map_value(kRequestHeaders, "x-exerciser", 11, line, pos);
  return 0;
}

/* body action: hold the body until its end, then prefix it with "wasm:" and resume. */
EXPORT(proxy_on_request_body) uint32_t proxy_on_request_body(uint32_t id, uint32_t size, uint32_t eos) {
  if (!body_action) return 0;
  if (!eos) return 1;
  proxy_set_buffer_bytes(kRequestBody, 0, 0, "wasm:", 5);
  return 0;
}

EXPORT(proxy_on_response_headers) uint32_t proxy_on_response_headers(uint32_t id, uint32_t n, uint32_t eos) {
  const char* v = 0;
  size_t vn = 0;
  if (proxy_get_property("response\0code", 13, &v, &vn) == kOk && vn == 8) {
    uint64_t code;
    char* c = (char*)&code;
    for (int i = 0; i < 8; ++i) c[i] = v[i];
    char line[32];
    size_t pos = 0;
    append_u64(line, &pos, code);
    proxy_add_header_map_value(kResponseHeaders, "x-response-code", 15, line, pos);
  }
  return 0;
}
