// ExtAuthzFilter: builds the check (CheckRequest or an HTTP request), waits for it without blocking the
// worker, and applies the verdict.
#include "filters/http/ext_authz/ext_authz.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <asio/ip/address.hpp>
#include <unordered_map>

#include "envoy/extensions/filters/http/ext_authz/v3/ext_authz.pb.h"
#include "envoy/service/auth/v3/external_auth.pb.h"
#include "skiff/common/logging.h"
#include "skiff/router/route_table.h"
#include "skiff/upstream/thread_local_cluster.h"

namespace skiff::filters::ext_authz {

namespace auth = envoy::service::auth::v3;
using http::DataStatus;
using http::HeadersStatus;
using http::TrailersStatus;

namespace {

constexpr std::string_view kPartialBodyHeader = "x-envoy-auth-partial-body";
constexpr std::string_view kHeadersToRemove = "x-envoy-auth-headers-to-remove";
constexpr std::string_view kFailureModeAllowedHeader = "x-envoy-auth-failure-mode-allowed";

// "1.2.3.4:80" / "[::1]:80" → SocketAddress; left empty when it does not parse.
void fillAddress(const std::string& text, envoy::config::core::v3::Address* out) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos) return;
  std::string ip = text.substr(0, colon);
  if (ip.size() >= 2 && ip.front() == '[' && ip.back() == ']') ip = ip.substr(1, ip.size() - 2);
  std::error_code ec;
  asio::ip::make_address(ip, ec);
  if (ec) return;
  auto* sa = out->mutable_socket_address();
  sa->set_address(ip);
  sa->set_port_value(static_cast<uint32_t>(std::strtoul(text.c_str() + colon + 1, nullptr, 10)));
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return std::string(s);
}

bool hopByHop(std::string_view name) {
  return name == http::headers::kContentLength || name == http::headers::kTransferEncoding ||
         name == http::headers::kConnection || name == http::headers::kKeepAlive ||
         name == http::headers::kUpgrade;
}

// Sets and removes query parameters of a request target.
std::string rewriteQuery(const std::string& path, const auth::OkHttpResponse& ok) {
  const size_t q = path.find('?');
  std::string base = path.substr(0, q);
  std::vector<std::pair<std::string, std::string>> params;
  if (q != std::string::npos) {
    std::string_view rest = std::string_view(path).substr(q + 1);
    while (!rest.empty()) {
      const size_t amp = rest.find('&');
      std::string_view item = rest.substr(0, amp);
      const size_t eq = item.find('=');
      params.emplace_back(std::string(item.substr(0, eq)),
                          eq == std::string_view::npos ? std::string() : std::string(item.substr(eq + 1)));
      if (amp == std::string_view::npos) break;
      rest.remove_prefix(amp + 1);
    }
  }
  for (const auto& key : ok.query_parameters_to_remove()) {
    std::erase_if(params, [&](const auto& p) { return p.first == key; });
  }
  for (const auto& qp : ok.query_parameters_to_set()) {
    bool found = false;
    for (auto& p : params) {
      if (p.first == qp.key()) {
        p.second = qp.value();
        found = true;
      }
    }
    if (!found) params.emplace_back(qp.key(), qp.value());
  }
  std::string out = base;
  for (size_t i = 0; i < params.size(); ++i) {
    out += i == 0 ? '?' : '&';
    out += params[i].first;
    if (!params[i].second.empty()) out += "=" + params[i].second;
  }
  return out;
}

}  // namespace

ExtAuthzFilter::~ExtAuthzFilter() {
  onDestroy();
}

void ExtAuthzFilter::onDestroy() {
  *alive_ = false;
  if (grpc_call_) {
    grpc_call_->cancel();
    grpc_call_.reset();
  }
  if (http_call_) {
    http_call_->cancel();
    http_call_.reset();
  }
}

