// Istio's TCP metadata exchange: the preface codec, the per-connection peer record, the counters and the
// upstream half that tcp_proxy drives for clusters configured with istio.metadata_exchange.
#include "filters/istio/tcp_exchange.h"

#include <google/protobuf/any.pb.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <array>
#include <atomic>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "filters/istio/metadata_exchange.pb.h"
#include "skiff/common/logging.h"
#include "skiff/config/typed_struct.h"
#include "skiff/stats/stats.h"
#include "skiff/tls/transport.h"

namespace skiff::filters::istio {
namespace {

constexpr std::string_view kStructType = "type.googleapis.com/google.protobuf.Struct";
constexpr std::string_view kExchangeType =
    "type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange";
constexpr char kMetadataKey[] = "x-envoy-peer-metadata";
constexpr char kMetadataIdKey[] = "x-envoy-peer-metadata-id";
// The node metadata keys Istio's TCP exchange carries (its flat node schema).
constexpr std::array<std::string_view, 11> kExchangedKeys = {
    "NAME",        "NAMESPACE",  "OWNER",  "WORKLOAD_NAME",     "ISTIO_VERSION",
    "MESH_ID",     "CLUSTER_ID", "LABELS", "PLATFORM_METADATA", "APP_CONTAINERS",
    "INSTANCE_IPS"};

void putBigEndian(std::string& out, uint32_t v) {
  out.push_back(static_cast<char>(v >> 24));
  out.push_back(static_cast<char>(v >> 16));
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v));
}

uint32_t getBigEndian(const char* p) {
  const auto* b = reinterpret_cast<const uint8_t*>(p);
  return (uint32_t(b[0]) << 24) | (uint32_t(b[1]) << 16) | (uint32_t(b[2]) << 8) | uint32_t(b[3]);
}

std::string deterministic(const google::protobuf::Message& m) {
  std::string bytes;
  google::protobuf::io::StringOutputStream stream(&bytes);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  m.SerializeToCodedStream(&coded);
  coded.Trim();
  return bytes;
}

struct ExchangeCounters {
  uint32_t store;  // Store::handleId()
  std::array<stats::Counter, 5> counters;
};
std::atomic<ExchangeCounters*> g_counters{nullptr};

// Per worker: which protocol a cluster version's istio.metadata_exchange filter names ("" = none). Keyed
// by the ClusterInfo, whose weak pointer tells a reused address from the cluster it was made for.
struct ClusterExchange {
  std::weak_ptr<const upstream::ClusterInfo> cluster;
  std::string protocol;
};

}  // namespace

std::string exchangeProtocolOf(const envoy::config::cluster::v3::Cluster& cluster) {
  for (int i = 0; i < cluster.filters_size(); ++i) {
    const auto& f = cluster.filters(i);
    google::protobuf::Any any;
    if (!config::unwrapTypedStruct(f.typed_config(), &any)) any = f.typed_config();
    const bool named = f.name() == "istio.metadata_exchange" ||
                       f.name() == "envoy.filters.network.upstream.metadata_exchange";
    if (any.type_url() != kExchangeType && !(named && !f.has_typed_config())) continue;
    envoy::tcp::metadataexchange::config::MetadataExchange proto;
    if (f.has_typed_config() && !any.UnpackTo(&proto)) continue;
    return proto.protocol().empty() ? "istio-peer-exchange" : proto.protocol();
  }
  return {};
}

namespace {

const std::string& cachedProtocol(const upstream::ClusterInfoConstSharedPtr& cluster) {
  thread_local std::unordered_map<const upstream::ClusterInfo*, ClusterExchange> cache;
  auto it = cache.find(cluster.get());
  if (it != cache.end() && it->second.cluster.lock() == cluster) return it->second.protocol;
  // A miss is a new cluster version: drop the entries of destroyed ones so their control blocks go too.
  std::erase_if(cache, [](const auto& e) { return e.second.cluster.expired(); });
  auto& slot = cache[cluster.get()];
  slot.cluster = cluster;
  slot.protocol = exchangeProtocolOf(cluster->config());
  return slot.protocol;
}

}  // namespace

