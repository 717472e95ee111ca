/* Minimal freestanding proxy-wasm guest support for the test modules: the host imports, a bump allocator
 * exported as proxy_on_memory_allocate, and small string helpers. No libc. */
#ifndef SKIFF_TESTS_WASM_PROXY_WASM_H_
#define SKIFF_TESTS_WASM_PROXY_WASM_H_

#include <stddef.h>
#include <stdint.h>

#define IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
#define WASI(name) __attribute__((import_module("wasi_snapshot_preview1"), import_name(#name)))
#define EXPORT(name) __attribute__((export_name(#name)))

enum { kOk = 0, kNotFound = 1, kBadArgument = 2, kInvalidMemoryAccess = 6, kEmpty = 7, kCasMismatch = 8 };
enum { kHttpCallResponseHeaders = 6, kHttpCallResponseTrailers = 7, kHttpCallResponseBody = 4 };
enum { kRequestHeaders = 0, kRequestTrailers = 1, kResponseHeaders = 2, kResponseTrailers = 3 };
enum { kRequestBody = 0, kResponseBody = 1, kVmConfiguration = 6, kPluginConfiguration = 7 };
enum { kTrace = 0, kDebug = 1, kInfo = 2, kWarn = 3, kError = 4, kCritical = 5 };

IMPORT(proxy_log) uint32_t proxy_log(uint32_t level, const char* msg, size_t size);
IMPORT(proxy_get_log_level) uint32_t proxy_get_log_level(uint32_t* level);
IMPORT(proxy_get_current_time_nanoseconds) uint32_t proxy_get_current_time_nanoseconds(uint64_t* ns);
IMPORT(proxy_set_tick_period_milliseconds) uint32_t proxy_set_tick_period_milliseconds(uint32_t ms);
IMPORT(proxy_get_property)
uint32_t proxy_get_property(const char* path, size_t size, const char** value, size_t* value_size);
IMPORT(proxy_set_property)
uint32_t proxy_set_property(const char* path, size_t size, const char* value, size_t value_size);
IMPORT(proxy_get_header_map_value)
uint32_t proxy_get_header_map_value(uint32_t map, const char* key, size_t key_size, const char** value,
                                    size_t* value_size);
IMPORT(proxy_add_header_map_value)
uint32_t proxy_add_header_map_value(uint32_t map, const char* key, size_t key_size, const char* value,
                                    size_t value_size);
IMPORT(proxy_replace_header_map_value)
uint32_t proxy_replace_header_map_value(uint32_t map, const char* key, size_t key_size, const char* value,
                                        size_t value_size);
IMPORT(proxy_remove_header_map_value)
uint32_t proxy_remove_header_map_value(uint32_t map, const char* key, size_t key_size);
IMPORT(proxy_get_header_map_pairs)
uint32_t proxy_get_header_map_pairs(uint32_t map, const char** data, size_t* size);
IMPORT(proxy_set_header_map_pairs)
uint32_t proxy_set_header_map_pairs(uint32_t map, const char* data, size_t size);
IMPORT(proxy_get_header_map_size) uint32_t proxy_get_header_map_size(uint32_t map, uint32_t* size);
IMPORT(proxy_get_buffer_status)
uint32_t proxy_get_buffer_status(uint32_t type, size_t* size, uint32_t* flags);
IMPORT(proxy_get_buffer_bytes)
uint32_t proxy_get_buffer_bytes(uint32_t type, uint32_t start, uint32_t length, const char** data,
                                size_t* size);
IMPORT(proxy_set_buffer_bytes)
uint32_t proxy_set_buffer_bytes(uint32_t type, uint32_t start, uint32_t length, const char* data,
                                size_t size);
IMPORT(proxy_send_local_response)
uint32_t proxy_send_local_response(uint32_t status, const char* details, size_t details_size,
                                   const char* body, size_t body_size, const char* headers,
                                   size_t headers_size, int32_t grpc);
IMPORT(proxy_continue_stream) uint32_t proxy_continue_stream(uint32_t type);
IMPORT(proxy_close_stream) uint32_t proxy_close_stream(uint32_t type);
IMPORT(proxy_get_shared_data)
uint32_t proxy_get_shared_data(const char* key, size_t key_size, const char** value, size_t* value_size,
                               uint32_t* cas);
IMPORT(proxy_set_shared_data)
uint32_t proxy_set_shared_data(const char* key, size_t key_size, const char* value, size_t value_size,
                               uint32_t cas);
