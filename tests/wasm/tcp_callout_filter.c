/* A network (L4) filter that asks before it lets a connection through; plugin configuration
 * "<mode> <cluster>". Modes: "http" pauses proxy_on_new_connection and sends GET /authorize to the cluster
 * (proxy_http_call): a 200 continues the connection (proxy_continue_stream), anything else closes it
 * (proxy_close_stream). "grpc" / "grpc-deny" do the same with skiff.test.Echo/Unary (proxy_grpc_call; the
 * deny variant asks the server for status 7): OK continues, else closes. "tick" pauses and continues on the
 * next tick (no cluster). While a connection waits its bytes are held (Pause); a chunk containing "wait"
 * pauses again until a new answer (GET /wait, or the next tick). Bytes are never changed. Counters:
 * callout_allowed, callout_denied, callout_refused (the call could not be made: the connection is closed). */
#include "proxy_wasm.h"

IMPORT(proxy_grpc_call)
uint32_t proxy_grpc_call(const char* service, size_t service_size, const char* service_name,
                         size_t service_name_size, const char* method, size_t method_size,
                         const char* metadata, size_t metadata_size, const char* message, size_t message_size,
                         uint32_t timeout_ms, uint32_t* token);

enum { kDownstreamData = 2, kStreamDownstream = 2 };
enum { kHttp = 1, kGrpc = 2, kGrpcDeny = 3, kTick = 4 };

static uint32_t mode;
static char cluster[128];
static size_t cluster_len;
static uint32_t m_allowed, m_denied, m_refused;

#define kMaxConns 64
struct Conn {
  uint32_t context, token;
  int waiting;
};
static struct Conn conns[kMaxConns];

static struct Conn* find_context(uint32_t context) {
  for (int i = 0; i < kMaxConns; ++i)
    if (conns[i].context == context) return &conns[i];
  return 0;
}

static struct Conn* find_token(uint32_t token) {
  for (int i = 0; i < kMaxConns; ++i)
    if (conns[i].waiting && conns[i].token == token) return &conns[i];
  return 0;
}

static int starts_with(const char* data, size_t n, const char* word) {
  size_t w = str_len(word);
  return n >= w && str_eq(data, w, word);
}

EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root, uint32_t size) {
  proxy_define_metric(0, "callout_allowed", 15, &m_allowed);
  proxy_define_metric(0, "callout_denied", 14, &m_denied);
  proxy_define_metric(0, "callout_refused", 15, &m_refused);
  const char* data = 0;
  size_t n = 0;
  if (size == 0 || proxy_get_buffer_bytes(kPluginConfiguration, 0, size, &data, &n) != kOk) return 0;
  size_t skip = 0;
  if (starts_with(data, n, "http ")) {
    mode = kHttp;
    skip = 5;
  } else if (starts_with(data, n, "grpc-deny ")) {
    mode = kGrpcDeny;
    skip = 10;
  } else if (starts_with(data, n, "grpc ")) {
    mode = kGrpc;
    skip = 5;
  } else if (starts_with(data, n, "tick")) {
    mode = kTick;
    return 1;
  } else {
    return 0;
  }
  if (n - skip >= sizeof(cluster)) return 0;
  for (size_t i = skip; i < n; ++i) cluster[cluster_len++] = data[i];
  return 1;
}

EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t id, uint32_t parent) {}

static void finish(struct Conn* c, int allowed) {
  c->waiting = 0;
  if (proxy_set_effective_context(c->context) != kOk) return; /* the connection is gone */
  proxy_increment_metric(allowed ? m_allowed : m_denied, 1);
  if (allowed) {
    proxy_continue_stream(kStreamDownstream);
  } else {
    proxy_close_stream(kStreamDownstream);
  }
}

/* Starts the question for `context`; returns the proxy_on_* action (1: Pause). */
static uint32_t ask(uint32_t context, const char* path) {
  struct Conn* c = find_context(context);
  if (!c) c = find_context(0);
  if (!c) return 0;
  c->context = context;
  c->waiting = 1;
  uint32_t result = kOk;
  if (mode == kTick) {
    result = proxy_set_tick_period_milliseconds(5);
  } else if (mode == kHttp) {
    const char* kv[] = {":method", "GET", ":path", path, ":authority", "auth"};
    char headers[128];
    size_t n = make_pairs(headers, kv, 3);
    result = proxy_http_call(cluster, cluster_len, headers, n, 0, 0, 0, 0, 5000, &c->token);
  } else {
    /* EchoRequest{message: "ok", status: 7 for the deny variant}. */
    char request[8] = {0x0a, 2, 'o', 'k', 0x18, 7};
    size_t request_len = mode == kGrpcDeny ? 6 : 4;
    result = proxy_grpc_call(cluster, cluster_len, "skiff.test.Echo", 15, "Unary", 5, 0, 0, request,
                             request_len, 5000, &c->token);
  }
  if (result != kOk) {
    c->waiting = 0;
    proxy_increment_metric(m_refused, 1);
    proxy_close_stream(kStreamDownstream);
  }
  return 1;
}

EXPORT(proxy_on_new_connection) uint32_t proxy_on_new_connection(uint32_t id) {
  return ask(id, "/authorize");
}

EXPORT(proxy_on_downstream_data) uint32_t proxy_on_downstream_data(uint32_t id, uint32_t size, uint32_t eos) {
  struct Conn* c = find_context(id);
  if (c && c->waiting) return 1; /* still waiting: hold */
  const char* data = 0;
  size_t n = 0;
  if (size == 0 || proxy_get_buffer_bytes(kDownstreamData, 0, size, &data, &n) != kOk) return 0;
  for (size_t i = 0; i + 4 <= n; ++i) {
    if (str_eq(data + i, 4, "wait")) return ask(id, "/wait");
  }
  return 0;
}

EXPORT(proxy_on_tick) void proxy_on_tick(uint32_t root) {
  proxy_set_tick_period_milliseconds(0);
  for (int i = 0; i < kMaxConns; ++i)
    if (conns[i].waiting) finish(&conns[i], 1);
}

EXPORT(proxy_on_http_call_response)
void proxy_on_http_call_response(uint32_t root, uint32_t token, uint32_t num_headers, uint32_t body_size,
                                 uint32_t num_trailers) {
  struct Conn* c = find_token(token);
  if (!c) return;
  const char* status = 0;
  size_t len = 0;
  int ok = num_headers > 0 &&
           proxy_get_header_map_value(kHttpCallResponseHeaders, ":status", 7, &status, &len) == kOk &&
           str_eq(status, len, "200");
  finish(c, ok);
}

EXPORT(proxy_on_grpc_receive) void proxy_on_grpc_receive(uint32_t root, uint32_t token, uint32_t size) {}

EXPORT(proxy_on_grpc_close) void proxy_on_grpc_close(uint32_t root, uint32_t token, uint32_t status) {
  struct Conn* c = find_token(token);
  if (c) finish(c, status == 0);
}

EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t id) {
  struct Conn* c = find_context(id);
  if (c) {
    c->context = 0;
    c->waiting = 0;
  }
  return 1;
}
