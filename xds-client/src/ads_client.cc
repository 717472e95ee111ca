// AdsClient: subscriptions, versions, nonces, ACK/NACK and reconnects of one ADS stream (SotW or Delta).

#include "skiff/xds/ads_client.h"

#include <algorithm>
#include <deque>
#include <mutex>
#include <random>
#include <set>

#include <grpcpp/alarm.h>

#include "ads_stream.h"
#include "envoy/service/discovery/v3/ads.grpc.pb.h"  // also the protobuf SerializationTraits
#include "resource_name.h"

namespace skiff::xds {

namespace discovery = envoy::service::discovery::v3;
using SotwStream = AdsStream<discovery::DiscoveryRequest, discovery::DiscoveryResponse>;
using DeltaStream = AdsStream<discovery::DeltaDiscoveryRequest, discovery::DeltaDiscoveryResponse>;

namespace {

// Static: gRPC keeps a pointer to a call's method name for the call's lifetime.
const std::string kSotwMethod =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const std::string kDeltaMethod =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

struct TypeOrderLess {
  bool operator()(const std::string& a, const std::string& b) const {
    const int oa = typeOrder(a), ob = typeOrder(b);
    return oa != ob ? oa < ob : a < b;
  }
};

std::chrono::system_clock::time_point deadlineAfter(std::chrono::milliseconds delay) {
  return std::chrono::system_clock::now() + delay;
}

// gRPC 1.51 drops its shared callback-API completion queue when the last channel that used it goes away,
// and a later channel's callback calls race with that teardown (ASan: double free in grpc_cq_internal_unref
// on gRPC's own thread). A sidecar keeps its one ADS channel for the whole process anyway, so channels are
// kept until exit: the queue is created once and never torn down. Reachable, so not a leak report either.
void keepForProcessLifetime(std::shared_ptr<grpc::Channel> channel) {
  static std::mutex mu;
  static auto* kept = new std::vector<std::shared_ptr<grpc::Channel>>();
  std::lock_guard<std::mutex> lock(mu);
  kept->push_back(std::move(channel));
}

}  // namespace

class AdsClientImpl : public std::enable_shared_from_this<AdsClientImpl> {
 public:
  explicit AdsClientImpl(AdsClientOptions options)
      : options_(std::move(options)), rng_(std::random_device{}()) {
    if (options_.rate_limit) tokens_ = options_.rate_limit->max_tokens;
    auto credentials = options_.credentials ? options_.credentials : grpc::InsecureChannelCredentials();
    // A full SotW CDS/EDS response of a large mesh is many MB; gRPC's 4 MB default would reset the stream.
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    // gRPC sizes its next TCP read buffer after the last messages (up to 4 MB) and keeps it while it waits
    // for data: after a multi-MB SotW push that idle buffer stays in the sidecar's RSS. Reads of at most
    // 64 KB cost a few more syscalls per big push, not memory.
    args.SetInt(GRPC_ARG_TCP_MAX_READ_CHUNK_SIZE, 64 * 1024);
    if (!options_.ssl_target_name_override.empty()) {
      args.SetSslTargetNameOverride(options_.ssl_target_name_override);
    }
    channel_ = grpc::CreateCustomChannel(options_.target, credentials, args);
    keepForProcessLifetime(channel_);
    sotw_stub_ = std::make_unique<SotwStream::Stub>(channel_);
    delta_stub_ = std::make_unique<DeltaStream::Stub>(channel_);
  }

  void shutdown() {
    shut_down_ = true;
    retry_alarm_.reset();
    drain_alarm_.reset();
    for (auto& [_, type] : types_) type.init_alarm.reset();
    if (stream_) {
      stream_->cancel();
      stream_->waitDone();
      stream_.reset();
    }
  }

