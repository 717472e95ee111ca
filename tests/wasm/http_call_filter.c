/* An auth-style filter: each request is held while the cluster named by the plugin configuration is asked
 * GET /auth/<x-user>; a 200 lets the request go on with x-auth-body (the call's body) and
 * x-auth-trailers (its trailer count) added, anything else answers 403, a failed call 503. A request
 * with x-cluster calls that cluster instead and, when proxy_http_call refuses, answers 500 with the
 * result code in the body. A call answered with the body "boom" traps in proxy_on_http_call_response. */
#include "proxy_wasm.h"

static char cluster[128];
static size_t cluster_len;

#define kMaxCalls 64
static uint32_t call_token[kMaxCalls];
static uint32_t call_context[kMaxCalls];

EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t root, uint32_t size) {
  return 1;
}

EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root, uint32_t size) {
  const char* data = 0;
  size_t n = 0;
  if (size == 0 || size >= sizeof(cluster)) return 0;
  if (proxy_get_buffer_bytes(kPluginConfiguration, 0, size, &data, &n) != kOk) return 0;
  for (size_t i = 0; i < n; ++i) cluster[i] = data[i];
  cluster_len = n;
  return 1;
}

EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t id, uint32_t parent) {}

static void reply(uint32_t status, const char* body, size_t body_len) {
  proxy_send_local_response(status, "wasm auth", 9, body, body_len, 0, 0, -1);
}

EXPORT(proxy_on_request_headers) uint32_t proxy_on_request_headers(uint32_t id, uint32_t n, uint32_t eos) {
  const char* user = 0;
  size_t user_len = 0;
  if (proxy_get_header_map_value(kRequestHeaders, "x-user", 6, &user, &user_len) != kOk) user_len = 0;
  char path[192];
  size_t pos = 0;
  append_str(path, &pos, "/auth/");
  append(path, &pos, user, user_len < 128 ? user_len : 128);
  path[pos] = 0;
  const char* kv[] = {":method", "GET", ":path", path, ":authority", "auth.local", "x-from", "wasm"};
  char headers[512];
  size_t headers_len = make_pairs(headers, kv, 4);

  const char* target = cluster;
  size_t target_len = cluster_len;
  const char* other = 0;
  size_t other_len = 0;
  if (proxy_get_header_map_value(kRequestHeaders, "x-cluster", 9, &other, &other_len) == kOk) {
    target = other;
    target_len = other_len;
  }
  uint32_t timeout = 2000;
  const char* t = 0;
  size_t t_len = 0;
  if (proxy_get_header_map_value(kRequestHeaders, "x-timeout-ms", 12, &t, &t_len) == kOk) {
    timeout = 0;
    for (size_t i = 0; i < t_len; ++i) timeout = timeout * 10 + (uint32_t)(t[i] - '0');
  }
  uint32_t token = 0;
  const char* oob = 0;
  size_t oob_len = 0;
  if (proxy_get_header_map_value(kRequestHeaders, "x-oob", 5, &oob, &oob_len) == kOk) {
    target = (const char*)0xFFFFFF00u; /* a cluster name past the end of memory */
  }
  if (proxy_get_header_map_value(kRequestHeaders, "x-no-path", 9, &oob, &oob_len) == kOk) {
    const char* no_path[] = {":method", "GET", ":authority", "auth.local"};
    headers_len = make_pairs(headers, no_path, 2);
  }
  uint32_t rc = proxy_http_call(target, target_len, headers, headers_len, "", 0, "", 0, timeout, &token);
  if (rc != kOk) {
    char body[32];
    size_t bpos = 0;
    append_str(body, &bpos, "http_call=");
    append_u64(body, &bpos, rc);
    reply(500, body, bpos);
    return 1;
  }
  for (int i = 0; i < kMaxCalls; ++i) {
    if (call_context[i] == 0) {
      call_token[i] = token;
      call_context[i] = id;
      break;
    }
  }
  return 1; /* StopIteration until the answer */
}

EXPORT(proxy_on_http_call_response)
void proxy_on_http_call_response(uint32_t root, uint32_t token, uint32_t num_headers, uint32_t body_size,
                                 uint32_t num_trailers) {
  uint32_t context = 0;
  for (int i = 0; i < kMaxCalls; ++i) {
    if (call_context[i] != 0 && call_token[i] == token) {
      context = call_context[i];
      call_context[i] = 0;
      break;
    }
  }
  if (context == 0) return;
  /* Read everything from the root context, then act on the stream. */
  const char* status = 0;
  size_t status_len = 0;
  uint32_t have_status = num_headers != 0 && proxy_get_header_map_value(kHttpCallResponseHeaders, ":status",
                                                                        7, &status, &status_len) == kOk;
  const char* body = 0;
  size_t body_len = 0;
  if (body_size > 0) proxy_get_buffer_bytes(kHttpCallResponseBody, 0, body_size, &body, &body_len);
  uint32_t code = 99;
  const char* msg = 0;
  size_t msg_len = 0;
  proxy_get_status(&code, &msg, &msg_len);
  char line[128];
  size_t pos = 0;
  append_str(line, &pos, "http call response: headers=");
  append_u64(line, &pos, num_headers);
  append_str(line, &pos, " body=");
  append_u64(line, &pos, body_size);
  append_str(line, &pos, " trailers=");
  append_u64(line, &pos, num_trailers);
  append_str(line, &pos, " status_code=");
  append_u64(line, &pos, code);
  proxy_log(kInfo, line, pos);

  if (body_len == 4 && str_eq(body, body_len, "boom")) __builtin_trap(); /* a trap in a root callback */
  if (proxy_set_effective_context(context) != kOk) return;
  if (num_headers == 0) {
    reply(503, "auth call failed", 16);
    return;
  }
  if (!have_status || !str_eq(status, status_len, "200")) {
    reply(403, "denied", 6);
    return;
  }
  proxy_replace_header_map_value(kRequestHeaders, "x-auth-body", 11, body, body_len);
  char count[8];
  size_t cpos = 0;
  append_u64(count, &cpos, num_trailers);
  proxy_replace_header_map_value(kRequestHeaders, "x-auth-trailers", 15, count, cpos);
  proxy_continue_stream(0);
}
