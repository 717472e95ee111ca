// Istio's TCP metadata exchange (envoy.tcp.metadataexchange.config.MetadataExchange, ALPN
// "istio-peer-exchange"): once TLS between two sidecars negotiated that protocol, each side first sends
// a preface carrying its workload metadata, and strips the peer's before the application's bytes.
// The downstream half is a network filter (tcp_exchange_filter.cc); the upstream half, configured in a
// cluster's `filters`, is UpstreamExchange, driven by tcp_proxy.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "filters/istio/workload.h"
#include "skiff/http/stream_info.h"
#include "skiff/upstream/cluster_info.h"

namespace skiff::stats {
class Store;
}

namespace skiff::filters::istio {

// Wire format (network byte order): magic, payload length, then the payload: a google.protobuf.Any
// (type.googleapis.com/google.protobuf.Struct) whose value is the deterministic serialization of
// {"x-envoy-peer-metadata": <node metadata Struct>, "x-envoy-peer-metadata-id": <node id>}.
inline constexpr uint32_t kExchangeMagic = 0x3D230467;
inline constexpr size_t kExchangeHeaderSize = 8;
// Larger payloads are refused (Istio sets no bound; a node's metadata is a few hundred bytes): their bytes
// are read and dropped, then the peer is unknown.
inline constexpr uint32_t kMaxExchangePayload = 64 * 1024;

// The preface this proxy sends for `node_id` and `metadata` (the keys Istio's exchange carries).
std::string encodeExchangePreface(std::string_view node_id, const google::protobuf::Struct& metadata);
// The local node's preface, made once.
const std::string& localExchangePreface();

// Incremental reader of a peer's preface.
class ExchangeParser {
 public:
  enum class State { kReading, kDone, kInvalid };
  // Takes the leading bytes of `data` that belong to the preface and returns how many it took (the rest
  // is application data). Bytes are only taken while they can still be a preface: on a wrong magic the
  // state turns kInvalid and takeRaw() gives back what was taken before.
  size_t consume(std::string_view data);
  // The stream ended: a preface still incomplete is invalid.
  void finish();
  State state() const { return state_; }
  // On kInvalid: the bytes taken earlier that turned out not to be a preface (to pass on unchanged).
  std::string takeRaw();
  // On kDone: the peer (null when the payload had no metadata) and its node id.
  const WorkloadInfoConstSharedPtr& peer() const { return peer_; }
  const std::string& peerId() const { return peer_id_; }
  // Why it is invalid, for logs and stats: "magic", "size", "payload", "eof".
  std::string_view error() const { return error_; }

 private:
  void decodePayload();
  State state_ = State::kReading;
  std::string buf_;
  bool magic_ok_ = false;
  bool discarding_ = false;  // an oversized payload: its bytes are dropped, not buffered
  uint32_t size_ = 0;
  uint32_t discarded_ = 0;
  WorkloadInfoConstSharedPtr peer_;
  std::string peer_id_;
  std::string_view error_;
};

// What the exchanges of one TCP connection learnt, kept in the session's StreamInfo::istio_peer (a TCP
// session's slot; HTTP streams keep a WorkloadInfo there) so the TCP istio.stats can label with it.
class TcpPeers {
 public:
  class Listener {
   public:
    virtual ~Listener() = default;
    virtual void onPeersChanged() = 0;
  };
  // The downstream exchange runs on this connection (so the downstream peer settles later).
  bool downstream_expected = false;
  bool downstream_settled = false;
  bool upstream_settled = false;  // the upstream connection is up and its exchange (if any) is over
  // Downstream preface bytes stripped from / added to the connection: not the application's, so the TCP
  // byte counters leave them out (Istio's exchange filter drains them before istio.stats counts).
  uint64_t downstream_preface_in = 0;
  uint64_t downstream_preface_out = 0;
  WorkloadInfoConstSharedPtr downstream;
  WorkloadInfoConstSharedPtr upstream;
  Listener* listener = nullptr;  // istio.stats, while it lives

  void settleDownstream(WorkloadInfoConstSharedPtr peer);
  void settleUpstream(WorkloadInfoConstSharedPtr peer);
};
// The connection's TcpPeers, made on first use.
TcpPeers& tcpPeers(http::StreamInfo& info);
// Null when no exchange or stats filter made one.
TcpPeers* findTcpPeers(const http::StreamInfo& info);

// Istio's filter counters (metadata_exchange.alpn_protocol_found, ...), in the store of the latest exchange
// or TCP stats factory built (a process has one store); until one is built nothing is counted.
void bindExchangeStats(stats::Store& store);
enum class ExchangeEvent {
  kAlpnFound,
  kAlpnNotFound,
  kMetadataAdded,
  kInitialHeaderNotFound,
  kHeaderNotFound
};
void countExchange(ExchangeEvent event);

// The ALPN protocol of the istio.metadata_exchange in a cluster's `filters` (plain or in a TypedStruct;
// "istio-peer-exchange" when unset); "" when it has none.
std::string exchangeProtocolOf(const envoy::config::cluster::v3::Cluster& cluster);

// The upstream half, for a cluster whose `filters` hold istio.metadata_exchange. tcp_proxy asks create()
// once the upstream connection (and its TLS handshake) is up; it writes preface() before anything else and
// passes the upstream's bytes through onUpstreamRead() until done().
class UpstreamExchange {
 public:
  // Null unless the cluster has the filter and the negotiated ALPN (`info.upstream_tls`) is its protocol.
  // Either way it tells a waiting TcpPeers that the upstream connection is up.
  static std::unique_ptr<UpstreamExchange> create(const upstream::ClusterInfoConstSharedPtr& cluster,
                                                  http::StreamInfo& info);
  explicit UpstreamExchange(http::StreamInfo& info) : info_(info) {}

  const std::string& preface() const { return localExchangePreface(); }
  // `data[0, n)` was just read from the upstream: strips the preface bytes in it, moves the rest to
  // `data` and returns its length. `end_stream`: the upstream closed its side.
  size_t onUpstreamRead(char* data, size_t n, bool end_stream);
  bool done() const { return parser_.state() != ExchangeParser::State::kReading; }
  // Once done(): bytes earlier reads gave the parser that were no preface after all (at most 7, e.g. a
  // magic prefix then other bytes or the FIN). They go before what the last onUpstreamRead() returned.
  std::string takeRestored() { return std::move(restored_); }

 private:
  void settle();
  http::StreamInfo& info_;
  ExchangeParser parser_;
  std::string restored_;
};

}  // namespace skiff::filters::istio