HeadersStatus ExtAuthzFilter::decodeHeaders(http::HeaderMap& headers, bool end_stream) {
  bool disabled = false;
  const google::protobuf::Any* any =
      ext::perRouteConfig(decoder_->route(), config_->filter_name, kFilterName, kPerRouteTypeUrl, &disabled);
  if (any != nullptr && !disabled) {
    envoy::extensions::filters::http::ext_authz::v3::ExtAuthzPerRoute per_route;
    if (any->UnpackTo(&per_route)) {
      if (per_route.disabled()) {
        disabled = true;
      } else if (per_route.has_check_settings()) {
        const auto& cs = per_route.check_settings();
        for (const auto& [k, v] : cs.context_extensions()) context_extensions_.emplace_back(k, v);
        skip_buffering_ = cs.disable_request_body_buffering();
      }
    }
  }
  if (disabled) {
    state_ = State::kDone;
    return HeadersStatus::kContinue;
  }
  if (!enabled()) {
    config_->stats.disabled.inc();
    state_ = State::kDone;
    if (config_->deny_at_disable) {
      decoder_->streamInfo().setFlag(http::ResponseFlag::kUnauthorizedExternalService);
      decoder_->sendLocalReply(config_->status_on_error, "", "ext_authz_error");
      return HeadersStatus::kStop;
    }
    return HeadersStatus::kContinue;
  }
  resolveClusterStats();
  stopped_ = true;
  if (config_->with_request_body && !end_stream && !skip_buffering_) {
    state_ = State::kBuffering;
    return HeadersStatus::kStop;
  }
  in_decode_ = true;
  startCheck(false, nullptr);
  in_decode_ = false;
  return stopped_ ? HeadersStatus::kStop : HeadersStatus::kContinue;
}

DataStatus ExtAuthzFilter::decodeData(http::Buffer& data, bool end_stream) {
  if (state_ == State::kBuffering) {
    const http::Buffer* held = decoder_->decodingBuffer();
    const size_t total = (held ? held->size() : 0) + data.size();
    if (total > config_->max_request_bytes && !config_->allow_partial_message) {
      state_ = State::kDone;
      decoder_->sendLocalReply(413, "Payload Too Large", "request_payload_too_large");
      return DataStatus::kStopAndBuffer;
    }
    if (end_stream || total >= config_->max_request_bytes) {
      in_decode_ = true;
      startCheck(!end_stream || total > config_->max_request_bytes, &data);
      in_decode_ = false;
    }
  }
  return stopped_ ? DataStatus::kStopAndBuffer : DataStatus::kContinue;
}

TrailersStatus ExtAuthzFilter::decodeTrailers(http::HeaderMap&) {
  if (state_ == State::kBuffering) {
    in_decode_ = true;
    startCheck(false, nullptr);
    in_decode_ = false;
  }
  return stopped_ ? TrailersStatus::kStop : TrailersStatus::kContinue;
}

HeadersStatus ExtAuthzFilter::encodeHeaders(http::HeaderMap& headers, bool) {
  for (const auto& [k, v] : response_headers_to_set_) headers.set(k, v);
  for (const auto& [k, v] : response_headers_to_add_) headers.add(k, v);
  return HeadersStatus::kContinue;
}

// ---- the check ----

void ExtAuthzFilter::startCheck(bool partial, const http::Buffer* chunk) {
  state_ = State::kCalling;
  std::string body;
  if (config_->with_request_body && !skip_buffering_) {
    if (const http::Buffer* held = decoder_->decodingBuffer()) body = *held;
    // From decodeData the current chunk joins the held buffer only after we return.
    if (chunk != nullptr) body += *chunk;
  }
  if (config_->max_request_bytes > 0 && body.size() > config_->max_request_bytes) {
    body.resize(config_->max_request_bytes);
    partial = true;
  }
  if (config_->grpc) {
    startGrpc(body, partial);
  } else {
    startHttp(body, partial);
  }
}

