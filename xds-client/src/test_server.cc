// AdsTestServer: per-stream SotW/Delta state, versioning of snapshots, pushes, and the request log.

#include "skiff/xds/test_server.h"

#include <grpcpp/grpcpp.h>

#include "envoy/service/discovery/v3/ads.grpc.pb.h"

namespace skiff::xds {

namespace discovery = envoy::service::discovery::v3;

namespace {

struct Entry {
  google::protobuf::Any any;
  std::string version;
};

struct SotwType {
  bool seen = false;
  bool wildcard = false;
  std::set<std::string> names;
  std::string sent_version;
  std::string nonce;
};

struct DeltaType {
  bool seen = false;
  bool wildcard = false;
  std::set<std::string> names;
  std::map<std::string, std::string> client_versions;  // what the client has (assumed once sent)
  std::string nonce;
};

}  // namespace

class AdsTestServer::Impl final : public discovery::AggregatedDiscoveryService::Service {
 public:
  grpc::Status StreamAggregatedResources(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<discovery::DiscoveryResponse, discovery::DiscoveryRequest>* rw) override {
    Stream stream;
    stream.context = context;
    stream.sotw = rw;
    rw->SendInitialMetadata();  // lets the client see the stream is up before any response
    {
      std::lock_guard lock(mu_);
      stream.id = ++next_stream_;
      streams_.insert(&stream);
    }
    discovery::DiscoveryRequest request;
    while (rw->Read(&request)) {
      std::lock_guard lock(mu_);
      onSotwRequest(stream, request);
    }
    std::lock_guard lock(mu_);
    streams_.erase(&stream);
    return grpc::Status::OK;
  }

  grpc::Status DeltaAggregatedResources(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<discovery::DeltaDiscoveryResponse, discovery::DeltaDiscoveryRequest>* rw)
      override {
    Stream stream;
    stream.context = context;
    stream.delta = rw;
    rw->SendInitialMetadata();
    {
      std::lock_guard lock(mu_);
      stream.id = ++next_stream_;
      streams_.insert(&stream);
    }
    discovery::DeltaDiscoveryRequest request;
    while (rw->Read(&request)) {
      std::lock_guard lock(mu_);
      onDeltaRequest(stream, request);
    }
    std::lock_guard lock(mu_);
    streams_.erase(&stream);
    return grpc::Status::OK;
  }

  std::string apply(const ResourceMap& resources, bool replace) {
    std::lock_guard lock(mu_);
    const std::string next = std::to_string(version_ + 1);
    bool changed = false;
    std::set<std::string> types;
    for (const auto& [type, _] : resources) types.insert(type);
    if (replace) {
      for (const auto& [type, _] : snapshot_) types.insert(type);
    }
    for (const auto& type : types) {
      auto& current = snapshot_[type];
      auto incoming = resources.find(type);
      bool type_changed = false;
      if (replace) {
        for (auto it = current.begin(); it != current.end();) {
          if (incoming == resources.end() || !incoming->second.count(it->first)) {
            it = current.erase(it);
            type_changed = true;
          } else {
            ++it;
          }
        }
      }
      if (incoming != resources.end()) {
        for (const auto& [name, any] : incoming->second) {
          auto found = current.find(name);
          if (found != current.end() && found->second.any.SerializeAsString() == any.SerializeAsString())
            continue;
          current[name] = Entry{any, next};
          type_changed = true;
        }
      }
      if (type_changed) {
        type_versions_[type] = next;
        changed = true;
      }
    }
    if (changed) {
      version_++;
      pushAll();
    }
    return std::to_string(version_);
  }

  std::string removeOne(const std::string& type, const std::string& name) {
    std::lock_guard lock(mu_);
    if (!snapshot_[type].erase(name)) return std::to_string(version_);
    version_++;
    type_versions_[type] = std::to_string(version_);
    pushAll();
    return std::to_string(version_);
  }

  void setIdentifier(const std::string& identifier) {
    std::lock_guard lock(mu_);
    identifier_ = identifier;
  }

  void dropStreams() {
    std::lock_guard lock(mu_);
    for (Stream* stream : streams_) stream->context->TryCancel();
  }

  std::vector<ReceivedRequest> requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }
  std::vector<SentResponse> responses() const {
    std::lock_guard lock(mu_);
    return responses_;
  }
  size_t openStreams() const {
    std::lock_guard lock(mu_);
    return streams_.size();
  }
  std::string version() const {
    std::lock_guard lock(mu_);
    return std::to_string(version_);
  }

 private:
  struct Stream {
    uint64_t id = 0;
    grpc::ServerContext* context = nullptr;
    grpc::ServerReaderWriter<discovery::DiscoveryResponse, discovery::DiscoveryRequest>* sotw = nullptr;
    grpc::ServerReaderWriter<discovery::DeltaDiscoveryResponse, discovery::DeltaDiscoveryRequest>* delta =
        nullptr;
    std::map<std::string, SotwType> sotw_types;
    std::map<std::string, DeltaType> delta_types;
  };