IMPORT(proxy_define_metric)
uint32_t proxy_define_metric(uint32_t type, const char* name, size_t size, uint32_t* id);
IMPORT(proxy_increment_metric) uint32_t proxy_increment_metric(uint32_t id, int64_t offset);
IMPORT(proxy_record_metric) uint32_t proxy_record_metric(uint32_t id, uint64_t value);
IMPORT(proxy_get_metric) uint32_t proxy_get_metric(uint32_t id, uint64_t* value);
IMPORT(proxy_http_call)
uint32_t proxy_http_call(const char* cluster, size_t cluster_size, const char* headers, size_t headers_size,
                         const char* body, size_t body_size, const char* trailers, size_t trailers_size,
                         uint32_t timeout_ms, uint32_t* token);
IMPORT(proxy_set_effective_context) uint32_t proxy_set_effective_context(uint32_t id);
IMPORT(proxy_get_status) uint32_t proxy_get_status(uint32_t* code, const char** msg, size_t* msg_size);
IMPORT(proxy_register_shared_queue)
uint32_t proxy_register_shared_queue(const char* name, size_t size, uint32_t* id);
IMPORT(proxy_resolve_shared_queue)
uint32_t proxy_resolve_shared_queue(const char* vm_id, size_t vm_id_size, const char* name, size_t size,
                                    uint32_t* id);
IMPORT(proxy_enqueue_shared_queue)
uint32_t proxy_enqueue_shared_queue(uint32_t id, const char* data, size_t size);
IMPORT(proxy_dequeue_shared_queue)
uint32_t proxy_dequeue_shared_queue(uint32_t id, const char** data, size_t* size);
WASI(fd_write) uint32_t wasi_fd_write(uint32_t fd, const void* iovs, size_t count, size_t* written);
WASI(clock_time_get) uint32_t wasi_clock_time_get(uint32_t id, uint64_t precision, uint64_t* time);
WASI(random_get) uint32_t wasi_random_get(void* buf, size_t len);
WASI(environ_sizes_get) uint32_t wasi_environ_sizes_get(size_t* count, size_t* size);
WASI(environ_get) uint32_t wasi_environ_get(char** environ, char* buf);

/* ABI marker: proxy-wasm 0.2.1, or 0.2.0 when built with -DSKIFF_ABI_0_2_0 (the TinyGo SDK's version). */
#ifdef SKIFF_ABI_0_2_0
EXPORT(proxy_abi_version_0_2_0) void proxy_abi_version_0_2_0(void) {}
#else
EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1(void) {}
#endif

extern unsigned char __heap_base;
static uintptr_t heap_top;

/* Bump allocator: the tests' VMs are short-lived; nothing is freed. */
EXPORT(proxy_on_memory_allocate) void* proxy_on_memory_allocate(size_t size) {
  if (heap_top == 0) heap_top = (uintptr_t)&__heap_base;
  uintptr_t p = (heap_top + 7) & ~(uintptr_t)7;
  uintptr_t end = p + size;
  uintptr_t have = __builtin_wasm_memory_size(0) * 65536;
  if (end > have) {
    size_t pages = (end - have + 65535) / 65536;
    if (__builtin_wasm_memory_grow(0, pages) == (size_t)-1) return 0;
  }
  heap_top = end;
  return (void*)p;
}

static size_t str_len(const char* s) {
  size_t n = 0;
  while (s[n]) ++n;
  return n;
}
static int str_eq(const char* a, size_t an, const char* b) {
  size_t bn = str_len(b);
  if (an != bn) return 0;
  for (size_t i = 0; i < an; ++i)
    if (a[i] != b[i]) return 0;
  return 1;
}
static void log_str(uint32_t level, const char* s) {
  proxy_log(level, s, str_len(s));
}
/* Appends s to buf at *pos (no bounds: callers size their buffers). */
static void append(char* buf, size_t* pos, const char* s, size_t n) {
  for (size_t i = 0; i < n; ++i) buf[(*pos)++] = s[i];
}
static void append_str(char* buf, size_t* pos, const char* s) {
  append(buf, pos, s, str_len(s));
}
static void append_u64(char* buf, size_t* pos, uint64_t v) {
  char tmp[24];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (n) buf[(*pos)++] = tmp[--n];
}

/* Serialized pairs of up to 8 entries (NUL-terminated C strings) into buf; returns the size. */
static size_t make_pairs(char* buf, const char* const* kv, uint32_t count) {
  size_t pos = 4;
  *(uint32_t*)buf = count;
  for (uint32_t i = 0; i < count; ++i) {
    *(uint32_t*)(buf + pos) = (uint32_t)str_len(kv[2 * i]);
    *(uint32_t*)(buf + pos + 4) = (uint32_t)str_len(kv[2 * i + 1]);
    pos += 8;
  }
  for (uint32_t i = 0; i < 2 * count; ++i) {
    append_str(buf, &pos, kv[i]);
    buf[pos++] = 0;
  }
  return pos;
}

#endif