void ExtAuthzFilter::startGrpc(const std::string& body, bool partial) {
  const http::HeaderMap& headers = decoder_->requestHeaders();
  const http::StreamInfo& info = decoder_->streamInfo();
  auth::CheckRequest req;
  auto* attrs = req.mutable_attributes();
  fillAddress(info.downstream_remote_address, attrs->mutable_source()->mutable_address());
  fillAddress(info.downstream_local_address, attrs->mutable_destination()->mutable_address());
  auto* rq = attrs->mutable_request();
  *rq->mutable_time() = google::protobuf::util::TimeUtil::TimeTToTimestamp(
      std::chrono::system_clock::to_time_t(info.start_time));
  auto* h = rq->mutable_http();
  h->set_id(std::string(headers.getOr(http::headers::kRequestId)));
  h->set_method(std::string(headers.getOr(http::headers::kMethod)));
  h->set_path(std::string(headers.getOr(http::headers::kPath)));
  h->set_host(std::string(headers.getOr(http::headers::kAuthority)));
  h->set_scheme(std::string(headers.getOr(http::headers::kScheme)));
  h->set_protocol(std::string(info.protocol));
  const std::string* cl = headers.get(http::headers::kContentLength);
  h->set_size(cl ? std::strtoll(cl->c_str(), nullptr, 10)
                 : (body.empty() ? -1 : static_cast<int64_t>(body.size())));
  auto& map = *h->mutable_headers();
  for (const auto& [name, value] : headers) {
    if (name[0] != ':') {
      if (config_->has_allowed_headers && !config_->allowed_headers.matches(name)) continue;
      if (config_->disallowed_headers.matches(name)) continue;
    }
    auto [it, inserted] = map.try_emplace(name, value);
    if (!inserted) it->second += "," + value;
  }
  if (!body.empty() || config_->with_request_body) {
    if (config_->pack_as_bytes) {
      h->set_raw_body(body);
    } else {
      h->set_body(body);
    }
    if (config_->with_request_body) map[std::string(kPartialBodyHeader)] = partial ? "true" : "false";
  }
  for (const auto& [k, v] : context_extensions_) (*attrs->mutable_context_extensions())[k] = v;
  if (const auto& md = decoder_->streamInfo().dynamic_metadata; md) {
    for (const auto& ns : config_->metadata_context_namespaces) {
      if (auto it = md->filter_metadata().find(ns); it != md->filter_metadata().end()) {
        (*attrs->mutable_metadata_context()->mutable_filter_metadata())[ns] = it->second;
      }
    }
    for (const auto& ns : config_->typed_metadata_context_namespaces) {
      if (auto it = md->typed_filter_metadata().find(ns); it != md->typed_filter_metadata().end()) {
        (*attrs->mutable_metadata_context()->mutable_typed_filter_metadata())[ns] = it->second;
      }
    }
  }
  std::weak_ptr<bool> alive = alive_;
  auto& client = grpc::AsyncClient::forWorker(decoder_->dispatcher(), decoder_->clusterManager());
  grpc_call_ = client.unary(config_->service, kCheckMethod, req, config_->timeout,
                            [this, alive](const grpc::Status& status, std::string response) {
                              auto a = alive.lock();
                              if (!a || !*a) return;
                              grpc_call_.reset();
                              onGrpcResult(status, response);
                            });
}