  void subscribe(const std::string& type_url, std::vector<std::string> names,
                 SubscriptionCallbacks callbacks) {
    TypeState& type = types_[type_url];
    type.callbacks = std::move(callbacks);
    type.wildcard = names.empty() && isWildcardType(type_url);
    type.names = sortedUnique(std::move(names));
    stats_.types[type_url];
    armInitialFetchTimer(type_url, type);
    if (stream_) sendInitial(type_url, type);
  }

  void updateSubscription(const std::string& type_url, std::vector<std::string> names) {
    auto it = types_.find(type_url);
    if (it == types_.end()) return;
    TypeState& type = it->second;
    std::vector<std::string> next = sortedUnique(std::move(names));
    std::vector<std::string> added, dropped;
    std::set_difference(next.begin(), next.end(), type.names.begin(), type.names.end(),
                        std::back_inserter(added));
    std::set_difference(type.names.begin(), type.names.end(), next.begin(), next.end(),
                        std::back_inserter(dropped));
    if (added.empty() && dropped.empty()) return;
    type.names = std::move(next);
    type.wildcard = false;
    for (const auto& name : dropped) type.known.erase(name);
    if (!stream_) return;
    if (options_.delta) {
      discovery::DeltaDiscoveryRequest request;
      request.set_type_url(type_url);
      for (auto& name : added) request.add_resource_names_subscribe(name);
      for (auto& name : dropped) request.add_resource_names_unsubscribe(name);
      sendDelta(std::move(request));
    } else {
      sendSotw(type_url, type, type.version, type.nonce, nullptr);
    }
  }

  void start() {
    started_ = true;
    connect();
  }

  const AdsStats& stats() const { return stats_; }

 private:
  struct TypeState {
    SubscriptionCallbacks callbacks;
    bool wildcard = false;
    std::vector<std::string> names;  // sorted: a flat vector, 10,000s of EDS names
    std::string version;             // last accepted SotW version_info
    std::string nonce;               // last received nonce (on this stream)
    // Delta: name -> version accepted (unless the owner supplies them: callbacks.known_versions).
    std::map<std::string, std::string> known;
    // SotW wildcard: names last delivered, sorted (for `removed`).
    std::vector<std::string> sotw_known;
    bool got_first = false;
    std::unique_ptr<grpc::Alarm> init_alarm;
    uint64_t init_generation = 0;
  };

  static std::vector<std::string> sortedUnique(std::vector<std::string> names) {
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    names.shrink_to_fit();
    return names;
  }

  // Runs `fn` on the owner's thread, unless the client is gone by then.
  std::function<void(std::function<void()>)> poster() {
    return [weak = weak_from_this(), executor = options_.executor](std::function<void()> fn) {
      executor([weak, fn = std::move(fn)] {
        if (auto self = weak.lock(); self && !self->shut_down_) fn();
      });
    };
  }

  void armInitialFetchTimer(const std::string& type_url, TypeState& type) {
    if (type.got_first || type.callbacks.initial_fetch_timeout.count() <= 0) return;
    const uint64_t generation = ++type.init_generation;
    type.init_alarm = std::make_unique<grpc::Alarm>();
    auto post = poster();
    type.init_alarm->Set(
        deadlineAfter(type.callbacks.initial_fetch_timeout), [this, post, type_url, generation](bool fired) {
          if (!fired) return;
          post([this, type_url, generation] { onInitialFetchTimeout(type_url, generation); });
        });
  }

  void onInitialFetchTimeout(const std::string& type_url, uint64_t generation) {
    auto it = types_.find(type_url);
    if (it == types_.end() || it->second.got_first || it->second.init_generation != generation) return;
    stats_.types[type_url].init_fetch_timeout++;
    if (it->second.callbacks.on_initial_fetch_timeout) it->second.callbacks.on_initial_fetch_timeout();
  }

