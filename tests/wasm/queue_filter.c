/* Timer + shared queue + metrics: the root context registers queue "events" and ticks every
 * <configuration> ms (counter "ticks"); each request enqueues its path on the queue (resolved by vm_id
 * and name, as another plugin would), and proxy_on_queue_ready drains it into counter "queue_items" and
 * the shared-data key "last_item". GET /last answers locally with that key and the metric values; the
 * response gets x-requests (gauge "inflight_peak" stays at its last value). Histogram "path_length". */
#include "proxy_wasm.h"

static uint32_t queue_id;
static uint32_t ticks_metric, items_metric, requests_metric, gauge_metric, histogram_metric;

EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t root, uint32_t size) {
  if (proxy_register_shared_queue("events", 6, &queue_id) != kOk) return 0;
  /* Registering again is idempotent. */
  uint32_t again = 0;
  if (proxy_register_shared_queue("events", 6, &again) != kOk || again != queue_id) return 0;
  if (proxy_define_metric(0, "wasm_test.ticks", 15, &ticks_metric) != kOk) return 0;
  if (proxy_define_metric(0, "wasm_test.queue_items", 21, &items_metric) != kOk) return 0;
  if (proxy_define_metric(0, "wasm_test.requests", 18, &requests_metric) != kOk) return 0;
  if (proxy_define_metric(1, "wasm_test.last_path_length", 26, &gauge_metric) != kOk) return 0;
  if (proxy_define_metric(2, "wasm_test.path_length", 21, &histogram_metric) != kOk) return 0;
  return 1;
}

EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root, uint32_t size) {
  const char* data = 0;
  size_t n = 0;
  uint32_t ms = 0;
  if (size > 0 && proxy_get_buffer_bytes(kPluginConfiguration, 0, size, &data, &n) == kOk) {
    for (size_t i = 0; i < n; ++i) ms = ms * 10 + (uint32_t)(data[i] - '0');
  }
  proxy_set_tick_period_milliseconds(ms);
  return 1;
}

EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t id, uint32_t parent) {}

EXPORT(proxy_on_tick) void proxy_on_tick(uint32_t root) {
  proxy_increment_metric(ticks_metric, 1);
}

EXPORT(proxy_on_queue_ready) void proxy_on_queue_ready(uint32_t root, uint32_t id) {
  const char* data = 0;
  size_t n = 0;
  while (proxy_dequeue_shared_queue(id, &data, &n) == kOk) {
    proxy_increment_metric(items_metric, 1);
    proxy_set_shared_data("last_item", 9, data, n, 0);
  }
}

EXPORT(proxy_on_request_headers) uint32_t proxy_on_request_headers(uint32_t id, uint32_t n, uint32_t eos) {
  const char* path = 0;
  size_t path_len = 0;
  if (proxy_get_header_map_value(kRequestHeaders, ":path", 5, &path, &path_len) != kOk) return 0;
  proxy_increment_metric(requests_metric, 1);
  proxy_record_metric(gauge_metric, path_len);
  proxy_record_metric(histogram_metric, path_len);
  if (str_eq(path, path_len, "/last")) {
    const char* value = 0;
    size_t value_len = 0;
    uint32_t cas = 0;
    char body[256];
    size_t pos = 0;
    append_str(body, &pos, "last=");
    if (proxy_get_shared_data("last_item", 9, &value, &value_len, &cas) == kOk) {
      append(body, &pos, value, value_len < 128 ? value_len : 128);
    }
    uint64_t items = 0, ticks = 0;
    proxy_get_metric(items_metric, &items);
    proxy_get_metric(ticks_metric, &ticks);
    append_str(body, &pos, " items=");
    append_u64(body, &pos, items);
    append_str(body, &pos, " ticks=");
    append_u64(body, &pos, ticks);
    proxy_send_local_response(200, "", 0, body, pos, 0, 0, -1);
    return 1;
  }
  uint32_t resolved = 0;
  if (proxy_resolve_shared_queue("", 0, "events", 6, &resolved) != kOk) return 0;
  uint32_t missing = 0;
  if (proxy_resolve_shared_queue("", 0, "nope", 4, &missing) != kNotFound) return 0;
  if (proxy_enqueue_shared_queue(resolved, path, path_len) != kOk) return 0;
  return 0;
}
