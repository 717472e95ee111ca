/* gRPC callouts to the Echo test service (skiff.test.Echo) on the cluster named by the plugin configuration.
 * A request with x-grpc: <text> is held while Unary(EchoRequest{message: text}) runs; with x-grpc-stream:
 * <text> while Stream(EchoRequest{message: text, count: 3}) runs over proxy_grpc_stream + proxy_grpc_send.
 * x-grpc-status: <n> asks the server to end with status n. On close the request goes on with
 * x-grpc-reply (the reply messages, comma-joined), x-grpc-initial / x-grpc-trailer (the x-echo-* metadata
 * values) added, or, for a non-OK status, is answered 503 "grpc <status>: <message>". x-grpc-cluster names
 * another cluster; a refused call answers 500 with the result code. x-grpc-cancel: a call is started and
 * cancelled at once (the request goes on with x-grpc-cancel-result: <start>,<cancel>,<cancel again>). */
#include "proxy_wasm.h"

IMPORT(proxy_grpc_call)
uint32_t proxy_grpc_call(const char* service, size_t service_size, const char* service_name,
                         size_t service_name_size, const char* method, size_t method_size,
                         const char* metadata, size_t metadata_size, const char* message, size_t message_size,
                         uint32_t timeout_ms, uint32_t* token);
IMPORT(proxy_grpc_stream)
uint32_t proxy_grpc_stream(const char* service, size_t service_size, const char* service_name,
                           size_t service_name_size, const char* method, size_t method_size,
                           const char* metadata, size_t metadata_size, uint32_t* token);
IMPORT(proxy_grpc_send)
uint32_t proxy_grpc_send(uint32_t token, const char* message, size_t message_size, uint32_t end_stream);
IMPORT(proxy_grpc_cancel) uint32_t proxy_grpc_cancel(uint32_t token);
IMPORT(proxy_grpc_close) uint32_t proxy_grpc_close(uint32_t token);

enum { kGrpcInitialMetadata = 4, kGrpcTrailingMetadata = 5, kGrpcReceiveBuffer = 5 };

static char cluster[128];
static size_t cluster_len;

#define kMaxCalls 64
struct Call {
  uint32_t token, context;
  char reply[256];
  size_t reply_len;
  char initial[64], trailer[64];
  size_t initial_len, trailer_len;
};
static struct Call calls[kMaxCalls];

