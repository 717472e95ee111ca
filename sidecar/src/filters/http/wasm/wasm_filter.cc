// The Wasm HTTP filter: per-worker VMs of a plugin config, and the stream context that maps filter
// callbacks to proxy_on_* calls and host functions to the stream.
#include "filters/http/wasm/wasm_filter.h"

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <chrono>
#include <cstring>
#include <utility>

#include "skiff/common/logging.h"
#include "wasm/property_encoding.h"

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

namespace skiff::filters::wasm {

using skiff::wasm::BufferType;
using skiff::wasm::Export;
using skiff::wasm::int64Bytes;
using skiff::wasm::MapType;
using skiff::wasm::PluginVm;
using skiff::wasm::portOf;
using skiff::wasm::StreamType;
using skiff::wasm::WasmResult;

namespace {
std::atomic<uint64_t> g_next_config_id{1};

// Phase timing reads the TSC on x86-64 (10 ns; a clock_gettime is 25: six reads per request), scaled by a
// rate measured once against steady_clock; elsewhere, steady_clock in nanoseconds.
#if defined(__x86_64__)
uint64_t ticks() {
  return __rdtsc();
}
double microsPerTick() {
  static const double rate = [] {
    using Clock = std::chrono::steady_clock;
    const auto t0 = Clock::now();
    const uint64_t c0 = __rdtsc();
    while (Clock::now() - t0 < std::chrono::milliseconds(2)) {
    }
    const auto t1 = Clock::now();
    const uint64_t c1 = __rdtsc();
    return c1 > c0 ? std::chrono::duration<double, std::micro>(t1 - t0).count() / static_cast<double>(c1 - c0)
                   : 0.0;
  }();
  return rate;
}
#else
uint64_t ticks() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
double microsPerTick() {
  return 1e-3;
}
#endif

void recordTime(const stats::Histogram& h, uint64_t start) {
  if (!h.valid()) return;
  const uint64_t now = ticks();
  h.record(now > start ? static_cast<uint64_t>(static_cast<double>(now - start) * microsPerTick()) : 0);
}
}  // namespace

// ---- config ----

WasmFilterConfig::WasmFilterConfig(std::shared_ptr<const skiff::wasm::PluginSpec> spec, stats::Store* stats,
                                   std::string load_error, const std::string& stat_prefix)
    : spec_(std::move(spec)), stats_(stats), load_error_(std::move(load_error)), id_(g_next_config_id++) {
  if (stats_ == nullptr) return;
  microsPerTick();  // measured once per process (2 ms), here rather than on a request
  static constexpr const char* kPhaseNames[] = {"request_headers",  "request_body",  "request_trailers",
                                                "response_headers", "response_body", "response_trailers",
                                                "stream_done"};
  static_assert(std::size(kPhaseNames) == static_cast<size_t>(Phase::kCount));
  const std::string& plugin = !spec_->name.empty()    ? spec_->name
                              : !spec_->vm_id.empty() ? spec_->vm_id
                                                      : "unnamed";
  for (size_t i = 0; i < std::size(kPhaseNames); ++i) {
    phase_time_[i] = stats_->histogram(stat_prefix + "wasm." + plugin + "." + kPhaseNames[i] + "_us",
                                       stats::Histogram::Unit::kMicroseconds);
  }
  vm_failed_ = stats_->counter(stat_prefix + "wasm." + plugin + ".vm_failed");
  execution_timeout_ = stats_->counter(stat_prefix + "wasm." + plugin + ".execution_timeout");
}

void WasmFilterConfig::countFailure(PluginVm& vm) const {
  if (!vm.claimFailure() || stats_ == nullptr) return;
  vm_failed_.inc();
  if (vm.vm().timedOut()) execution_timeout_.inc();
}

WasmFilterConfig::~WasmFilterConfig() {
  // A worker's VM with work pending on its loop (tick, callouts, a queue it owns) is destroyed on that
  // worker, where the handlers run; the others can go here, nothing else uses them once the config is gone.
  for (auto& [thread, slot] : slots_) {
    if (slot->vm && slot->vm->bound() && slot->vm->dispatcherAlive()) {
      // The loop is read before the VM is moved into the handler: argument order is unspecified.
      asio::io_context& loop = *slot->vm->dispatcher();
      asio::post(loop, [vm = std::move(slot->vm)]() mutable { vm.reset(); });
    }
  }
}

void WasmFilterConfig::createFilters(http::FilterChainBuilder& builder) const {
  if (bypassed()) return;  // fail-open plugin whose module could not be loaded
  builder.addStreamFilter(std::make_unique<WasmFilter>(shared_from_this()));
}

WasmFilterConfig::Slot& WasmFilterConfig::workerSlot() const {
  // A per-thread cache keeps the lock off the request path, the last config this thread asked for first
  // (one Wasm filter per chain is the usual case); config ids are never reused, so entries of dead
  // configs are never looked up again.
  thread_local uint64_t last_id = 0;
  thread_local Slot* last_slot = nullptr;
  if (last_id == id_) return *last_slot;
  thread_local std::unordered_map<uint64_t, Slot*> cache;
  auto it = cache.find(id_);
  if (it == cache.end()) {
    std::lock_guard<std::mutex> lock(mu_);
    auto& slot = slots_[std::this_thread::get_id()];
    if (!slot) slot = std::make_unique<Slot>();
    it = cache.emplace(id_, slot.get()).first;
  }
  last_id = id_;
  last_slot = it->second;
  return *last_slot;
}

std::shared_ptr<PluginVm> WasmFilterConfig::workerVm(http::StreamCallbacks& callbacks) const {
  Slot& slot = workerSlot();
  if (slot.vm && !slot.vm->failed()) return slot.vm;
  if (slot.vm) {
    countFailure(*slot.vm);
    SKIFF_LOG(kWasm, warn, "wasm plugin {}: replacing the failed VM", spec_->name);
  }
  std::string error;
  std::unique_ptr<PluginVm> vm = PluginVm::create(spec_, stats_, &callbacks.dispatcher(), &error);
  if (!vm) {
    SKIFF_LOG(kWasm, err, "wasm plugin {}: cannot start the VM: {}", spec_->name, error);
    slot.vm.reset();
    return nullptr;
  }
  // Only a module that can take callout answers gets the worker's clusters (root contexts call out too,
  // e.g. from proxy_on_tick). Calls made while the VM starts are refused (InternalFailure).
  if (vm->wantsCalloutSender()) vm->setCalloutSender(makeCalloutSender(callbacks));
  SKIFF_LOG(kWasm, info, "wasm plugin {}: VM started on this worker", spec_->name);
  slot.vm = std::move(vm);
  return slot.vm;
}

// ---- filter ----

WasmFilter::WasmFilter(std::shared_ptr<const WasmFilterConfig> config) : config_(std::move(config)) {}

WasmFilter::~WasmFilter() {
  onDestroy();
}

http::StreamCallbacks& WasmFilter::callbacks() const {
  if (decoder_ != nullptr) return *decoder_;
  return *encoder_;
}

void WasmFilter::onFailure() {
  const std::string why = vm_ ? vm_->vm().error() : std::string("the VM could not be started");
  if (vm_) config_->countFailure(*vm_);
  SKIFF_LOG(kWasm, err, "wasm plugin {}: {}", config_->spec().name, why);
  if (config_->failOpen()) {
    bypass_ = true;
    return;
  }
  bypass_ = true;  // nothing more of this stream goes to the plugin
  responded_ = true;
  if (response_headers_ != nullptr) {
    // The response is already under way: too late for a 503, the stream is reset (as Envoy does).
    callbacks().streamInfo().response_code_details = "wasm_fail_stream";
    callbacks().resetStream();
    return;
  }
  callbacks().sendLocalReply(503, "", "wasm_fail_stream");
}

bool WasmFilter::ensureContext() {
  if (context_id_ != 0) return true;
  vm_ = config_->workerVm(callbacks());
  if (vm_) context_id_ = vm_->createStreamContext(this);
  if (context_id_ == 0) {
    onFailure();
    return false;
  }
  return true;
}

std::optional<uint32_t> WasmFilter::run(Export e, Phase phase, uint32_t a, uint32_t b, bool request) {
  if (bypass_ || destroyed_) return std::nullopt;
  const uint64_t start = ticks();
  if (!ensureContext()) return std::nullopt;
  // Extra arguments are ignored by callbacks that take fewer (trailers; 0.1.0 headers).
  auto result = vm_->callStream(this, e, {context_id_, a, b});
  recordTime(config_->phaseTime(phase), start);
  if (!result && vm_->failed()) {
    onFailure();
    return std::nullopt;
  }
  if (afterCall(request)) return std::nullopt;
  return result.value_or(0);
}

bool WasmFilter::afterCall(bool request) {
  if (reply_) {
    LocalReply reply = std::move(*reply_);
    reply_.reset();
    responded_ = true;
    callbacks().sendLocalReply(reply.status, reply.body,
                               reply.details.empty() ? "wasm_local_reply" : reply.details,
                               [&reply](http::HeaderMap& h) {
                                 for (const auto& [k, v] : reply.headers) h.add(k, v);
                               });
    return true;
  }
  if (close_) {
    close_ = false;
    callbacks().streamInfo().response_code_details = "wasm_close_stream";
    callbacks().resetStream();
    responded_ = true;
    return true;
  }
  return false;
}

http::HeadersStatus WasmFilter::decodeHeaders(http::HeaderMap& headers, bool end_stream) {
  request_headers_ = &headers;
  auto r = run(Export::kOnRequestHeaders, Phase::kRequestHeaders, static_cast<uint32_t>(headers.size()),
               end_stream ? 1u : 0u, true);
  if (responded_) return http::HeadersStatus::kStop;
  // 2 (ContinueAndEndStream) behaves as Continue, as in Envoy; any other non-zero status stops.
  if (!r || *r == 0 || *r == 2 || continue_request_) {
    continue_request_ = false;
    return http::HeadersStatus::kContinue;
  }
  decode_stopped_ = true;
  return http::HeadersStatus::kStop;
}

http::DataStatus WasmFilter::decodeData(http::Buffer& data, bool end_stream) {
  // The plugin sees everything it held so far plus this chunk, as one body (Envoy's buffered body).
  http::Buffer* held = decoder_ != nullptr ? decoder_->decodingBuffer() : nullptr;
  request_body_ = &data;
  if (held != nullptr && !held->empty()) {
    held->append(data);
    data.clear();
    request_body_ = held;
  }
  auto r = run(Export::kOnRequestBody, Phase::kRequestBody, static_cast<uint32_t>(request_body_->size()),
               end_stream ? 1u : 0u, true);
  request_body_ = nullptr;
  if (responded_) return http::DataStatus::kStopAndBuffer;
  if (!r || *r == 0 || continue_request_) {
    continue_request_ = false;
    return http::DataStatus::kContinue;
  }
  decode_stopped_ = true;
  return *r == 2 ? http::DataStatus::kStopAndWatermark : http::DataStatus::kStopAndBuffer;
}

http::TrailersStatus WasmFilter::decodeTrailers(http::HeaderMap& trailers) {
  request_trailers_ = &trailers;
  auto r = run(Export::kOnRequestTrailers, Phase::kRequestTrailers, static_cast<uint32_t>(trailers.size()), 0,
               true);
  if (responded_) return http::TrailersStatus::kStop;
  if (!r || *r == 0 || continue_request_) {
    continue_request_ = false;
    return http::TrailersStatus::kContinue;
  }
  decode_stopped_ = true;
  return http::TrailersStatus::kStop;
}

http::HeadersStatus WasmFilter::encodeHeaders(http::HeaderMap& headers, bool end_stream) {
  response_headers_ = &headers;
  if (responded_ || context_id_ == 0) return http::HeadersStatus::kContinue;  // our own local reply
  auto r = run(Export::kOnResponseHeaders, Phase::kResponseHeaders, static_cast<uint32_t>(headers.size()),
               end_stream ? 1u : 0u, false);
  if (responded_) return http::HeadersStatus::kStop;
  if (!r || *r == 0 || *r == 2 || continue_response_) {
    continue_response_ = false;
    return http::HeadersStatus::kContinue;
  }
  encode_stopped_ = true;
  return http::HeadersStatus::kStop;
}

http::DataStatus WasmFilter::encodeData(http::Buffer& data, bool end_stream) {
  if (responded_ || context_id_ == 0) return http::DataStatus::kContinue;
  http::Buffer* held = encoder_ != nullptr ? encoder_->encodingBuffer() : nullptr;
  response_body_ = &data;
  if (held != nullptr && !held->empty()) {
    held->append(data);
    data.clear();
    response_body_ = held;
  }
  auto r = run(Export::kOnResponseBody, Phase::kResponseBody, static_cast<uint32_t>(response_body_->size()),
               end_stream ? 1u : 0u, false);
  response_body_ = nullptr;
  if (responded_) return http::DataStatus::kStopAndBuffer;
  if (!r || *r == 0 || continue_response_) {
    continue_response_ = false;
    return http::DataStatus::kContinue;
  }
  encode_stopped_ = true;
  return *r == 2 ? http::DataStatus::kStopAndWatermark : http::DataStatus::kStopAndBuffer;
}

http::TrailersStatus WasmFilter::encodeTrailers(http::HeaderMap& trailers) {
  response_trailers_ = &trailers;
  if (responded_ || context_id_ == 0) return http::TrailersStatus::kContinue;
  auto r = run(Export::kOnResponseTrailers, Phase::kResponseTrailers, static_cast<uint32_t>(trailers.size()),
               0, false);
  if (responded_) return http::TrailersStatus::kStop;
  if (!r || *r == 0 || continue_response_) {
    continue_response_ = false;
    return http::TrailersStatus::kContinue;
  }
  encode_stopped_ = true;
  return http::TrailersStatus::kStop;
}

void WasmFilter::onDestroy() {
  if (destroyed_) return;
  destroyed_ = true;
  if (vm_ && context_id_ != 0 && !vm_->failed()) {
    const uint64_t start = ticks();
    // Envoy runs the access-log callback, then done/delete, when the stream ends.
    vm_->callStream(this, Export::kOnLog, {context_id_});
    auto done = vm_->callStream(this, Export::kOnDone, {context_id_});
    if (!done || *done != 0 || !vm_->vm().hasExport(Export::kOnDone)) {
      vm_->callStream(this, Export::kOnDelete, {context_id_});
    }
    recordTime(config_->phaseTime(Phase::kStreamDone), start);
    if (vm_->failed()) SKIFF_LOG(kWasm, err, "wasm plugin {}: {}", config_->spec().name, vm_->vm().error());
  }
  if (vm_ && context_id_ != 0) vm_->detachStream(context_id_);
  request_headers_ = request_trailers_ = response_headers_ = response_trailers_ = nullptr;
  vm_.reset();
}

// ---- StreamContext ----

http::HeaderMap* WasmFilter::headerMap(MapType type) {
  switch (type) {
    case MapType::kRequestHeaders:
      return request_headers_;
    case MapType::kRequestTrailers:
      return request_trailers_;
    case MapType::kResponseHeaders:
      return response_headers_;
    case MapType::kResponseTrailers:
      return response_trailers_;
    default:
      return nullptr;
  }
}

http::Buffer* WasmFilter::buffer(BufferType type) {
  // The body being delivered, or everything buffered so far when the plugin held it (StopAndBuffer).
  if (type == BufferType::kHttpRequestBody) {
    if (request_body_ != nullptr) return request_body_;
    return decoder_ != nullptr ? decoder_->decodingBuffer() : nullptr;
  }
  if (type == BufferType::kHttpResponseBody) {
    if (response_body_ != nullptr) return response_body_;
    return encoder_ != nullptr ? encoder_->encodingBuffer() : nullptr;
  }
  return nullptr;
}

void WasmFilter::sendLocalResponse(uint32_t status, std::string_view details, std::string_view body,
                                   std::vector<std::pair<std::string, std::string>> headers) {
  reply_ = LocalReply{status, std::string(details), std::string(body), std::move(headers)};
}

WasmResult WasmFilter::continueStream(StreamType type) {
  // From a root callback, continuing at once could run this filter (and re-enter the guest) inside the
  // guest's own host call; Envoy defers it until the callback returns, and so do we (afterRootCall).
  const bool defer = vm_ && vm_->inRootCallback();
  switch (type) {
    case StreamType::kRequest:
      if (defer) {
        deferred_continue_request_ = true;
      } else if (decode_stopped_ && decoder_ != nullptr) {
        decode_stopped_ = false;
        decoder_->continueDecoding();
      } else {
        continue_request_ = true;
      }
      return WasmResult::kOk;
    case StreamType::kResponse:
      if (defer) {
        deferred_continue_response_ = true;
      } else if (encode_stopped_ && encoder_ != nullptr) {
        encode_stopped_ = false;
        encoder_->continueEncoding();
      } else {
        continue_response_ = true;
      }
      return WasmResult::kOk;
    case StreamType::kDownstream:
      return WasmResult::kOk;
    case StreamType::kUpstream:
      return WasmResult::kUnimplemented;
  }
  return WasmResult::kBadArgument;
}

void WasmFilter::afterRootCall() {
  const bool continue_request = std::exchange(deferred_continue_request_, false);
  const bool continue_response = std::exchange(deferred_continue_response_, false);
  if (destroyed_ || responded_) return;
  const bool request = response_headers_ == nullptr;
  if (afterCall(request)) return;
  if (continue_request) continueStream(StreamType::kRequest);
  if (!destroyed_ && !responded_ && continue_response) continueStream(StreamType::kResponse);
}

void WasmFilter::onVmFailure() {
  if (destroyed_ || bypass_ || responded_) return;
  onFailure();
  if (responded_) return;
  // Fail-open: whatever the plugin held goes on untouched.
  if (decode_stopped_ && decoder_ != nullptr) {
    decode_stopped_ = false;
    decoder_->continueDecoding();
  }
  if (encode_stopped_ && encoder_ != nullptr) {
    encode_stopped_ = false;
    encoder_->continueEncoding();
  }
}

WasmResult WasmFilter::closeStream(StreamType type) {
  close_ = true;
  return WasmResult::kOk;
}

WasmResult WasmFilter::setProperty(std::string_view path, std::string_view value) {
  return set_properties_.set(path, value) ? WasmResult::kOk : WasmResult::kBadArgument;
}

std::optional<std::string> WasmFilter::property(const std::vector<std::string_view>& path) {
  if (const std::string* set = set_properties_.find(path)) return *set;
  if (path.size() < 2 && !(path.size() == 1 && path[0] == "connection_id")) return std::nullopt;
  http::StreamInfo& info = callbacks().streamInfo();
  const std::string_view top = path[0];
  if (top == "connection_id") return int64Bytes(static_cast<int64_t>(info.connection_id));
  const std::string_view field = path[1];
  if (top == "request") {
    const http::HeaderMap* h = request_headers_;
    if (field == "headers" && path.size() == 3 && h != nullptr) {
      if (h->count(path[2]) == 0) return std::nullopt;
      return h->getJoined(path[2]);
    }
    if (field == "time") {
      return int64Bytes(
          std::chrono::duration_cast<std::chrono::nanoseconds>(info.start_time.time_since_epoch()).count());
    }
    if (field == "protocol") return std::string(info.protocol);
    if (field == "duration") {
      return int64Bytes(std::chrono::duration_cast<std::chrono::nanoseconds>(info.elapsed()).count());
    }
    if (field == "size") return int64Bytes(static_cast<int64_t>(info.bytes_received));
    if (h == nullptr) return std::nullopt;
    auto header = [&](std::string_view name) -> std::optional<std::string> {
      const std::string* v = h->get(name);
      if (v == nullptr) return std::nullopt;
      return *v;
    };
    if (field == "path") return header(":path");
    if (field == "method") return header(":method");
    if (field == "scheme") return header(":scheme");
    if (field == "host") return header(":authority");
    if (field == "referer") return header("referer");
    if (field == "useragent") return header("user-agent");
    if (field == "id") return header("x-request-id");
    if (field == "url_path" || field == "query") {
      const std::string* p = h->get(":path");
      if (p == nullptr) return std::nullopt;
      const size_t q = p->find('?');
      if (field == "url_path") return p->substr(0, q);
      return q == std::string::npos ? std::string() : p->substr(q + 1);
    }
    return std::nullopt;
  }
  if (top == "response") {
    if (field == "code") {
      int64_t code = info.response_code;
      if (code == 0 && response_headers_ != nullptr) {
        const std::string* s = response_headers_->get(":status");
        if (s != nullptr) code = std::atoi(s->c_str());
      }
      if (code == 0) return std::nullopt;
      return int64Bytes(code);
    }
    if (field == "code_details") return info.response_code_details;
    if (field == "flags") return int64Bytes(info.response_flags);
    if (field == "size") return int64Bytes(static_cast<int64_t>(info.bytes_sent));
    if (field == "headers" && path.size() == 3 && response_headers_ != nullptr) {
      if (response_headers_->count(path[2]) == 0) return std::nullopt;
      return response_headers_->getJoined(path[2]);
    }
    return std::nullopt;
  }
  const bool source = top == "source", destination = top == "destination";
  if (source || destination) {
    const std::string& address = source ? info.downstream_remote_address : info.downstream_local_address;
    if (address.empty()) return std::nullopt;
    if (field == "address") return address;
    if (field == "port") {
      auto port = portOf(address);
      if (!port) return std::nullopt;
      return int64Bytes(*port);
    }
    return std::nullopt;
  }
  if (top == "connection") {
    if (field == "id") return int64Bytes(static_cast<int64_t>(info.connection_id));
    if (field == "requested_server_name") return info.requested_server_name;
    if (field == "mtls") return std::string(1, '\0');
    return std::nullopt;
  }
  if (top == "upstream" && field == "address" && !info.upstream_host.empty()) return info.upstream_host;
  if ((top == "xds" && field == "cluster_name") || (top == "cluster_name" && path.size() == 1)) {
    return info.upstream_cluster;
  }
  if (top == "xds" && field == "route_name") return info.route_name;
  return std::nullopt;
}

}  // namespace skiff::filters::wasm