std::string encodeExchangePreface(std::string_view node_id, const google::protobuf::Struct& metadata) {
  google::protobuf::Struct data;
  auto& fields = *data.mutable_fields();
  auto& node = *fields[kMetadataKey].mutable_struct_value()->mutable_fields();
  for (std::string_view key : kExchangedKeys) {
    auto it = metadata.fields().find(std::string(key));
    if (it != metadata.fields().end()) node[std::string(key)] = it->second;
  }
  if (!node_id.empty()) fields[kMetadataIdKey].set_string_value(std::string(node_id));
  google::protobuf::Any any;
  any.set_type_url(std::string(kStructType));
  any.set_value(deterministic(data));
  const std::string payload = any.SerializeAsString();
  std::string out;
  out.reserve(kExchangeHeaderSize + payload.size());
  putBigEndian(out, kExchangeMagic);
  putBigEndian(out, static_cast<uint32_t>(payload.size()));
  out += payload;
  return out;
}

const std::string& localExchangePreface() {
  // The local node is fixed once the server has started; the first connection makes the preface.
  static const std::string preface = [] {
    const LocalNode& local = localNode();
    return encodeExchangePreface(local.id, local.metadata);
  }();
  return preface;
}

size_t ExchangeParser::consume(std::string_view data) {
  if (state_ != State::kReading) return 0;
  size_t taken = 0;
  if (!magic_ok_) {
    const size_t want = std::min(kExchangeHeaderSize - buf_.size(), data.size());
    buf_.append(data.data(), want);
    taken = want;
    // Check the magic as soon as its bytes are in, so a non-preface is recognised early.
    const size_t have = std::min(buf_.size(), size_t{4});
    char magic[4];
    const uint32_t m = kExchangeMagic;
    magic[0] = static_cast<char>(m >> 24), magic[1] = static_cast<char>(m >> 16);
    magic[2] = static_cast<char>(m >> 8), magic[3] = static_cast<char>(m);
    if (std::memcmp(buf_.data(), magic, have) != 0) {
      state_ = State::kInvalid;
      error_ = "magic";
      // Nothing of this read is a preface: give back only what earlier reads took.
      buf_.resize(buf_.size() - want);
      return 0;
    }
    if (buf_.size() < kExchangeHeaderSize) return taken;
    size_ = getBigEndian(buf_.data() + 4);
    magic_ok_ = true;
    buf_.clear();
    data.remove_prefix(want);
    if (size_ > kMaxExchangePayload) discarding_ = true;
  }
  if (discarding_) {
    // Dropped without buffering: these bytes are the (refused) preface's, not the application's.
    const size_t drop = std::min<size_t>(size_ - discarded_, data.size());
    discarded_ += static_cast<uint32_t>(drop);
    if (discarded_ == size_) {
      state_ = State::kInvalid;
      error_ = "size";
    }
    return taken + drop;
  }
  const size_t want = std::min<size_t>(size_ - buf_.size(), data.size());
  buf_.append(data.data(), want);
  taken += want;
  if (buf_.size() == size_) decodePayload();
  return taken;
}

void ExchangeParser::decodePayload() {
  google::protobuf::Any any;
  google::protobuf::Struct data;
  if (!any.ParseFromString(buf_) || !any.UnpackTo(&data)) {
    state_ = State::kInvalid;
    error_ = "payload";
    buf_.clear();
    return;
  }
  buf_.clear();
  buf_.shrink_to_fit();
  auto md = data.fields().find(kMetadataKey);
  if (md != data.fields().end() && md->second.has_struct_value()) {
    peer_ = std::make_shared<const WorkloadInfo>(workloadFromMetadata(md->second.struct_value()));
  }
  auto id = data.fields().find(kMetadataIdKey);
  if (id != data.fields().end()) peer_id_ = id->second.string_value();
  state_ = State::kDone;
}

void ExchangeParser::finish() {
  if (state_ != State::kReading) return;
  state_ = State::kInvalid;
  error_ = discarding_ ? "size" : "eof";
}

std::string ExchangeParser::takeRaw() {
  if (magic_ok_) return {};  // past the magic the bytes were a (broken) preface: never application data
  std::string out;
  out.swap(buf_);
  return out;
}