static struct Call* find(uint32_t token) {
  for (int i = 0; i < kMaxCalls; ++i)
    if (calls[i].token == token) return &calls[i];
  return 0;
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

static size_t header(const char* name, const char** value) {
  size_t len = 0;
  if (proxy_get_header_map_value(kRequestHeaders, name, str_len(name), value, &len) != kOk) return (size_t)-1;
  return len;
}

/* EchoRequest{message = 1, count = 2, status = 3} in protobuf wire format. */
static size_t echo_request(char* out, const char* text, size_t len, uint32_t count, uint32_t status) {
  size_t pos = 0;
  out[pos++] = 0x0a;
  out[pos++] = (char)len; /* < 128 */
  append(out, &pos, text, len);
  if (count) {
    out[pos++] = 0x10;
    out[pos++] = (char)count;
  }
  if (status) {
    out[pos++] = 0x18;
    out[pos++] = (char)status;
  }
  return pos;
}

static void add_result(const char* name, uint32_t a, uint32_t b, uint32_t c) {
  char v[48];
  size_t pos = 0;
  append_u64(v, &pos, a);
  v[pos++] = ',';
  append_u64(v, &pos, b);
  v[pos++] = ',';
  append_u64(v, &pos, c);
  proxy_add_header_map_value(kRequestHeaders, name, str_len(name), v, pos);
}

EXPORT(proxy_on_request_headers) uint32_t proxy_on_request_headers(uint32_t id, uint32_t n, uint32_t eos) {
  const char* text = 0;
  size_t len = header("x-grpc", &text);
  int stream = 0;
  if (len == (size_t)-1) {
    len = header("x-grpc-stream", &text);
    stream = 1;
  }
  const char* cancel = 0;
  int cancelling = header("x-grpc-cancel", &cancel) != (size_t)-1;
  if (cancelling) {
    text = "bye";
    len = 3;
    stream = 0;
  } else if (len == (size_t)-1 || len > 100) {
    return 0;
  }
  const char* target = cluster;
  size_t target_len = cluster_len;
  const char* other = 0;
  size_t other_len = header("x-grpc-cluster", &other);
  if (other_len != (size_t)-1) {
    target = other;
    target_len = other_len;
  }
  uint32_t status = 0;
  const char* s = 0;
  size_t s_len = header("x-grpc-status", &s);
  if (s_len != (size_t)-1 && s_len > 0) status = (uint32_t)(s[0] - '0');
  const char* kv[] = {"x-md", "from-wasm"};
  char metadata[64];
  size_t metadata_len = make_pairs(metadata, kv, 1);
  char request[160];
  size_t request_len = echo_request(request, text, len, stream ? 3 : 0, status);
  uint32_t token = 0, result;
  if (stream) {
    result = proxy_grpc_stream(target, target_len, "skiff.test.Echo", 15, "Stream", 6, metadata, metadata_len,
                               &token);
    if (result == kOk) result = proxy_grpc_send(token, request, request_len, 1);
  } else {
    result = proxy_grpc_call(target, target_len, "skiff.test.Echo", 15, "Unary", 5, metadata, metadata_len,
                             request, request_len, 2000, &token);
  }
  if (cancelling) {
    uint32_t first = proxy_grpc_cancel(token);
    add_result("x-grpc-cancel-result", result, first, proxy_grpc_cancel(token));
    return 0;
  }
  if (result != kOk) {
    char body[16];
    size_t pos = 0;
    append_u64(body, &pos, result);
    proxy_send_local_response(500, "grpc refused", 12, body, pos, 0, 0, -1);
    return 1;
  }
  for (int i = 0; i < kMaxCalls; ++i) {
    if (calls[i].token == 0) {
      calls[i].token = token;
      calls[i].context = id;
      calls[i].reply_len = calls[i].initial_len = calls[i].trailer_len = 0;
      break;
    }
  }
  return 1;
}

static void copy_metadata(uint32_t map, const char* key, char* out, size_t* out_len) {
  const char* v = 0;
  size_t len = 0;
  if (proxy_get_header_map_value(map, key, str_len(key), &v, &len) != kOk || len > 63) return;
  for (size_t i = 0; i < len; ++i) out[i] = v[i];
  *out_len = len;
}

EXPORT(proxy_on_grpc_receive_initial_metadata)
void proxy_on_grpc_receive_initial_metadata(uint32_t root, uint32_t token, uint32_t count) {
  struct Call* c = find(token);
  if (c) copy_metadata(kGrpcInitialMetadata, "x-echo-initial", c->initial, &c->initial_len);
}

EXPORT(proxy_on_grpc_receive) void proxy_on_grpc_receive(uint32_t root, uint32_t token, uint32_t size) {
  struct Call* c = find(token);
  if (!c) return;
  const char* data = 0;
  size_t n = 0;
  if (proxy_get_buffer_bytes(kGrpcReceiveBuffer, 0, size, &data, &n) != kOk) return;
  /* EchoReply.message is field 1: 0x0a <len> <bytes> first. */
  if (n < 2 || data[0] != 0x0a || (size_t)(unsigned char)data[1] + 2 > n) return;
  size_t len = (unsigned char)data[1];
  if (c->reply_len + len + 1 >= sizeof(c->reply)) return;
  if (c->reply_len) c->reply[c->reply_len++] = ',';
  append(c->reply, &c->reply_len, data + 2, len);
}

EXPORT(proxy_on_grpc_receive_trailing_metadata)
void proxy_on_grpc_receive_trailing_metadata(uint32_t root, uint32_t token, uint32_t count) {
  struct Call* c = find(token);
  if (c) copy_metadata(kGrpcTrailingMetadata, "x-echo-trailer", c->trailer, &c->trailer_len);
}

EXPORT(proxy_on_grpc_close) void proxy_on_grpc_close(uint32_t root, uint32_t token, uint32_t status) {
  struct Call* c = find(token);
  if (!c) return;
  c->token = 0;
  if (proxy_set_effective_context(c->context) != kOk) return;
  if (status != 0) {
    uint32_t code = 0;
    const char* msg = 0;
    size_t msg_len = 0;
    proxy_get_status(&code, &msg, &msg_len);
    char body[200];
    size_t pos = 0;
    append_str(body, &pos, "grpc ");
    append_u64(body, &pos, code);
    append_str(body, &pos, ": ");
    append(body, &pos, msg, msg_len < 150 ? msg_len : 150);
    proxy_send_local_response(503, "grpc failed", 11, body, pos, 0, 0, -1);
    return;
  }
  proxy_add_header_map_value(kRequestHeaders, "x-grpc-reply", 12, c->reply, c->reply_len);
  proxy_add_header_map_value(kRequestHeaders, "x-grpc-initial", 14, c->initial, c->initial_len);
  proxy_add_header_map_value(kRequestHeaders, "x-grpc-trailer", 14, c->trailer, c->trailer_len);
  proxy_continue_stream(0);
}

EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t id) {
  return 1;
}