  void connect() {
    if (shut_down_ || !started_) return;
    const uint64_t id = ++stream_id_;
    first_message_ = true;
    outgoing_.clear();  // the new stream starts over with the initial requests
    deferred_.clear();
    for (auto& [_, type] : types_) type.nonce.clear();
    stats_.streams_started++;
    auto post = poster();
    if (options_.delta) {
      auto stream = DeltaStream::open(
          post,
          {[this, id] { onEstablished(id); },
           [this, id](discovery::DeltaDiscoveryResponse r) { onDeltaResponse(id, std::move(r)); },
           [this, id](grpc::Status s) { onClosed(id, s); }},
          *delta_stub_, kDeltaMethod);
      stream_ = stream;
      delta_ = stream;
    } else {
      auto stream =
          SotwStream::open(post,
                           {[this, id] { onEstablished(id); },
                            [this, id](discovery::DiscoveryResponse r) { onSotwResponse(id, std::move(r)); },
                            [this, id](grpc::Status s) { onClosed(id, s); }},
                           *sotw_stub_, kSotwMethod);
      stream_ = stream;
      sotw_ = stream;
    }
    // Envoy's order: CDS, EDS, LDS, RDS, SDS, then the rest.
    for (auto& [type_url, type] : types_) sendInitial(type_url, type);
  }

  void setConnected(bool connected) {
    if (stats_.connected == connected) return;
    stats_.connected = connected;
    if (options_.on_connection_state) options_.on_connection_state(connected);
  }

  void onEstablished(uint64_t id) {
    if (id == stream_id_) setConnected(true);
  }

  void onClosed(uint64_t id, const grpc::Status& status) {
    if (id != stream_id_) return;
    stats_.streams_closed++;
    for (auto& [type_url, _] : types_) stats_.types[type_url].update_failure++;
    setConnected(false);
    stream_.reset();
    sotw_.reset();
    delta_.reset();
    scheduleReconnect();
  }

  void scheduleReconnect() {
    // Full jitter over an exponentially growing window, capped.
    const int64_t base = std::max<int64_t>(1, options_.backoff_base.count());
    const int64_t cap = std::max<int64_t>(base, options_.backoff_max.count());
    const int shift = std::min(backoff_attempt_, 20);
    const int64_t window = std::min<int64_t>(cap, base << shift);
    backoff_attempt_++;
    const int64_t delay = std::uniform_int_distribution<int64_t>(window / 2, window)(rng_);
    last_backoff_ = std::chrono::milliseconds(delay);
    retry_alarm_ = std::make_unique<grpc::Alarm>();
    auto post = poster();
    const uint64_t generation = ++retry_generation_;
    retry_alarm_->Set(deadlineAfter(last_backoff_), [this, post, generation](bool fired) {
      if (!fired) return;
      post([this, generation] {
        if (generation == retry_generation_) connect();
      });
    });
  }

  void stampNode(envoy::config::core::v3::Node* node) {
    if (first_message_ || !options_.set_node_on_first_message_only) *node = options_.node;
    first_message_ = false;
  }

  void sendInitial(const std::string& type_url, TypeState& type) {
    if (options_.delta) {
      discovery::DeltaDiscoveryRequest request;
      request.set_type_url(type_url);
      if (!type.wildcard) {
        for (const auto& name : type.names) request.add_resource_names_subscribe(name);
      }
      auto& versions = *request.mutable_initial_resource_versions();
      if (type.callbacks.known_versions) {
        type.callbacks.known_versions([&](const std::string& name, const std::string& version) {
          if (type.wildcard || std::binary_search(type.names.begin(), type.names.end(), name))
            versions[name] = version;
        });
      } else {
        for (const auto& [name, version] : type.known) versions[name] = version;
      }
      sendDelta(std::move(request));
    } else {
      sendSotw(type_url, type, type.version, "", nullptr);
    }
  }