void ExtAuthzFilter::onGrpcResult(const grpc::Status& status, const std::string& bytes) {
  auth::CheckResponse response;
  if (!status.ok() || !response.ParseFromString(bytes)) {
    SKIFF_LOG(kHttp, debug, "ext_authz: check via {} failed: {} {}", config_->service.describe(), status.code,
              status.message);
    onError();
    return;
  }
  // Dynamic metadata under the filter's namespace (the deprecated ok_response.dynamic_metadata wins).
  const google::protobuf::Struct* md = nullptr;
  if (response.ok_response().has_dynamic_metadata()) {
    md = &response.ok_response().dynamic_metadata();
  } else if (response.has_dynamic_metadata()) {
    md = &response.dynamic_metadata();
  }
  if (md != nullptr && !md->fields().empty() && config_->enable_dynamic_metadata_ingestion) {
    ext::mergeDynamicMetadata(decoder_->streamInfo(), std::string(kFilterName), *md);
  }
  if (response.status().code() != grpc::kOk) {
    const auto& denied = response.denied_response();
    uint32_t code = static_cast<uint32_t>(denied.status().code());
    if (code < 100 || code > 599) code = 403;
    http::HeaderMap headers;
    for (const auto& opt : denied.headers()) {
      std::string name = opt.header().key();
      http::toLowerInPlace(name);
      if (name.empty() || name[0] == ':' || hopByHop(name)) continue;
      const std::string value = ext::headerValue(opt.header().value(), opt.header().raw_value());
      if (opt.has_append() && opt.append().value()) {
        headers.add(name, value);
      } else {
        headers.set(name, value);
      }
    }
    deny(code, denied.body(), std::move(headers));
    return;
  }
  http::HeaderMap& rq = decoder_->requestHeaders();
  const auto& ok = response.ok_response();
  bool changed = false;
  for (const auto& opt : ok.headers()) {
    std::string name = opt.header().key();
    http::toLowerInPlace(name);
    const std::string value = ext::headerValue(opt.header().value(), opt.header().raw_value());
    bool append = opt.has_append() && opt.append().value();
    if (!opt.has_append() &&
        opt.append_action() == envoy::config::core::v3::HeaderValueOption::APPEND_IF_EXISTS_OR_ADD) {
      append = false;  // append defaults to false for ext_authz
    }
    if (!setHeader(rq, name, value, append)) return;
    changed = true;
  }
  for (const auto& name_raw : ok.headers_to_remove()) {
    std::string name = name_raw;
    http::toLowerInPlace(name);
    if (config_->decoder_rules.checkRemove(name) == ext::MutationChecker::Result::kAllow) {
      changed |= rq.remove(name) > 0;
    }
  }
  if (!ok.query_parameters_to_set().empty() || !ok.query_parameters_to_remove().empty()) {
    const std::string path(rq.getOr(http::headers::kPath));
    const std::string rewritten = rewriteQuery(path, ok);
    if (rewritten != path) {
      rq.set(http::headers::kPath, rewritten);
      changed = true;
    }
  }
  for (const auto& opt : ok.response_headers_to_add()) {
    std::string name = opt.header().key();
    http::toLowerInPlace(name);
    if (name.empty() || name[0] == ':') continue;
    const std::string value = ext::headerValue(opt.header().value(), opt.header().raw_value());
    if (opt.has_append() && !opt.append().value()) {
      response_headers_to_set_.set(name, value);
    } else {
      response_headers_to_add_.add(name, value);
    }
  }
  if (changed && config_->clear_route_cache) decoder_->clearRouteCache();
  allow();
}

void ExtAuthzFilter::startHttp(const std::string& body, bool partial) {
  const http::HeaderMap& client = decoder_->requestHeaders();
  http::HeaderMap h;
  h.add(http::headers::kMethod, client.getOr(http::headers::kMethod, "GET"));
  h.add(http::headers::kPath, config_->path_prefix + std::string(client.getOr(http::headers::kPath, "/")));
  h.add(http::headers::kAuthority, client.getOr(http::headers::kAuthority));
  h.add(http::headers::kScheme, client.getOr(http::headers::kScheme, "http"));
  for (const auto& [name, value] : client) {
    if (name[0] == ':' || name == http::headers::kHost || hopByHop(name)) continue;
    const bool wanted =
        name == "authorization" || (config_->has_allowed_headers && config_->allowed_headers.matches(name));
    if (wanted && !config_->disallowed_headers.matches(name)) h.add(name, value);
  }
  for (const auto& [k, v] : config_->headers_to_add) h.set(k, v);
  if (config_->with_request_body && !skip_buffering_) h.set(kPartialBodyHeader, partial ? "true" : "false");
  std::weak_ptr<bool> alive = alive_;
  HttpCallout::StartError error = HttpCallout::StartError::kNone;
  http_call_ = HttpCallout::start(
      CalloutTarget::of(*decoder_), decoder_->bufferLimit(), config_->http_cluster, std::move(h), body,
      config_->timeout,
      [this, alive](HttpCallout::Response response) {
        auto a = alive.lock();
        if (!a || !*a) return;
        http_call_.reset();
        onHttpResult(std::move(response));
      },
      &error);
  if (error != HttpCallout::StartError::kNone) {
    SKIFF_LOG(kHttp, debug, "ext_authz: cluster '{}' {}", config_->http_cluster,
              error == HttpCallout::StartError::kUnknownCluster ? "not found" : "has no healthy host");
    onError();
  }
}

