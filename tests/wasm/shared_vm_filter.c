/* VM sharing: every request bumps one module-global counter, and the request gets a header named by this
 * plugin's configuration carrying the counter. Plugins that share a VM bump the same counter; each keeps its
 * own header name in its own root context. */
#include "proxy_wasm.h"

#define kMaxRoots 16
#define kMaxContexts 1024

static uint64_t hits;
static uint32_t root_ids[kMaxRoots];
static char root_headers[kMaxRoots][64];
static size_t root_header_lens[kMaxRoots];
static uint32_t roots;
static uint32_t context_root[kMaxContexts];  // stream context id → its root context id

static int root_index(uint32_t root) {
  for (uint32_t i = 0; i < roots; ++i)
    if (root_ids[i] == root) return (int)i;
  return -1;
}

EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t id, uint32_t parent) {
  if (parent == 0) {
    if (roots < kMaxRoots) root_ids[roots++] = id;
  } else if (id < kMaxContexts) {
    context_root[id] = parent;
  }
}

EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root, uint32_t size) {
  int i = root_index(root);
  if (i < 0 || size == 0 || size >= 64) return 0;
  const char* data = 0;
  size_t n = 0;
  if (proxy_get_buffer_bytes(kPluginConfiguration, 0, size, &data, &n) != kOk) return 0;
  for (size_t k = 0; k < n; ++k) root_headers[i][k] = data[k];
  root_header_lens[i] = n;
  return 1;
}

EXPORT(proxy_on_request_headers) uint32_t proxy_on_request_headers(uint32_t id, uint32_t n, uint32_t eos) {
  int i = id < kMaxContexts ? root_index(context_root[id]) : -1;
  if (i < 0) return 0;
  ++hits;
  char value[24];
  size_t pos = 0;
  append_u64(value, &pos, hits);
  proxy_add_header_map_value(kRequestHeaders, root_headers[i], root_header_lens[i], value, pos);
  /* The root context ids this VM has seen, e.g. "2,5": how many plugins live in it. */
  char list[kMaxRoots * 12];
  size_t lpos = 0;
  for (uint32_t r = 0; r < roots; ++r) {
    if (r) list[lpos++] = ',';
    append_u64(list, &lpos, root_ids[r]);
  }
  char name[80];
  size_t npos = 0;
  append(name, &npos, root_headers[i], root_header_lens[i]);
  append_str(name, &npos, "-roots");
  proxy_add_header_map_value(kRequestHeaders, name, npos, list, lpos);
  return 0;
}

EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t id) {
  return 1;
}