  std::string typeVersion(const std::string& type) const {
    auto it = type_versions_.find(type);
    return it == type_versions_.end() ? "0" : it->second;
  }

  std::string nextNonce() { return "n" + std::to_string(++nonce_); }

  static void recordNode(ReceivedRequest& record, const envoy::config::core::v3::Node& node, bool has) {
    if (has) record.node_id = node.id().empty() ? "<empty>" : node.id();
  }

  void onSotwRequest(Stream& stream, const discovery::DiscoveryRequest& request) {
    ReceivedRequest record;
    record.stream = stream.id;
    record.type_url = request.type_url();
    record.version_info = request.version_info();
    record.response_nonce = request.response_nonce();
    record.resource_names.assign(request.resource_names().begin(), request.resource_names().end());
    record.has_error = request.has_error_detail();
    record.error_code = request.error_detail().code();
    record.error_message = request.error_detail().message();
    recordNode(record, request.node(), request.has_node());
    record.at = std::chrono::steady_clock::now();
    requests_.push_back(std::move(record));

    SotwType& type = stream.sotw_types[request.type_url()];
    if (!request.response_nonce().empty() && request.response_nonce() != type.nonce) return;  // stale
    std::set<std::string> names(request.resource_names().begin(), request.resource_names().end());
    const bool wildcard = names.empty() || names.count("*");
    names.erase("*");
    bool names_changed = !type.seen || wildcard != type.wildcard || names != type.names;
    if (!type.seen) type.sent_version = request.version_info();
    const bool first = !type.seen;
    type.seen = true;
    type.wildcard = wildcard;
    type.names = std::move(names);
    if (request.has_error_detail() && !names_changed) return;  // a NACK: do not resend the same thing
    if (first && request.version_info().empty()) {
      sendSotw(stream, request.type_url(), type);
    } else if ((names_changed && !first) || type.sent_version != typeVersion(request.type_url())) {
      sendSotw(stream, request.type_url(), type);
    }
  }

  void sendSotw(Stream& stream, const std::string& type_url, SotwType& type) {
    if (!type.wildcard) {
      // A named subscription none of whose resources exist gets no answer (the client's warming waits).
      bool any = false;
      for (const auto& name : type.names) any = any || snapshot_[type_url].count(name);
      if (!any) return;
    }
    discovery::DiscoveryResponse response;
    response.set_type_url(type_url);
    response.set_version_info(typeVersion(type_url));
    response.set_nonce(nextNonce());
    SentResponse sent{stream.id, false, type_url, response.version_info(), response.nonce(), {}, {}};
    for (const auto& [name, entry] : snapshot_[type_url]) {
      if (!type.wildcard && !type.names.count(name)) continue;
      *response.add_resources() = entry.any;
      sent.names.push_back(name);
    }
    type.sent_version = response.version_info();
    type.nonce = response.nonce();
    if (!identifier_.empty()) response.mutable_control_plane()->set_identifier(identifier_);
    sent.at = std::chrono::steady_clock::now();
    responses_.push_back(std::move(sent));
    stream.sotw->Write(response);
  }

  void onDeltaRequest(Stream& stream, const discovery::DeltaDiscoveryRequest& request) {
    ReceivedRequest record;
    record.stream = stream.id;
    record.delta = true;
    record.type_url = request.type_url();
    record.response_nonce = request.response_nonce();
    record.subscribe.assign(request.resource_names_subscribe().begin(),
                            request.resource_names_subscribe().end());
    record.unsubscribe.assign(request.resource_names_unsubscribe().begin(),
                              request.resource_names_unsubscribe().end());
    record.initial_resource_versions.insert(request.initial_resource_versions().begin(),
                                            request.initial_resource_versions().end());
    record.has_error = request.has_error_detail();
    record.error_code = request.error_detail().code();
    record.error_message = request.error_detail().message();
    recordNode(record, request.node(), request.has_node());
    record.at = std::chrono::steady_clock::now();
    requests_.push_back(std::move(record));

    DeltaType& type = stream.delta_types[request.type_url()];
    const bool first = !type.seen;
    if (first) {
      type.seen = true;
      type.wildcard = request.resource_names_subscribe().empty();
      type.client_versions.insert(request.initial_resource_versions().begin(),
                                  request.initial_resource_versions().end());
    }
    for (const auto& name : request.resource_names_subscribe()) {
      if (name == "*") {
        type.wildcard = true;
      } else {
        type.names.insert(name);
      }
    }
    for (const auto& name : request.resource_names_unsubscribe()) {
      if (name == "*") type.wildcard = false;
      type.names.erase(name);
      type.client_versions.erase(name);
    }
    if (request.has_error_detail()) return;
    sendDelta(stream, request.type_url(), type, first && type.wildcard);
  }

