// The host functions: argument checks (every guest pointer/length bounds-checked), then the operation on
// the plugin or the current stream. Result codes follow Envoy's host (proxy-wasm-cpp-host).
#include "wasm/host_functions.h"

#include <openssl/rand.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "skiff/common/logging.h"
#include "wasm/pairs.h"
#include "wasm/plugin.h"
#include "wasm/shared_data.h"
#include "wasm/shared_queue.h"
#include "wasm/vm.h"

namespace skiff::wasm {
namespace {

using R = WasmResult;

uint64_t r(WasmResult result) {
  return static_cast<uint64_t>(result);
}
uint32_t u32(uint64_t v) {
  return static_cast<uint32_t>(v);
}
PluginVm& plugin(Vm& vm) {
  return *vm.host();
}

// A guest string copied out (guest memory may move when the host calls the guest allocator).
std::optional<std::string> guestString(Vm& vm, uint64_t ptr, uint64_t size) {
  auto v = vm.view(u32(ptr), u32(size));
  if (!v) return std::nullopt;
  return std::string(*v);
}

http::HeaderMap* headerMap(Vm& vm, uint32_t type) {
  const auto t = static_cast<MapType>(type);
  if (t == MapType::kGrpcInitialMetadata || t == MapType::kGrpcTrailingMetadata) {
    // Readable only inside proxy_on_grpc_receive_{initial,trailing}_metadata (read-only there).
    return const_cast<http::HeaderMap*>(plugin(vm).grpcMetadata(t));
  }
  if (t == MapType::kHttpCallResponseHeaders || t == MapType::kHttpCallResponseTrailers) {
    // Readable only inside proxy_on_http_call_response.
    const HttpCallResponse* response = plugin(vm).httpCallResponse();
    if (response == nullptr) return nullptr;
    return t == MapType::kHttpCallResponseHeaders ? response->headers.get() : response->trailers.get();
  }
  StreamContext* stream = plugin(vm).currentStream();
  if (stream == nullptr) return nullptr;
  return stream->headerMap(static_cast<MapType>(type));
}

// ---- logging, time, status ----

uint64_t proxyLog(Vm& vm, const uint64_t* a) {
  if (a[0] > kMaxLogLevel) return r(R::kBadArgument);
  auto msg = vm.view(u32(a[1]), u32(a[2]));
  if (!msg) return r(R::kInvalidMemoryAccess);
  plugin(vm).logLine(u32(a[0]), *msg);
  return r(R::kOk);
}

uint64_t proxyGetLogLevel(Vm& vm, const uint64_t* a) {
  uint32_t level = static_cast<uint32_t>(log::get(log::Component::kWasm).level());
  if (level > kMaxLogLevel) level = kMaxLogLevel;  // "off" reads as critical
  return r(vm.writeU32(u32(a[0]), level) ? R::kOk : R::kInvalidMemoryAccess);
}

uint64_t proxyGetCurrentTime(Vm& vm, const uint64_t* a) {
  const uint64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  return r(vm.writeU64(u32(a[0]), ns) ? R::kOk : R::kInvalidMemoryAccess);
}

uint64_t proxySetTickPeriod(Vm& vm, const uint64_t* a) {
  return r(plugin(vm).setTickPeriod(u32(a[0])));
}

// ---- properties ----

uint64_t proxyGetProperty(Vm& vm, const uint64_t* a) {
  auto path = guestString(vm, a[0], a[1]);
  if (!path) return r(R::kInvalidMemoryAccess);
  if (!vm.view(u32(a[2]), 4) || !vm.view(u32(a[3]), 4)) return r(R::kInvalidMemoryAccess);
  std::vector<std::string_view> segments;
  std::string_view rest = *path;
  if (!rest.empty() && rest.back() == '\0') rest.remove_suffix(1);
  while (true) {
    const size_t nul = rest.find('\0');
    segments.push_back(rest.substr(0, nul));
    if (nul == std::string_view::npos) break;
    rest.remove_prefix(nul + 1);
  }
  std::optional<std::string> value = plugin(vm).pluginProperty(segments);
  if (!value && plugin(vm).currentStream() != nullptr) value = plugin(vm).currentStream()->property(segments);
  if (!value) return r(R::kNotFound);
  return r(vm.copyOut(*value, u32(a[2]), u32(a[3])));
}

uint64_t proxySetProperty(Vm& vm, const uint64_t* a) {
  auto path = vm.view(u32(a[0]), u32(a[1]));
  auto value = vm.view(u32(a[2]), u32(a[3]));
  if (!path || !value) return r(R::kInvalidMemoryAccess);
  StreamContext* stream = plugin(vm).currentStream();
  if (stream == nullptr) return r(R::kNotFound);  // no stream info in a root context
  std::string_view p = *path;
  if (!p.empty() && p.back() == '\0') p.remove_suffix(1);
  if (const DeclaredProperty* declared = plugin(vm).declaredProperty(p);
      declared != nullptr && declared->readonly && stream->property({p})) {
    return r(R::kBadArgument);  // declare_property(readonly): set once
  }
  return r(stream->setProperty(p, *value));
}

// ---- header maps ----

uint64_t proxyGetHeaderMapValue(Vm& vm, const uint64_t* a) {
  if (a[0] > kMaxMapType) return r(R::kBadArgument);
  auto key = guestString(vm, a[1], a[2]);
  if (!key) return r(R::kInvalidMemoryAccess);
  if (!vm.view(u32(a[3]), 4) || !vm.view(u32(a[4]), 4)) return r(R::kInvalidMemoryAccess);
  http::HeaderMap* map = headerMap(vm, u32(a[0]));
  if (map == nullptr) return r(R::kBadArgument);
  const std::string* value = map->get(*key);
  if (value == nullptr) {
    if (vm.abi() == AbiVersion::k0_1_0) return r(vm.copyOut("", u32(a[3]), u32(a[4])));
    return r(R::kNotFound);
  }
  const std::string copy = *value;  // the allocator runs guest code
  return r(vm.copyOut(copy, u32(a[3]), u32(a[4])));
}

template <typename Op>
uint64_t mutateHeader(Vm& vm, const uint64_t* a, bool with_value, Op op) {
  if (a[0] > kMaxMapType) return r(R::kBadArgument);
  auto key = vm.view(u32(a[1]), u32(a[2]));
  if (!key) return r(R::kInvalidMemoryAccess);
  std::string_view value;
  if (with_value) {
    auto v = vm.view(u32(a[3]), u32(a[4]));
    if (!v) return r(R::kInvalidMemoryAccess);
    value = *v;
  }
  http::HeaderMap* map = headerMap(vm, u32(a[0]));
  if (map == nullptr) return r(R::kBadArgument);
  const uint64_t version_before = map->version();
  op(*map, *key, value);
  // Envoy clears the route cache on every request-header change by a plugin of ABI 0.2.1 or older
  // (every ABI Skiff detects); the stream skips it when the route cannot depend on the change.
  if (static_cast<MapType>(a[0]) == MapType::kRequestHeaders && map->version() != version_before) {
    StreamContext* stream = plugin(vm).currentStream();
    if (stream != nullptr) stream->requestHeaderChanged(*key, version_before);
  }
  return r(R::kOk);
}

uint64_t proxyAddHeaderMapValue(Vm& vm, const uint64_t* a) {
  return mutateHeader(vm, a, true,
                      [](http::HeaderMap& m, std::string_view k, std::string_view v) { m.add(k, v); });
}
uint64_t proxyReplaceHeaderMapValue(Vm& vm, const uint64_t* a) {
  return mutateHeader(vm, a, true,
                      [](http::HeaderMap& m, std::string_view k, std::string_view v) { m.set(k, v); });
}
uint64_t proxyRemoveHeaderMapValue(Vm& vm, const uint64_t* a) {
  return mutateHeader(vm, a, false,
                      [](http::HeaderMap& m, std::string_view k, std::string_view) { m.remove(k); });
}

uint64_t proxyGetHeaderMapPairs(Vm& vm, const uint64_t* a) {
  if (a[0] > kMaxMapType) return r(R::kBadArgument);
  if (!vm.view(u32(a[1]), 4) || !vm.view(u32(a[2]), 4)) return r(R::kInvalidMemoryAccess);
  http::HeaderMap* map = headerMap(vm, u32(a[0]));
  if (map == nullptr) return r(R::kBadArgument);
  if (map->empty()) return r(vm.copyOut("", u32(a[1]), u32(a[2])));
  Pairs pairs;
  pairs.reserve(map->size());
  for (const auto& [k, v] : *map) pairs.emplace_back(k, v);
  return r(vm.copyOut(serializePairs(pairs), u32(a[1]), u32(a[2])));
}

uint64_t proxySetHeaderMapPairs(Vm& vm, const uint64_t* a) {
  if (a[0] > kMaxMapType) return r(R::kBadArgument);
  auto data = vm.view(u32(a[1]), u32(a[2]));
  if (!data) return r(R::kInvalidMemoryAccess);
  auto pairs = parsePairs(*data);
  if (!pairs) return r(R::kBadArgument);
  http::HeaderMap* map = headerMap(vm, u32(a[0]));
  if (map == nullptr) return r(R::kBadArgument);
  map->clear();
  for (const auto& [k, v] : *pairs) map->add(k, v);
  if (static_cast<MapType>(a[0]) == MapType::kRequestHeaders) {
    if (StreamContext* stream = plugin(vm).currentStream()) stream->clearRouteCache();  // as Envoy does
  }
  return r(R::kOk);
}

uint64_t proxyGetHeaderMapSize(Vm& vm, const uint64_t* a) {
  if (a[0] > kMaxMapType) return r(R::kBadArgument);
  if (!vm.view(u32(a[1]), 4)) return r(R::kInvalidMemoryAccess);
  http::HeaderMap* map = headerMap(vm, u32(a[0]));
  if (map == nullptr) return r(R::kBadArgument);
  return r(vm.writeU32(u32(a[1]), static_cast<uint32_t>(map->byteSize())) ? R::kOk : R::kInvalidMemoryAccess);
}

// ---- buffers ----

// The buffer of `type` for reading: configuration buffers from the plugin, bodies from the stream.
const std::string* readableBuffer(Vm& vm, uint32_t type) {
  const auto t = static_cast<BufferType>(type);
  if (t == BufferType::kVmConfiguration || t == BufferType::kPluginConfiguration) {
    return plugin(vm).configurationBuffer(t);
  }
  if (t == BufferType::kGrpcReceiveBuffer) return plugin(vm).grpcReceiveBuffer();
  if (t == BufferType::kHttpCallResponseBody) {
    const HttpCallResponse* response = plugin(vm).httpCallResponse();
    return response == nullptr ? nullptr : &response->body;
  }
  StreamContext* stream = plugin(vm).currentStream();
  return stream == nullptr ? nullptr : stream->buffer(t);
}

uint64_t proxyGetBufferStatus(Vm& vm, const uint64_t* a) {
  if (a[0] > kMaxBufferType) return r(R::kBadArgument);
  if (!vm.view(u32(a[1]), 4) || !vm.view(u32(a[2]), 4)) return r(R::kInvalidMemoryAccess);
  const std::string* buffer = readableBuffer(vm, u32(a[0]));
  if (buffer == nullptr) return r(R::kNotFound);
  vm.writeU32(u32(a[1]), static_cast<uint32_t>(buffer->size()));
  vm.writeU32(u32(a[2]), 0);
  return r(R::kOk);
}

uint64_t proxyGetBufferBytes(Vm& vm, const uint64_t* a) {
  if (a[0] > kMaxBufferType) return r(R::kBadArgument);
  const uint64_t start = u32(a[1]), length = u32(a[2]);
  if (!vm.view(u32(a[3]), 4) || !vm.view(u32(a[4]), 4)) return r(R::kInvalidMemoryAccess);
  const std::string* buffer = readableBuffer(vm, u32(a[0]));
  if (buffer == nullptr) return r(R::kNotFound);
  if (start + length > UINT32_MAX || start > buffer->size()) return r(R::kBadArgument);
  const uint64_t n = std::min<uint64_t>(length, buffer->size() - start);
  if (n == 0) return r(R::kOk);  // Envoy leaves the out-params untouched
  const std::string copy = buffer->substr(start, n);
  return r(vm.copyOut(copy, u32(a[3]), u32(a[4])));
}

uint64_t proxySetBufferBytes(Vm& vm, const uint64_t* a) {
  if (a[0] > kMaxBufferType) return r(R::kBadArgument);
  auto data = vm.view(u32(a[3]), u32(a[4]));
  if (!data) return r(R::kInvalidMemoryAccess);
  const auto t = static_cast<BufferType>(u32(a[0]));
  StreamContext* stream = plugin(vm).currentStream();
  http::Buffer* buffer = stream == nullptr ? nullptr : stream->buffer(t);
  if (buffer == nullptr) {
    return r(t == BufferType::kVmConfiguration || t == BufferType::kPluginConfiguration ? R::kBadArgument
                                                                                        : R::kNotFound);
  }
  const uint64_t start = u32(a[1]), length = u32(a[2]);
  if (start == 0) {
    buffer->erase(0, std::min<uint64_t>(length, buffer->size()));
    buffer->insert(0, *data);
  } else if (start >= buffer->size()) {
    buffer->append(*data);
  } else {
    return r(R::kBadArgument);
  }
  return r(R::kOk);
}

uint64_t proxyGetConfiguration(Vm& vm, const uint64_t* a) {  // 0.1.0
  if (!vm.view(u32(a[0]), 4) || !vm.view(u32(a[1]), 4)) return r(R::kInvalidMemoryAccess);
  const std::string* config = plugin(vm).configurationBuffer(BufferType::kPluginConfiguration);
  if (config == nullptr) config = &plugin(vm).spec().vm_configuration;
  const std::string copy = *config;
  return r(vm.copyOut(copy, u32(a[0]), u32(a[1])));
}

// ---- stream control ----

uint64_t proxyContinueStream(Vm& vm, const uint64_t* a) {
  if (a[0] > kMaxStreamType) return r(R::kBadArgument);
  StreamContext* stream = plugin(vm).currentStream();
  if (stream == nullptr) return r(R::kNotFound);
  return r(stream->continueStream(static_cast<StreamType>(u32(a[0]))));
}

uint64_t proxyCloseStream(Vm& vm, const uint64_t* a) {
  if (a[0] > kMaxStreamType) return r(R::kBadArgument);
  StreamContext* stream = plugin(vm).currentStream();
  if (stream == nullptr) return r(R::kNotFound);
  return r(stream->closeStream(static_cast<StreamType>(u32(a[0]))));
}

uint64_t proxyContinueRequest(Vm& vm, const uint64_t*) {
  const uint64_t arg = 0;
  return proxyContinueStream(vm, &arg);
}
uint64_t proxyContinueResponse(Vm& vm, const uint64_t*) {
  const uint64_t arg = 1;
  return proxyContinueStream(vm, &arg);
}
uint64_t proxyClearRouteCache(Vm& vm, const uint64_t*) {
  if (StreamContext* stream = plugin(vm).currentStream()) stream->clearRouteCache();
  return r(R::kOk);
}

uint64_t proxySendLocalResponse(Vm& vm, const uint64_t* a) {
  auto details = guestString(vm, a[1], a[2]);
  auto body = guestString(vm, a[3], a[4]);
  auto headers_data = vm.view(u32(a[5]), u32(a[6]));
  if (!details || !body || !headers_data) return r(R::kInvalidMemoryAccess);
  auto pairs = parsePairs(*headers_data);
  if (!pairs) return r(R::kBadArgument);
  StreamContext* stream = plugin(vm).currentStream();
  if (stream == nullptr) return r(R::kBadArgument);
  std::vector<std::pair<std::string, std::string>> headers;
  for (const auto& [k, v] : *pairs) headers.emplace_back(k, v);
  for (char& c : *details) {
    if (c == ' ') c = '_';
  }
  stream->sendLocalResponse(u32(a[0]), *details, *body, std::move(headers));
  return r(R::kOk);
}

// ---- shared data ----

uint64_t proxyGetSharedData(Vm& vm, const uint64_t* a) {
  auto key = guestString(vm, a[0], a[1]);
  if (!key) return r(R::kInvalidMemoryAccess);
  if (!vm.view(u32(a[2]), 4) || !vm.view(u32(a[3]), 4) || !vm.view(u32(a[4]), 4)) {
    return r(R::kInvalidMemoryAccess);
  }
  auto entry = SharedData::instance().get(plugin(vm).spec().vm_id, *key);
  if (!entry) return r(R::kNotFound);
  const WasmResult result = vm.copyOut(entry->first, u32(a[2]), u32(a[3]));
  if (result != R::kOk) return r(result);
  return r(vm.writeU32(u32(a[4]), entry->second) ? R::kOk : R::kInvalidMemoryAccess);
}

uint64_t proxySetSharedData(Vm& vm, const uint64_t* a) {
  auto key = vm.view(u32(a[0]), u32(a[1]));
  auto value = vm.view(u32(a[2]), u32(a[3]));
  if (!key || !value) return r(R::kInvalidMemoryAccess);
  return r(SharedData::instance().set(plugin(vm).spec().vm_id, *key, *value, u32(a[4])));
}

// ---- metrics ----

uint64_t proxyDefineMetric(Vm& vm, const uint64_t* a) {
  if (a[0] > static_cast<uint32_t>(MetricType::kHistogram)) return r(R::kBadArgument);
  auto name = guestString(vm, a[1], a[2]);
  if (!name || !vm.view(u32(a[3]), 4)) return r(R::kInvalidMemoryAccess);
  uint32_t id = 0;
  const WasmResult result = plugin(vm).defineMetric(u32(a[0]), *name, &id);
  if (result != R::kOk) return r(result);
  return r(vm.writeU32(u32(a[3]), id) ? R::kOk : R::kInvalidMemoryAccess);
}

uint64_t proxyIncrementMetric(Vm& vm, const uint64_t* a) {
  return r(plugin(vm).incrementMetric(u32(a[0]), static_cast<int64_t>(a[1])));
}
uint64_t proxyRecordMetric(Vm& vm, const uint64_t* a) {
  return r(plugin(vm).recordMetric(u32(a[0]), a[1]));
}
uint64_t proxyGetMetric(Vm& vm, const uint64_t* a) {
  if (!vm.view(u32(a[1]), 8)) return r(R::kInvalidMemoryAccess);
  uint64_t value = 0;
  const WasmResult result = plugin(vm).getMetric(u32(a[0]), &value);
  if (result != R::kOk) return r(result);
  return r(vm.writeU64(u32(a[1]), value) ? R::kOk : R::kInvalidMemoryAccess);
}

// ---- contexts and the not-yet-implemented ----

uint64_t proxySetEffectiveContext(Vm& vm, const uint64_t* a) {
  return r(plugin(vm).setEffectiveContext(u32(a[0])));
}

// ---- HTTP callouts ----

uint64_t proxyHttpCall(Vm& vm, const uint64_t* a) {
  auto cluster = guestString(vm, a[0], a[1]);
  auto headers_data = vm.view(u32(a[2]), u32(a[3]));
  if (!cluster || !headers_data) return r(R::kInvalidMemoryAccess);
  auto pairs = parsePairs(*headers_data);
  if (!pairs) return r(R::kBadArgument);
  http::HeaderMap headers;
  for (const auto& [k, v] : *pairs) headers.add(k, v);
  auto body = guestString(vm, a[4], a[5]);
  auto trailers = vm.view(u32(a[6]), u32(a[7]));
  if (!body || !trailers || !vm.view(u32(a[9]), 4)) return r(R::kInvalidMemoryAccess);
  if (!parsePairs(*trailers)) return r(R::kBadArgument);
  // Envoy needs the three pseudo-headers it builds the request line from.
  if (headers.get(":path") == nullptr || headers.get(":method") == nullptr ||
      (headers.get(":authority") == nullptr && headers.get("host") == nullptr)) {
    return r(R::kBadArgument);
  }
  uint32_t token = 0;
  const WasmResult result =
      plugin(vm).httpCall(*cluster, std::move(headers), std::move(*body), u32(a[8]), &token);
  if (result != R::kOk) return r(result);
  return r(vm.writeU32(u32(a[9]), token) ? R::kOk : R::kInvalidMemoryAccess);
}

uint64_t proxyGetStatus(Vm& vm, const uint64_t* a) {
  if (!vm.view(u32(a[0]), 4) || !vm.view(u32(a[1]), 4) || !vm.view(u32(a[2]), 4)) {
    return r(R::kInvalidMemoryAccess);
  }
  const std::string message = plugin(vm).statusMessage();
  vm.writeU32(u32(a[0]), plugin(vm).statusCode());
  return r(vm.copyOut(message, u32(a[1]), u32(a[2])));
}

// ---- shared queues ----

uint64_t proxyRegisterSharedQueue(Vm& vm, const uint64_t* a) {
  auto name = vm.view(u32(a[0]), u32(a[1]));
  if (!name || !vm.view(u32(a[2]), 4)) return r(R::kInvalidMemoryAccess);
  PluginVm& p = plugin(vm);
  const uint32_t id =
      SharedQueues::instance().registerQueue(p.spec().vm_id, *name, p.dispatcher(), p.aliveToken(), &p);
  if (p.dispatcher() != nullptr) p.markQueueOwner();
  return r(vm.writeU32(u32(a[2]), id) ? R::kOk : R::kInvalidMemoryAccess);
}

uint64_t proxyResolveSharedQueue(Vm& vm, const uint64_t* a) {
  auto vm_id = vm.view(u32(a[0]), u32(a[1]));
  auto name = vm.view(u32(a[2]), u32(a[3]));
  if (!vm_id || !name || !vm.view(u32(a[4]), 4)) return r(R::kInvalidMemoryAccess);
  const std::string_view owner = vm_id->empty() ? std::string_view(plugin(vm).spec().vm_id) : *vm_id;
  auto id = SharedQueues::instance().resolve(owner, *name);
  if (!id) return r(R::kNotFound);
  return r(vm.writeU32(u32(a[4]), *id) ? R::kOk : R::kInvalidMemoryAccess);
}

uint64_t proxyEnqueueSharedQueue(Vm& vm, const uint64_t* a) {
  auto data = vm.view(u32(a[1]), u32(a[2]));
  if (!data) return r(R::kInvalidMemoryAccess);
  return r(SharedQueues::instance().enqueue(u32(a[0]), *data));
}

uint64_t proxyDequeueSharedQueue(Vm& vm, const uint64_t* a) {
  if (!vm.view(u32(a[1]), 4) || !vm.view(u32(a[2]), 4)) return r(R::kInvalidMemoryAccess);
  std::string data;
  const WasmResult result = SharedQueues::instance().dequeue(u32(a[0]), &data);
  if (result != R::kOk) return r(result);
  return r(vm.copyOut(data, u32(a[1]), u32(a[2])));
}
uint64_t proxyDone(Vm&, const uint64_t*) {
  return r(R::kNotFound);
}
// (name, name_size, args, args_size, results*, results_size*): results written unless their pointer is 0.
uint64_t proxyCallForeignFunction(Vm& vm, const uint64_t* a) {
  // Views, not copies (args can be a whole body to compress): nothing runs guest code before copyOut, and
  // the foreign function is done with them by then.
  auto name = vm.view(u32(a[0]), u32(a[1]));
  auto args = vm.view(u32(a[2]), u32(a[3]));
  if (!name || !args) return r(R::kInvalidMemoryAccess);
  const uint32_t results = u32(a[4]), results_size = u32(a[5]);
  if ((results != 0 && !vm.view(results, 4)) || (results_size != 0 && !vm.view(results_size, 4))) {
    return r(R::kInvalidMemoryAccess);
  }
  std::string out;
  const WasmResult result = callForeignFunction(plugin(vm), *name, *args, &out);
  if (result != R::kOk) return r(result);
  if (results != 0 && results_size != 0) return r(vm.copyOut(out, results, results_size));
  if (results_size != 0 && !vm.writeU32(results_size, static_cast<uint32_t>(out.size()))) {
    return r(R::kInvalidMemoryAccess);
  }
  return r(R::kOk);
}
// ---- gRPC callouts ----

// The common arguments of proxy_grpc_call / proxy_grpc_stream: service, service name, method, metadata.
WasmResult grpcRequest(Vm& vm, const uint64_t* a, GrpcRequest* out) {
  auto service = guestString(vm, a[0], a[1]);
  auto service_name = guestString(vm, a[2], a[3]);
  auto method = guestString(vm, a[4], a[5]);
  auto metadata = vm.view(u32(a[6]), u32(a[7]));
  if (!service || !service_name || !method || !metadata) return R::kInvalidMemoryAccess;
  auto pairs = parsePairs(*metadata);
  if (!pairs) return R::kBadArgument;
  out->service = std::move(*service);
  out->service_name = std::move(*service_name);
  out->method = std::move(*method);
  for (const auto& [k, v] : *pairs) out->initial_metadata.emplace_back(k, v);
  return R::kOk;
}

uint64_t proxyGrpcCall(Vm& vm, const uint64_t* a) {
  GrpcRequest request;
  if (const WasmResult result = grpcRequest(vm, a, &request); result != R::kOk) return r(result);
  auto message = guestString(vm, a[8], a[9]);
  if (!message || !vm.view(u32(a[11]), 4)) return r(R::kInvalidMemoryAccess);
  request.message = std::move(*message);
  request.timeout = std::chrono::milliseconds(u32(a[10]));
  uint32_t token = 0;
  const WasmResult result = plugin(vm).grpcCall(std::move(request), &token);
  if (result != R::kOk) return r(result);
  return r(vm.writeU32(u32(a[11]), token) ? R::kOk : R::kInvalidMemoryAccess);
}

uint64_t proxyGrpcStream(Vm& vm, const uint64_t* a) {
  GrpcRequest request;
  if (const WasmResult result = grpcRequest(vm, a, &request); result != R::kOk) return r(result);
  if (!vm.view(u32(a[8]), 4)) return r(R::kInvalidMemoryAccess);
  uint32_t token = 0;
  const WasmResult result = plugin(vm).grpcCall(std::move(request), &token);
  if (result != R::kOk) return r(result);
  return r(vm.writeU32(u32(a[8]), token) ? R::kOk : R::kInvalidMemoryAccess);
}

uint64_t proxyGrpcSend(Vm& vm, const uint64_t* a) {
  auto message = guestString(vm, a[1], a[2]);
  if (!message) return r(R::kInvalidMemoryAccess);
  return r(plugin(vm).grpcSend(u32(a[0]), std::move(*message), u32(a[3]) != 0));
}

uint64_t proxyGrpcCancel(Vm& vm, const uint64_t* a) {
  return r(plugin(vm).grpcCancel(u32(a[0])));
}

uint64_t proxyGrpcClose(Vm& vm, const uint64_t* a) {
  return r(plugin(vm).grpcClose(u32(a[0])));
}
uint64_t pthreadEqual(Vm&, const uint64_t* a) {
  return u32(a[0]) == u32(a[1]) ? 1 : 0;
}
uint64_t noop(Vm&, const uint64_t*) {
  return 0;
}

// ---- WASI ----

uint64_t fdWrite(Vm& vm, const uint64_t* a) {
  const uint32_t fd = u32(a[0]), iovs = u32(a[1]), count = u32(a[2]);
  if (fd != 1 && fd != 2) return wasi::kBadF;
  std::string text;
  for (uint32_t i = 0; i < count; ++i) {
    const uint64_t at = uint64_t{iovs} + uint64_t{i} * 8;
    if (at + 8 > UINT32_MAX) return wasi::kFault;
    auto iov = vm.view(static_cast<uint32_t>(at), 8);
    if (!iov) return wasi::kFault;
    uint32_t ptr, len;
    std::memcpy(&ptr, iov->data(), 4);
    std::memcpy(&len, iov->data() + 4, 4);
    auto chunk = vm.view(ptr, len);
    if (!chunk) return wasi::kFault;
    text.append(*chunk);
  }
  if (!vm.writeU32(u32(a[3]), static_cast<uint32_t>(text.size()))) return wasi::kFault;
  if (!text.empty() && text.back() == '\n') text.pop_back();
  plugin(vm).logLine(fd == 1 ? 2 : 4, text);
  return wasi::kSuccess;
}

uint64_t fdRead(Vm&, const uint64_t*) {
  return wasi::kNoSys;
}
uint64_t fdSeek(Vm& vm, const uint64_t*) {
  plugin(vm).logLine(4, "fd_seek is not supported");
  return wasi::kSuccess;
}
uint64_t fdClose(Vm& vm, const uint64_t*) {
  plugin(vm).logLine(4, "fd_close is not supported");
  return wasi::kSuccess;
}
uint64_t fdFdstatGet(Vm& vm, const uint64_t* a) {
  if (u32(a[0]) != 1 && u32(a[0]) != 2) return wasi::kBadF;
  uint8_t stat[24] = {};
  stat[8] = 64;  // fs_rights_base = FD_WRITE
  return vm.write(u32(a[1]), stat, sizeof(stat)) ? wasi::kSuccess : wasi::kFault;
}

uint64_t environSizesGet(Vm& vm, const uint64_t* a) {
  const auto& env = plugin(vm).spec().environment;
  uint32_t size = 0;
  for (const auto& [k, v] : env) size += static_cast<uint32_t>(k.size() + v.size() + 2);
  if (!vm.writeU32(u32(a[0]), static_cast<uint32_t>(env.size())) || !vm.writeU32(u32(a[1]), size)) {
    return wasi::kFault;
  }
  return wasi::kSuccess;
}

uint64_t environGet(Vm& vm, const uint64_t* a) {
  uint32_t ptrs = u32(a[0]), buf = u32(a[1]);
  for (const auto& [k, v] : plugin(vm).spec().environment) {
    const std::string entry = k + "=" + v;
    if (!vm.writeU32(ptrs, buf) || !vm.write(buf, entry.c_str(), static_cast<uint32_t>(entry.size() + 1))) {
      return wasi::kFault;
    }
    ptrs += 4;
    buf += static_cast<uint32_t>(entry.size() + 1);
  }
  return wasi::kSuccess;
}

uint64_t argsSizesGet(Vm& vm, const uint64_t* a) {
  return vm.writeU32(u32(a[0]), 0) && vm.writeU32(u32(a[1]), 0) ? wasi::kSuccess : wasi::kFault;
}
uint64_t argsGet(Vm&, const uint64_t*) {
  return wasi::kSuccess;
}

uint64_t clockTimeGet(Vm& vm, const uint64_t* a) {
  uint64_t ns;
  switch (u32(a[0])) {
    case 0:
      ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
               .count();
      break;
    case 1:
      ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
               .count();
      break;
    default:
      return wasi::kNotSup;
  }
  return vm.writeU64(u32(a[2]), ns) ? wasi::kSuccess : wasi::kFault;
}

uint64_t randomGet(Vm& vm, const uint64_t* a) {
  const uint32_t len = u32(a[1]);
  if (len > 65536) return wasi::kInval;
  if (len == 0) return wasi::kSuccess;
  if (!vm.view(u32(a[0]), len)) return wasi::kFault;
  // OpenSSL's DRBG, drawn 4 KiB at a time per thread: one RAND_bytes per request is a visible cost.
  thread_local unsigned char pool[4096];
  thread_local uint32_t left = 0;
  uint32_t at = u32(a[0]), need = len;
  while (need > 0) {
    if (left == 0) {
      if (RAND_bytes(pool, sizeof(pool)) != 1) return wasi::kInval;
      left = sizeof(pool);
    }
    const uint32_t n = std::min(need, left);
    if (!vm.write(at, pool + sizeof(pool) - left, n)) return wasi::kFault;
    std::memset(pool + sizeof(pool) - left, 0, n);  // handed out once
    left -= n;
    at += n;
    need -= n;
  }
  return wasi::kSuccess;
}

// Envoy logs proc_exit and returns to the guest (TinyGo/Rust start-up code may call it).
uint64_t procExit(Vm& vm, const uint64_t* a) {
  plugin(vm).logLine(4, "proc_exit(" + std::to_string(u32(a[0])) + ") called; ignored");
  return 0;
}
uint64_t pathOpen(Vm&, const uint64_t*) {
  return wasi::kNoEnt;
}
uint64_t fdPrestatGet(Vm&, const uint64_t*) {
  return wasi::kBadF;
}
uint64_t fdPrestatDirName(Vm&, const uint64_t*) {
  return wasi::kNoSys;
}

constexpr uint32_t k010 = abiBit(AbiVersion::k0_1_0);
constexpr uint32_t k02x = abiBit(AbiVersion::k0_2_0) | abiBit(AbiVersion::k0_2_1);
constexpr uint32_t k021 = abiBit(AbiVersion::k0_2_1);
constexpr const char* kEnv = "env";
constexpr const char* kWasi = "wasi_snapshot_preview1";

const HostFunction kHostFunctions[] = {
    {kEnv, "proxy_log", proxyLog, 3, 0, true, 0},
    {kEnv, "proxy_get_log_level", proxyGetLogLevel, 1, 0, true, k021},
    {kEnv, "proxy_get_current_time_nanoseconds", proxyGetCurrentTime, 1, 0, true, 0},
    {kEnv, "proxy_set_tick_period_milliseconds", proxySetTickPeriod, 1, 0, true, 0},
    {kEnv, "proxy_get_property", proxyGetProperty, 4, 0, true, 0},
    {kEnv, "proxy_set_property", proxySetProperty, 4, 0, true, 0},
    {kEnv, "proxy_get_header_map_value", proxyGetHeaderMapValue, 5, 0, true, 0},
    {kEnv, "proxy_add_header_map_value", proxyAddHeaderMapValue, 5, 0, true, 0},
    {kEnv, "proxy_replace_header_map_value", proxyReplaceHeaderMapValue, 5, 0, true, 0},
    {kEnv, "proxy_remove_header_map_value", proxyRemoveHeaderMapValue, 3, 0, true, 0},
    {kEnv, "proxy_get_header_map_pairs", proxyGetHeaderMapPairs, 3, 0, true, 0},
    {kEnv, "proxy_set_header_map_pairs", proxySetHeaderMapPairs, 3, 0, true, 0},
    {kEnv, "proxy_get_header_map_size", proxyGetHeaderMapSize, 2, 0, true, 0},
    {kEnv, "proxy_get_buffer_status", proxyGetBufferStatus, 3, 0, true, 0},
    {kEnv, "proxy_get_buffer_bytes", proxyGetBufferBytes, 5, 0, true, 0},
    {kEnv, "proxy_set_buffer_bytes", proxySetBufferBytes, 5, 0, true, 0},
    {kEnv, "proxy_get_configuration", proxyGetConfiguration, 2, 0, true, k010},
    {kEnv, "proxy_continue_stream", proxyContinueStream, 1, 0, true, k02x},
    {kEnv, "proxy_close_stream", proxyCloseStream, 1, 0, true, k02x},
    {kEnv, "proxy_continue_request", proxyContinueRequest, 0, 0, true, k010},
    {kEnv, "proxy_continue_response", proxyContinueResponse, 0, 0, true, k010},
    {kEnv, "proxy_clear_route_cache", proxyClearRouteCache, 0, 0, true, k010},
    {kEnv, "proxy_send_local_response", proxySendLocalResponse, 8, 0, true, 0},
    {kEnv, "proxy_get_shared_data", proxyGetSharedData, 5, 0, true, 0},
    {kEnv, "proxy_set_shared_data", proxySetSharedData, 5, 0, true, 0},
    {kEnv, "proxy_define_metric", proxyDefineMetric, 4, 0, true, 0},
    {kEnv, "proxy_increment_metric", proxyIncrementMetric, 2, 0b10, true, 0},
    {kEnv, "proxy_record_metric", proxyRecordMetric, 2, 0b10, true, 0},
    {kEnv, "proxy_get_metric", proxyGetMetric, 2, 0, true, 0},
    {kEnv, "proxy_set_effective_context", proxySetEffectiveContext, 1, 0, true, 0},
    {kEnv, "proxy_done", proxyDone, 0, 0, true, 0},
    {kEnv, "proxy_call_foreign_function", proxyCallForeignFunction, 6, 0, true, 0},
    {kEnv, "proxy_http_call", proxyHttpCall, 10, 0, true, 0},
    {kEnv, "proxy_grpc_call", proxyGrpcCall, 12, 0, true, 0},
    {kEnv, "proxy_grpc_stream", proxyGrpcStream, 9, 0, true, 0},
    {kEnv, "proxy_grpc_send", proxyGrpcSend, 4, 0, true, 0},
    {kEnv, "proxy_grpc_cancel", proxyGrpcCancel, 1, 0, true, 0},
    {kEnv, "proxy_grpc_close", proxyGrpcClose, 1, 0, true, 0},
    {kEnv, "proxy_get_status", proxyGetStatus, 3, 0, true, 0},
    {kEnv, "proxy_register_shared_queue", proxyRegisterSharedQueue, 3, 0, true, 0},
    {kEnv, "proxy_resolve_shared_queue", proxyResolveSharedQueue, 5, 0, true, 0},
    {kEnv, "proxy_enqueue_shared_queue", proxyEnqueueSharedQueue, 3, 0, true, 0},
    {kEnv, "proxy_dequeue_shared_queue", proxyDequeueSharedQueue, 3, 0, true, 0},
    {kEnv, "pthread_equal", pthreadEqual, 2, 0, true, 0},
    {kEnv, "emscripten_notify_memory_growth", noop, 1, 0, false, 0},
    {kWasi, "fd_write", fdWrite, 4, 0, true, 0},
    {kWasi, "fd_read", fdRead, 4, 0, true, 0},
    {kWasi, "fd_seek", fdSeek, 4, 0b10, true, 0},
    {kWasi, "fd_close", fdClose, 1, 0, true, 0},
    {kWasi, "fd_fdstat_get", fdFdstatGet, 2, 0, true, 0},
    {kWasi, "environ_sizes_get", environSizesGet, 2, 0, true, 0},
    {kWasi, "environ_get", environGet, 2, 0, true, 0},
    {kWasi, "args_sizes_get", argsSizesGet, 2, 0, true, 0},
    {kWasi, "args_get", argsGet, 2, 0, true, 0},
    {kWasi, "clock_time_get", clockTimeGet, 3, 0b10, true, 0},
    {kWasi, "random_get", randomGet, 2, 0, true, 0},
    {kWasi, "proc_exit", procExit, 1, 0, false, 0},
    {kWasi, "path_open", pathOpen, 9, 0b1100000, true, 0},
    {kWasi, "fd_prestat_get", fdPrestatGet, 2, 0, true, 0},
    {kWasi, "fd_prestat_dir_name", fdPrestatDirName, 3, 0, true, 0},
};

}  // namespace

std::span<const HostFunction> hostFunctions() {
  return kHostFunctions;
}

}  // namespace skiff::wasm