  void sendSotw(const std::string& type_url, const TypeState& type, const std::string& version,
                const std::string& nonce, const google::rpc::Status* error) {
    if (!sotw_) return;
    discovery::DiscoveryRequest request;
    stampNode(request.mutable_node());
    if (!request.node().ByteSizeLong()) request.clear_node();
    request.set_type_url(type_url);
    request.set_version_info(version);
    request.set_response_nonce(nonce);
    if (!type.wildcard) {
      for (const auto& name : type.names) request.add_resource_names(name);
    }
    if (error) *request.mutable_error_detail() = *error;
    enqueue(Outgoing{std::move(request), {}});
  }

  void sendDelta(discovery::DeltaDiscoveryRequest request) {
    if (!delta_) return;
    stampNode(request.mutable_node());
    if (!request.node().ByteSizeLong()) request.clear_node();
    enqueue(Outgoing{{}, std::move(request)});
  }

  // --- Outgoing requests: Envoy's pause (EDS/SDS wait while CDS is applied, RDS/SDS while LDS is) and the
  // rate limit. Requests leave in the order they were made.
  struct Outgoing {
    discovery::DiscoveryRequest sotw;
    discovery::DeltaDiscoveryRequest delta;
    const std::string& typeUrl() const {
      return sotw.type_url().empty() ? delta.type_url() : sotw.type_url();
    }
  };

  void enqueue(Outgoing out) {
    outgoing_.push_back(std::move(out));
    drain();
  }

  bool takeToken() {
    if (!options_.rate_limit) return true;
    const auto now = std::chrono::steady_clock::now();
    const double elapsed = std::chrono::duration<double>(now - last_refill_).count();
    last_refill_ = now;
    tokens_ =
        std::min<double>(options_.rate_limit->max_tokens, tokens_ + elapsed * options_.rate_limit->fill_rate);
    if (tokens_ < 1) return false;
    tokens_ -= 1;
    return true;
  }

  void drain() {
    while (!outgoing_.empty()) {
      Outgoing& next = outgoing_.front();
      if (paused_.count(next.typeUrl())) {
        // Set aside until its type resumes; it then goes after what was sent meanwhile (the ACK).
        deferred_.push_back(std::move(next));
        outgoing_.pop_front();
        continue;
      }
      if (!takeToken()) {
        stats_.rate_limit_enforced++;
        armDrain();
        return;
      }
      if (sotw_ && !next.sotw.type_url().empty()) sotw_->write(std::move(next.sotw));
      if (delta_ && !next.delta.type_url().empty()) delta_->write(std::move(next.delta));
      outgoing_.pop_front();
    }
  }

  void armDrain() {
    if (drain_alarm_) return;
    const double wait_s = (1 - tokens_) / std::max(options_.rate_limit->fill_rate, 1e-6);
    drain_alarm_ = std::make_unique<grpc::Alarm>();
    auto post = poster();
    const uint64_t generation = ++drain_generation_;
    drain_alarm_->Set(deadlineAfter(std::chrono::milliseconds(static_cast<int64_t>(wait_s * 1000) + 1)),
                      [this, post, generation](bool fired) {
                        if (!fired) return;
                        post([this, generation] {
                          if (generation != drain_generation_) return;
                          drain_alarm_.reset();
                          drain();
                        });
                      });
  }

  // Types whose requests wait while `type_url`'s update is applied (they go out after its ACK).
  static std::vector<std::string> pausedDuring(const std::string& type_url) {
    if (type_url == kClusterType) return {std::string(kEndpointType), std::string(kSecretType)};
    if (type_url == kListenerType) return {std::string(kRouteType), std::string(kSecretType)};
    return {};
  }
  void pause(const std::vector<std::string>& types) {
    for (const auto& t : types) paused_[t]++;
  }
  void resume(const std::vector<std::string>& types) {
    for (const auto& t : types) {
      auto it = paused_.find(t);
      if (it != paused_.end() && --it->second == 0) paused_.erase(it);
    }
    for (auto it = deferred_.begin(); it != deferred_.end();) {
      if (paused_.count(it->typeUrl())) {
        ++it;
        continue;
      }
      outgoing_.push_back(std::move(*it));
      it = deferred_.erase(it);
    }
    drain();
  }