void TcpPeers::settleDownstream(WorkloadInfoConstSharedPtr peer) {
  downstream = std::move(peer);
  downstream_settled = true;
  if (listener) listener->onPeersChanged();
}

void TcpPeers::settleUpstream(WorkloadInfoConstSharedPtr peer) {
  upstream = std::move(peer);
  upstream_settled = true;
  if (listener) listener->onPeersChanged();
}

TcpPeers& tcpPeers(http::StreamInfo& info) {
  if (!info.istio_peer) info.istio_peer = std::make_shared<TcpPeers>();
  // In a TCP session's StreamInfo only this function writes istio_peer.
  return *static_cast<TcpPeers*>(const_cast<void*>(info.istio_peer.get()));
}

TcpPeers* findTcpPeers(const http::StreamInfo& info) {
  return static_cast<TcpPeers*>(const_cast<void*>(info.istio_peer.get()));
}

void bindExchangeStats(stats::Store& store) {
  const ExchangeCounters* current = g_counters.load(std::memory_order_acquire);
  if (current != nullptr && current->store == store.handleId()) return;
  // The latest store wins (a process has one; tests make several). Kept per store, never freed: handles
  // of a store a connection may still count into must stay valid.
  static std::mutex mu;
  static auto* all = new std::unordered_map<uint32_t, std::unique_ptr<ExchangeCounters>>();
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = (*all)[store.handleId()];
  if (!slot) {
    slot.reset(new ExchangeCounters{store.handleId(),
                                    {store.counter("metadata_exchange.alpn_protocol_found"),
                                     store.counter("metadata_exchange.alpn_protocol_not_found"),
                                     store.counter("metadata_exchange.metadata_added"),
                                     store.counter("metadata_exchange.initial_header_not_found"),
                                     store.counter("metadata_exchange.header_not_found")}});
  }
  g_counters.store(slot.get(), std::memory_order_release);
}

void countExchange(ExchangeEvent event) {
  if (ExchangeCounters* c = g_counters.load(std::memory_order_acquire)) {
    c->counters[static_cast<size_t>(event)].inc();
  }
}

std::unique_ptr<UpstreamExchange> UpstreamExchange::create(const upstream::ClusterInfoConstSharedPtr& cluster,
                                                           http::StreamInfo& info) {
  TcpPeers* peers = findTcpPeers(info);
  if (!cluster || cachedProtocol(cluster).empty()) {
    if (peers) peers->settleUpstream(nullptr);
    return nullptr;
  }
  const std::string& protocol = cachedProtocol(cluster);
  const std::string_view alpn = info.upstream_tls ? std::string_view(info.upstream_tls->alpn) : "";
  if (alpn != protocol) {
    countExchange(ExchangeEvent::kAlpnNotFound);
    if (peers) peers->settleUpstream(nullptr);
    return nullptr;
  }
  countExchange(ExchangeEvent::kAlpnFound);
  countExchange(ExchangeEvent::kMetadataAdded);
  return std::make_unique<UpstreamExchange>(info);
}

size_t UpstreamExchange::onUpstreamRead(char* data, size_t n, bool end_stream) {
  if (done()) return n;
  const size_t taken = parser_.consume(std::string_view(data, n));
  if (taken > 0 && taken < n) std::memmove(data, data + taken, n - taken);
  n -= taken;
  if (end_stream) parser_.finish();
  if (done()) settle();
  return n;
}

void UpstreamExchange::settle() {
  if (parser_.state() == ExchangeParser::State::kInvalid) {
    // Bytes taken before the magic proved wrong are the application's: tcp_proxy puts them back.
    restored_ = parser_.takeRaw();
    countExchange(parser_.error() == "payload" ? ExchangeEvent::kHeaderNotFound
                                               : ExchangeEvent::kInitialHeaderNotFound);
    SKIFF_LOG(kConnection, debug, "[C{}] istio-peer-exchange: upstream sent no valid preface ({})",
              info_.connection_id, parser_.error());
    tcpPeers(info_).settleUpstream(nullptr);
    return;
  }
  tcpPeers(info_).settleUpstream(parser_.peer());
}

}  // namespace skiff::filters::istio