  void sendDelta(Stream& stream, const std::string& type_url, DeltaType& type, bool even_if_empty) {
    discovery::DeltaDiscoveryResponse response;
    response.set_type_url(type_url);
    response.set_system_version_info(typeVersion(type_url));
    const auto& resources = snapshot_[type_url];
    SentResponse sent{stream.id, true, type_url, response.system_version_info(), "", {}, {}};
    for (const auto& [name, entry] : resources) {
      if (!type.wildcard && !type.names.count(name)) continue;
      auto known = type.client_versions.find(name);
      if (known != type.client_versions.end() && known->second == entry.version) continue;
      auto* r = response.add_resources();
      r->set_name(name);
      r->set_version(entry.version);
      *r->mutable_resource() = entry.any;
      type.client_versions[name] = entry.version;
      sent.names.push_back(name);
    }
    for (auto it = type.client_versions.begin(); it != type.client_versions.end();) {
      if (!resources.count(it->first)) {
        response.add_removed_resources(it->first);
        sent.removed.push_back(it->first);
        it = type.client_versions.erase(it);
      } else {
        ++it;
      }
    }
    if (!even_if_empty && response.resources().empty() && response.removed_resources().empty()) return;
    response.set_nonce(nextNonce());
    sent.nonce = response.nonce();
    type.nonce = response.nonce();
    if (!identifier_.empty()) response.mutable_control_plane()->set_identifier(identifier_);
    sent.at = std::chrono::steady_clock::now();
    responses_.push_back(std::move(sent));
    stream.delta->Write(response);
  }

  void pushAll() {
    for (Stream* stream : streams_) {
      if (stream->sotw) {
        for (auto& [type_url, type] : stream->sotw_types) {
          if (type.seen && type.sent_version != typeVersion(type_url)) sendSotw(*stream, type_url, type);
        }
      } else {
        for (auto& [type_url, type] : stream->delta_types) {
          if (type.seen) sendDelta(*stream, type_url, type, false);
        }
      }
    }
  }

  mutable std::mutex mu_;
  std::set<Stream*> streams_;
  uint64_t next_stream_ = 0;
  uint64_t nonce_ = 0;
  uint64_t version_ = 0;
  std::map<std::string, std::map<std::string, Entry>> snapshot_;
  std::map<std::string, std::string> type_versions_;
  std::string identifier_;
  std::vector<ReceivedRequest> requests_;
  std::vector<SentResponse> responses_;
};

AdsTestServer::AdsTestServer() : impl_(std::make_shared<Impl>()) {}

AdsTestServer::~AdsTestServer() {
  stop();
}

int AdsTestServer::start(const std::string& address) {
  if (server_) return port_;
  std::string bind = address;
  if (port_ != 0) bind = address.substr(0, address.rfind(':')) + ":" + std::to_string(port_);
  grpc::ServerBuilder builder;
  int selected = 0;
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (!tls_cert_.empty()) {
    grpc::SslServerCredentialsOptions ssl(tls_client_ca_.empty()
                                              ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                              : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    ssl.pem_root_certs = tls_client_ca_;
    ssl.pem_key_cert_pairs.push_back({tls_key_, tls_cert_});
    credentials = grpc::SslServerCredentials(ssl);
  }
  builder.AddListeningPort(bind, credentials, &selected);
  builder.RegisterService(impl_.get());
  server_ = builder.BuildAndStart();
  if (!server_ || selected == 0) {
    server_.reset();
    return 0;
  }
  port_ = selected;
  return port_;
}

void AdsTestServer::setTls(std::string cert_chain, std::string private_key, std::string client_ca) {
  tls_cert_ = std::move(cert_chain);
  tls_key_ = std::move(private_key);
  tls_client_ca_ = std::move(client_ca);
}

void AdsTestServer::stop() {
  if (!server_) return;
  impl_->dropStreams();
  server_->Shutdown(std::chrono::system_clock::now());
  server_->Wait();
  server_.reset();
}

std::string AdsTestServer::setResources(const ResourceMap& resources) {
  return impl_->apply(resources, true);
}
std::string AdsTestServer::upsert(const ResourceMap& resources) {
  return impl_->apply(resources, false);
}
std::string AdsTestServer::remove(const std::string& type_url, const std::string& name) {
  return impl_->removeOne(type_url, name);
}

std::string AdsTestServer::pushInvalid(const std::string& type_url, const std::string& name) {
  google::protobuf::Any any;
  any.set_type_url(type_url);
  std::string bytes;
  bytes.push_back(0x0a);  // field 1, length-delimited: the name
  const std::string short_name = name.substr(0, 127);
  bytes.push_back(static_cast<char>(short_name.size()));
  bytes += short_name;
  bytes += std::string("\x12\x05\xff\xff\xff", 5);  // field 2 claims 5 bytes, has 3
  any.set_value(bytes);
  return impl_->apply({{type_url, {{name, any}}}}, false);
}

void AdsTestServer::setIdentifier(const std::string& identifier) {
  impl_->setIdentifier(identifier);
}

void AdsTestServer::dropStreams() {
  impl_->dropStreams();
}
std::vector<ReceivedRequest> AdsTestServer::requests() const {
  return impl_->requests();
}
std::vector<SentResponse> AdsTestServer::responses() const {
  return impl_->responses();
}
size_t AdsTestServer::openStreams() const {
  return impl_->openStreams();
}
std::string AdsTestServer::version() const {
  return impl_->version();
}

}  // namespace skiff::xds