  // Common bookkeeping when a response arrives for a type.
  TypeState* responseArrived(const std::string& type_url) {
    setConnected(true);
    backoff_attempt_ = 0;
    auto it = types_.find(type_url);
    if (it == types_.end()) return nullptr;  // never subscribed: ignore, as Envoy does
    TypeState& type = it->second;
    type.got_first = true;
    type.init_alarm.reset();
    stats_.types[type_url].update_attempt++;
    return &type;
  }

  google::rpc::Status nackStatus(const std::string& message) const {
    google::rpc::Status status;
    status.set_code(options_.nack_status_code);
    status.set_message(message);
    return status;
  }

  // Checks the Any's type and extracts the name. Returns an error or "". Takes the Any's content (a large
  // response is not copied resource by resource).
  static std::string admit(const std::string& type_url, google::protobuf::Any& any, XdsResource& out) {
    if (any.type_url() == "type.googleapis.com/envoy.service.discovery.v3.Resource") {
      discovery::Resource wrapped;
      if (!wrapped.ParseFromString(any.value())) return "a wrapped Resource does not parse";
      out.name = wrapped.name();
      out.resource.Swap(wrapped.mutable_resource());
      if (!wrapped.version().empty()) out.version = wrapped.version();
    } else {
      out.resource.Swap(&any);
    }
    if (out.resource.type_url() != type_url) {
      return "type URL " + out.resource.type_url() +
             " embedded in an individual Any does not match the message-wide type URL " + type_url;
    }
    if (out.name.empty()) {
      auto name = resourceNameOf(out.resource.value());
      if (!name) return "a " + type_url + " resource has no name (field 1)";
      out.name = std::move(*name);
    }
    return "";
  }

  void onSotwResponse(uint64_t id, discovery::DiscoveryResponse response) {
    if (id != stream_id_) return;
    const std::string& type_url = response.type_url();
    if (response.has_control_plane()) stats_.control_plane_identifier = response.control_plane().identifier();
    TypeState* type = responseArrived(type_url);
    if (!type) return;
    type->nonce = response.nonce();
    TypeStats& stats = stats_.types[type_url];

    ConfigUpdate update;
    update.type_url = type_url;
    update.system_version = response.version_info();
    update.state_of_the_world = true;
    std::string error;
    std::set<std::string> names;
    for (auto& any : *response.mutable_resources()) {
      XdsResource resource;
      resource.version = response.version_info();
      error = admit(type_url, any, resource);
      if (!error.empty()) break;
      if (!names.insert(resource.name).second) {
        error = "duplicate resource name '" + resource.name + "' in " + type_url;
        break;
      }
      update.resources.push_back(std::move(resource));
    }
    if (error.empty() && type->wildcard) {
      for (const auto& name : type->sotw_known) {
        if (!names.count(name)) update.removed.push_back(name);
      }
    }
    const auto paused = pausedDuring(type_url);
    pause(paused);
    if (error.empty() && type->callbacks.on_update) error = type->callbacks.on_update(update);
    if (error.empty()) {
      type->version = response.version_info();
      if (type->wildcard) {
        type->sotw_known.assign(names.begin(), names.end());  // `names` is a sorted set
      }
      stats.update_success++;
      stats.version_info = response.version_info();
      sendSotw(type_url, *type, type->version, type->nonce, nullptr);
    } else {
      stats.update_rejected++;
      const google::rpc::Status status = nackStatus(error);
      sendSotw(type_url, *type, type->version, type->nonce, &status);
    }
    resume(paused);
  }