void ExtAuthzFilter::onHttpResult(HttpCallout::Response response) {
  if (!response.headers) {
    onError();
    return;
  }
  const uint32_t status = static_cast<uint32_t>(
      std::strtoul(std::string(response.headers->getOr(http::headers::kStatus, "0")).c_str(), nullptr, 10));
  if (status >= 500 || status < 100) {
    onError();
    return;
  }
  if (status != 200) {
    http::HeaderMap headers;
    for (const auto& [name, value] : *response.headers) {
      if (name[0] == ':' || hopByHop(name)) continue;
      if (config_->has_allowed_client_headers) {
        // Envoy adds these to any allowed_client_headers list.
        const bool always =
            name == "www-authenticate" || name == "location" || name == "path" || name == "status";
        if (!always && !config_->allowed_client_headers.matches(name)) continue;
      } else if (name == http::headers::kHost) {
        continue;
      }
      headers.add(name, value);
    }
    deny(status, std::move(response.body), std::move(headers));
    return;
  }
  http::HeaderMap& rq = decoder_->requestHeaders();
  bool changed = false;
  for (const auto& [name, value] : *response.headers) {
    if (name[0] == ':' || hopByHop(name)) continue;
    if (config_->allowed_upstream_headers.matches(name)) {
      if (!setHeader(rq, name, value, false)) return;
      changed = true;
    }
    if (config_->allowed_upstream_headers_to_append.matches(name)) {
      if (!setHeader(rq, name, value, true)) return;
      changed = true;
    }
    if (config_->allowed_client_headers_on_success.matches(name)) response_headers_to_add_.add(name, value);
  }
  if (const std::string* remove = response.headers->get(kHeadersToRemove)) {
    std::string_view rest = *remove;
    while (!rest.empty()) {
      const size_t comma = rest.find(',');
      std::string name = trim(rest.substr(0, comma));
      http::toLowerInPlace(name);
      if (config_->decoder_rules.checkRemove(name) == ext::MutationChecker::Result::kAllow) {
        changed |= rq.remove(name) > 0;
      }
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  if (changed && config_->clear_route_cache) decoder_->clearRouteCache();
  allow();
}

// ---- verdicts ----

bool ExtAuthzFilter::setHeader(http::HeaderMap& headers, const std::string& name, const std::string& value,
                               bool append) {
  const auto r = config_->decoder_rules.checkSet(name, value);
  if (r == ext::MutationChecker::Result::kAllow) {
    if (append) {
      headers.add(name, value);
    } else {
      headers.set(name, value);
    }
    return true;
  }
  if (r == ext::MutationChecker::Result::kError || config_->validate_mutations) {
    config_->stats.invalid.inc();
    chargeCluster(&ClusterAuthzStats::invalid);
    state_ = State::kDone;
    decoder_->sendLocalReply(500, "", "ext_authz_invalid");
    return false;
  }
  return true;  // ignored
}

void ExtAuthzFilter::allow() {
  config_->stats.ok.inc();
  chargeCluster(&ClusterAuthzStats::ok);
  finish();
}

void ExtAuthzFilter::deny(uint32_t status, std::string body, http::HeaderMap headers) {
  config_->stats.denied.inc();
  chargeCluster(&ClusterAuthzStats::denied);
  state_ = State::kDone;
  if (config_->max_denied_response_body_bytes > 0 && body.size() > config_->max_denied_response_body_bytes) {
    body.resize(config_->max_denied_response_body_bytes);
  }
  decoder_->streamInfo().setFlag(http::ResponseFlag::kUnauthorizedExternalService);
  decoder_->sendLocalReply(status, body, "ext_authz_denied", [&headers](http::HeaderMap& h) {
    for (const auto& [k, v] : headers) {
      if (h.get(k) != nullptr && k != "set-cookie") {
        h.set(k, v);
      } else {
        h.add(k, v);
      }
    }
  });
}

void ExtAuthzFilter::onError() {
  config_->stats.error.inc();
  chargeCluster(&ClusterAuthzStats::error);
  if (config_->failure_mode_allow) {
    config_->stats.failure_mode_allowed.inc();
    chargeCluster(&ClusterAuthzStats::failure_mode_allowed);
    if (config_->failure_mode_allow_header_add) {
      decoder_->requestHeaders().set(kFailureModeAllowedHeader, "true");
    }
    finish();
    return;
  }
  state_ = State::kDone;
  decoder_->streamInfo().setFlag(http::ResponseFlag::kUnauthorizedExternalService);
  decoder_->sendLocalReply(config_->status_on_error, "", "ext_authz_error");
}

bool ExtAuthzFilter::enabled() {
  if (config_->enabled_numerator < config_->enabled_denominator) {
    // A per-worker xorshift: the fraction needs no cryptographic quality, and no lock.
    thread_local uint64_t state = 0x9e3779b97f4a7c15ull ^ reinterpret_cast<uintptr_t>(&state);
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    if (state % config_->enabled_denominator >= config_->enabled_numerator) return false;
  }
  if (config_->filter_enabled_metadata) {
    return config_->filter_enabled_metadata->match(decoder_->streamInfo().dynamic_metadata.get());
  }
  return true;
}

// The route's target cluster (Envoy's clusterInfo()): a plain or header-named cluster; weighted routes
// are not attributed.
void ExtAuthzFilter::resolveClusterStats() {
  const router::RouteEntry* route = decoder_->route();
  if (route == nullptr || config_->store == nullptr) return;
  std::string_view name = route->cluster;
  if (name.empty() && !route->cluster_header.empty()) {
    if (const std::string* v = decoder_->requestHeaders().get(route->cluster_header)) name = *v;
  }
  if (name.empty()) return;
  upstream::ThreadLocalCluster* cluster = decoder_->clusterManager().get(name);
  if (cluster == nullptr) return;
  cluster_stats_ = config_->clusterStats(cluster->info().stat_name);
}

std::shared_ptr<const ClusterAuthzStats> ExtAuthzConfig::clusterStats(
    const std::string& cluster_stat_name) const {
  // Per worker: (config, cluster) -> counters. Bounded: rebuilt from scratch when large (in-flight filters
  // keep their shared_ptr).
  thread_local std::unordered_map<std::string, std::shared_ptr<const ClusterAuthzStats>> cache;
  std::string prefix = "cluster." + cluster_stat_name + "." + cluster_stat_suffix;
  std::string key = prefix + '|' + std::to_string(reinterpret_cast<uintptr_t>(store));
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  if (cache.size() > 1024) cache.clear();
  auto c = [&](const char* n) { return store->counter(prefix + n); };
  auto stats = std::make_shared<const ClusterAuthzStats>(
      ClusterAuthzStats{c("ok"), c("denied"), c("error"), c("failure_mode_allowed"), c("invalid")});
  cache.emplace(std::move(key), stats);
  return stats;
}

void ExtAuthzFilter::finish() {
  state_ = State::kDone;
  if (!stopped_) return;
  stopped_ = false;
  if (!in_decode_) decoder_->continueDecoding();
}

// ---- config ----

namespace {

class ExtAuthzFactory : public http::FilterFactory {
 public:
  explicit ExtAuthzFactory(std::shared_ptr<const ExtAuthzConfig> config) : config_(std::move(config)) {}
  void createFilters(http::FilterChainBuilder& builder) const override {
    builder.addStreamFilter(std::make_unique<ExtAuthzFilter>(config_));
  }

 private:
  std::shared_ptr<const ExtAuthzConfig> config_;
};

}  // namespace

http::FilterFactorySharedPtr createExtAuthzFilterFactory(const google::protobuf::Any& any,
                                                         const FactoryContext& context) {
  envoy::extensions::filters::http::ext_authz::v3::ExtAuthz proto;
  if (!any.UnpackTo(&proto))
    throw std::invalid_argument("ext_authz: typed_config is not an ExtAuthz message");
  auto config = std::make_shared<ExtAuthzConfig>();
  if (proto.transport_api_version() == envoy::config::core::v3::V2) {
    throw std::invalid_argument("ext_authz: transport_api_version V2 is not supported; use V3");
  }
  if (proto.has_grpc_service()) {
    config->grpc = true;
    config->service = grpc::ServiceConfig::fromProto(proto.grpc_service(), "ext_authz: grpc_service");
    if (config->service.timeout.count() > 0) config->timeout = config->service.timeout;
  } else if (proto.has_http_service()) {
    config->grpc = false;
    const auto& hs = proto.http_service();
    if (hs.server_uri().cluster().empty()) {
      throw std::invalid_argument("ext_authz: http_service.server_uri.cluster is required");
    }
    config->http_cluster = hs.server_uri().cluster();
    config->path_prefix = hs.path_prefix();
    if (!config->path_prefix.empty() && config->path_prefix[0] != '/') {
      throw std::invalid_argument("ext_authz: http_service.path_prefix must start with '/'");
    }
    if (hs.server_uri().has_timeout()) {
      config->timeout = std::chrono::milliseconds(
          google::protobuf::util::TimeUtil::DurationToMilliseconds(hs.server_uri().timeout()));
    }
    const auto& areq = hs.authorization_request();
    if (areq.has_allowed_headers()) {
      config->allowed_headers = ext::ListMatcher::fromProto(
          areq.allowed_headers(), "ext_authz: http_service.authorization_request.allowed_headers");
      config->has_allowed_headers = true;
    }
    for (const auto& h : areq.headers_to_add()) {
      std::string key = h.key();
      http::toLowerInPlace(key);
      config->headers_to_add.emplace_back(key, ext::headerValue(h.value(), h.raw_value()));
    }
    const auto& ares = hs.authorization_response();
    const std::string p = "ext_authz: http_service.authorization_response.";
    if (ares.has_allowed_upstream_headers()) {
      config->allowed_upstream_headers =
          ext::ListMatcher::fromProto(ares.allowed_upstream_headers(), p + "allowed_upstream_headers");
    }
    if (ares.has_allowed_upstream_headers_to_append()) {
      config->allowed_upstream_headers_to_append = ext::ListMatcher::fromProto(
          ares.allowed_upstream_headers_to_append(), p + "allowed_upstream_headers_to_append");
    }
    if (ares.has_allowed_client_headers()) {
      config->allowed_client_headers =
          ext::ListMatcher::fromProto(ares.allowed_client_headers(), p + "allowed_client_headers");
      config->has_allowed_client_headers = true;
    }
    if (ares.has_allowed_client_headers_on_success()) {
      config->allowed_client_headers_on_success = ext::ListMatcher::fromProto(
          ares.allowed_client_headers_on_success(), p + "allowed_client_headers_on_success");
    }
  } else {
    throw std::invalid_argument("ext_authz: one of grpc_service or http_service is required");
  }
  if (proto.has_allowed_headers()) {
    config->allowed_headers =
        ext::ListMatcher::fromProto(proto.allowed_headers(), "ext_authz: allowed_headers");
    config->has_allowed_headers = true;
  }
  if (proto.has_disallowed_headers()) {
    config->disallowed_headers =
        ext::ListMatcher::fromProto(proto.disallowed_headers(), "ext_authz: disallowed_headers");
  }
  config->failure_mode_allow = proto.failure_mode_allow();
  config->failure_mode_allow_header_add = proto.failure_mode_allow_header_add();
  if (proto.has_with_request_body()) {
    const auto& b = proto.with_request_body();
    if (b.max_request_bytes() == 0) {
      throw std::invalid_argument("ext_authz: with_request_body.max_request_bytes must be greater than 0");
    }
    config->with_request_body = true;
    config->max_request_bytes = b.max_request_bytes();
    config->allow_partial_message = b.allow_partial_message();
    config->pack_as_bytes = b.pack_as_bytes();
  }
  if (proto.has_status_on_error() && proto.status_on_error().code() != 0) {
    const int code = proto.status_on_error().code();
    if (code < 100 || code > 599)
      throw std::invalid_argument("ext_authz: status_on_error is not an HTTP status");
    config->status_on_error = static_cast<uint32_t>(code);
  }
  config->clear_route_cache = proto.clear_route_cache();
  if (proto.has_decoder_header_mutation_rules()) {
    config->decoder_rules = ext::MutationChecker::fromProto(proto.decoder_header_mutation_rules(),
                                                            "ext_authz: decoder_header_mutation_rules");
  } else {
    // Without rules Envoy lets the authorization service set any header but the pseudo-headers and host.
    envoy::config::common::mutation_rules::v3::HeaderMutationRules open;
    open.mutable_allow_envoy()->set_value(true);
    config->decoder_rules = ext::MutationChecker::fromProto(open, "");
  }
  config->validate_mutations = proto.validate_mutations();
  // Accepted but not acted on: say so once, at config time.
  std::vector<std::string> ignored;
  if (proto.has_filter_enabled()) {
    const auto& fp = proto.filter_enabled().default_value();
    static constexpr uint32_t kDenominators[] = {100, 10000, 1000000};
    const int d = static_cast<int>(fp.denominator());
    if (d < 0 || d > 2)
      throw std::invalid_argument("ext_authz: filter_enabled.default_value.denominator is invalid");
    config->enabled_denominator = kDenominators[d];
    config->enabled_numerator = std::min(fp.numerator(), config->enabled_denominator);
    if (!proto.filter_enabled().runtime_key().empty()) {
      SKIFF_LOG(kConfig, info,
                "ext_authz: filter_enabled.runtime_key '{}' is not read; using the default {}/{}",
                proto.filter_enabled().runtime_key(), config->enabled_numerator, config->enabled_denominator);
    }
  }
  if (proto.has_filter_enabled_metadata()) {
    config->filter_enabled_metadata = ext::MetadataMatcher::fromProto(proto.filter_enabled_metadata(),
                                                                      "ext_authz: filter_enabled_metadata");
  }
  if (proto.has_deny_at_disable()) {
    if (!proto.deny_at_disable().has_default_value()) {
      throw std::invalid_argument("ext_authz: deny_at_disable.default_value is required");
    }
    config->deny_at_disable = proto.deny_at_disable().default_value().value();
  }
  config->metadata_context_namespaces.assign(proto.metadata_context_namespaces().begin(),
                                             proto.metadata_context_namespaces().end());
  config->typed_metadata_context_namespaces.assign(proto.typed_metadata_context_namespaces().begin(),
                                                   proto.typed_metadata_context_namespaces().end());
  if (proto.has_enable_dynamic_metadata_ingestion()) {
    config->enable_dynamic_metadata_ingestion = proto.enable_dynamic_metadata_ingestion().value();
  }
  if (proto.include_peer_certificate()) ignored.push_back("include_peer_certificate");
  if (proto.include_tls_session()) ignored.push_back("include_tls_session");
  if (!proto.route_metadata_context_namespaces().empty() ||
      !proto.route_typed_metadata_context_namespaces().empty()) {
    ignored.push_back("route_*metadata_context_namespaces");
  }
  if (proto.encode_raw_headers()) ignored.push_back("encode_raw_headers");
  if (proto.has_http_service() && proto.http_service().has_retry_policy())
    ignored.push_back("http_service.retry_policy");
  for (const auto& field : ignored) {
    SKIFF_LOG(kConfig, warn, "ext_authz: {} is not supported and is ignored", field);
  }
  config->max_denied_response_body_bytes = proto.max_denied_response_body_bytes();
  if (!context.filter_name.empty()) config->filter_name = context.filter_name;
  std::string prefix = context.stat_prefix + "ext_authz.";
  if (!proto.stat_prefix().empty()) prefix += proto.stat_prefix() + ".";
  auto c = [&](const char* name) { return context.stats.counter(prefix + name); };
  config->stats =
      ExtAuthzStats{c("ok"), c("denied"), c("error"), c("disabled"), c("failure_mode_allowed"), c("invalid")};
  config->store = &context.stats;
  config->cluster_stat_suffix = "ext_authz.";
  if (!proto.stat_prefix().empty()) config->cluster_stat_suffix += proto.stat_prefix() + ".";
  return std::make_shared<ExtAuthzFactory>(std::move(config));
}

void registerExtAuthzFilter() {
  registerHttpFilter(HttpFilterRegistration{std::string(kFilterName), std::string(kTypeUrl),
                                            createExtAuthzFilterFactory, false});
}

}  // namespace skiff::filters::ext_authz