  void onDeltaResponse(uint64_t id, discovery::DeltaDiscoveryResponse response) {
    if (id != stream_id_) return;
    const std::string& type_url = response.type_url();
    if (response.has_control_plane()) stats_.control_plane_identifier = response.control_plane().identifier();
    TypeState* type = responseArrived(type_url);
    if (!type) return;
    type->nonce = response.nonce();
    TypeStats& stats = stats_.types[type_url];

    ConfigUpdate update;
    update.type_url = type_url;
    update.system_version = response.system_version_info();
    std::string error;
    for (auto& r : *response.mutable_resources()) {
      if (!r.has_resource()) continue;  // a TTL heartbeat: nothing to apply
      XdsResource resource;
      resource.name = r.name();
      resource.version = r.version();
      error = admit(type_url, *r.mutable_resource(), resource);
      if (!error.empty()) break;
      update.resources.push_back(std::move(resource));
    }
    update.removed.assign(response.removed_resources().begin(), response.removed_resources().end());
    const auto paused = pausedDuring(type_url);
    pause(paused);
    if (error.empty() && type->callbacks.on_update) error = type->callbacks.on_update(update);

    discovery::DeltaDiscoveryRequest ack;
    ack.set_type_url(type_url);
    ack.set_response_nonce(response.nonce());
    if (error.empty()) {
      if (!type->callbacks.known_versions) {
        for (const auto& resource : update.resources) type->known[resource.name] = resource.version;
        for (const auto& name : update.removed) type->known.erase(name);
      }
      stats.update_success++;
      stats.version_info = response.system_version_info();
    } else {
      stats.update_rejected++;
      *ack.mutable_error_detail() = nackStatus(error);
    }
    sendDelta(std::move(ack));
    resume(paused);
  }

  AdsClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<SotwStream::Stub> sotw_stub_;
  std::unique_ptr<DeltaStream::Stub> delta_stub_;
  std::map<std::string, TypeState, TypeOrderLess> types_;
  std::shared_ptr<AdsStreamBase> stream_;
  std::shared_ptr<SotwStream> sotw_;
  std::shared_ptr<DeltaStream> delta_;
  uint64_t stream_id_ = 0;
  bool first_message_ = true;
  bool started_ = false;
  bool shut_down_ = false;
  int backoff_attempt_ = 0;
  std::chrono::milliseconds last_backoff_{0};
  std::unique_ptr<grpc::Alarm> retry_alarm_;
  uint64_t retry_generation_ = 0;
  std::mt19937_64 rng_;
  AdsStats stats_;
  std::deque<Outgoing> outgoing_;
  std::deque<Outgoing> deferred_;  // requests of paused types
  std::map<std::string, int> paused_;
  double tokens_ = 0;
  std::chrono::steady_clock::time_point last_refill_ = std::chrono::steady_clock::now();
  std::unique_ptr<grpc::Alarm> drain_alarm_;
  uint64_t drain_generation_ = 0;
};

AdsClient::AdsClient(AdsClientOptions options) : impl_(std::make_shared<AdsClientImpl>(std::move(options))) {}

AdsClient::~AdsClient() {
  impl_->shutdown();
}

void AdsClient::subscribe(const std::string& type_url, std::vector<std::string> names,
                          SubscriptionCallbacks callbacks) {
  impl_->subscribe(type_url, std::move(names), std::move(callbacks));
}

void AdsClient::updateSubscription(const std::string& type_url, std::vector<std::string> names) {
  impl_->updateSubscription(type_url, std::move(names));
}

void AdsClient::start() {
  impl_->start();
}

const AdsStats& AdsClient::stats() const {
  return impl_->stats();
}

std::optional<std::string> targetOf(
    const envoy::config::core::v3::GrpcService& service,
    const std::function<std::optional<std::string>(const std::string&)>& resolve_cluster) {
  if (service.has_google_grpc() && !service.google_grpc().target_uri().empty()) {
    return service.google_grpc().target_uri();
  }
  if (service.has_envoy_grpc() && resolve_cluster)
    return resolve_cluster(service.envoy_grpc().cluster_name());
  return std::nullopt;
}

}  // namespace skiff::xds
