// istio.metadata_exchange as a network filter (the downstream half of Istio's TCP exchange): on a
// connection whose TLS negotiated the configured ALPN it strips the client's preface, records the peer for
// the TCP istio.stats, and answers with this proxy's own preface.
#include <google/protobuf/any.pb.h>

#include "filters/istio/metadata_exchange.pb.h"
#include "filters/istio/tcp_exchange.h"
#include "filters/network/network_filter.h"
#include "skiff/common/logging.h"
#include "skiff/config/typed_struct.h"

namespace skiff::filters::istio {
namespace {

namespace net = filters::network;

constexpr std::string_view kExchangeType =
    "type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange";

class TcpExchangeFilter : public net::Filter {
 public:
  explicit TcpExchangeFilter(std::shared_ptr<const std::string> protocol) : protocol_(std::move(protocol)) {}

  void setCallbacks(net::FilterCallbacks& callbacks) override { callbacks_ = &callbacks; }

  net::FilterStatus onNewConnection() override {
    const http::StreamInfo& info = callbacks_->streamInfo();
    const bool negotiated = info.connection && info.connection->alpn == *protocol_;
    countExchange(negotiated ? ExchangeEvent::kAlpnFound : ExchangeEvent::kAlpnNotFound);
    http::StreamInfo* mutable_info = callbacks_->mutableStreamInfo();
    peers_ = mutable_info ? &tcpPeers(*mutable_info) : nullptr;
    if (!negotiated) {
      state_ = State::kOff;
      if (peers_) peers_->settleDownstream(nullptr);
      return net::FilterStatus::kContinue;
    }
    state_ = State::kReading;
    if (peers_) peers_->downstream_expected = true;
    return net::FilterStatus::kContinue;
  }

  // The client's preface comes first; the application's bytes after it flow on (also while it is still
  // incomplete: what was taken is simply not passed on).
  net::FilterStatus onDownstreamData(std::string& data, bool end_stream) override {
    if (state_ != State::kReading) return net::FilterStatus::kContinue;
    const size_t taken = parser_.consume(data);
    data.erase(0, taken);
    if (peers_) peers_->downstream_preface_in += taken;
    if (end_stream) parser_.finish();
    switch (parser_.state()) {
      case ExchangeParser::State::kReading:
        break;
      case ExchangeParser::State::kDone:
        state_ = State::kDone;
        // Answer once the client proved it speaks the protocol (unless the application spoke first).
        writePreface();
        if (peers_) peers_->settleDownstream(parser_.peer());
        break;
      case ExchangeParser::State::kInvalid:
        state_ = State::kOff;
        countExchange(parser_.error() == "payload" ? ExchangeEvent::kHeaderNotFound
                                                   : ExchangeEvent::kInitialHeaderNotFound);
        SKIFF_LOG(kConnection, debug, "[C{}] istio-peer-exchange: downstream sent no valid preface ({})",
                  callbacks_->streamInfo().connection_id, parser_.error());
        {
          const std::string raw = parser_.takeRaw();  // the bytes were the application's after all
          if (peers_) peers_->downstream_preface_in -= raw.size();
          data.insert(0, raw);
        }
        if (peers_) peers_->settleDownstream(nullptr);
        break;
    }
    return net::FilterStatus::kContinue;
  }

  // A server that speaks first (a database greeting): the preface goes ahead of its first bytes, as Istio
  // writes it on the first write.
  net::FilterStatus onUpstreamData(std::string& data, bool) override {
    if ((state_ == State::kReading || state_ == State::kDone) && !written_ && !data.empty()) {
      data.insert(0, localExchangePreface());
      written_ = true;
      if (peers_) peers_->downstream_preface_out = localExchangePreface().size();
      countExchange(ExchangeEvent::kMetadataAdded);
    }
    return net::FilterStatus::kContinue;
  }

 private:
  enum class State { kNew, kReading, kDone, kOff };

  void writePreface() {
    if (written_) return;
    written_ = true;
    callbacks_->writeDownstream(localExchangePreface());
    if (peers_) peers_->downstream_preface_out = localExchangePreface().size();
    countExchange(ExchangeEvent::kMetadataAdded);
  }

  std::shared_ptr<const std::string> protocol_;
  net::FilterCallbacks* callbacks_ = nullptr;
  TcpPeers* peers_ = nullptr;
  State state_ = State::kNew;
  bool written_ = false;
  ExchangeParser parser_;
};

class TcpExchangeFactory : public net::FilterFactory {
 public:
  explicit TcpExchangeFactory(std::string protocol)
      : protocol_(std::make_shared<const std::string>(std::move(protocol))) {}
  std::unique_ptr<net::Filter> createFilter() const override {
    return std::make_unique<TcpExchangeFilter>(protocol_);
  }

 private:
  std::shared_ptr<const std::string> protocol_;
};

net::FilterFactorySharedPtr createExchange(const google::protobuf::Any& in, stats::Store& store,
                                           const std::string& path) {
  google::protobuf::Any any = in;
  config::unwrapTypedStruct(in, &any);
  envoy::tcp::metadataexchange::config::MetadataExchange proto;
  if (!any.type_url().empty() && !any.UnpackTo(&proto)) {
    throw std::invalid_argument(path + ".typed_config: istio.metadata_exchange: cannot decode " +
                                std::string(kExchangeType));
  }
  bindExchangeStats(store);
  std::string protocol = proto.protocol().empty() ? "istio-peer-exchange" : proto.protocol();
  return std::make_shared<TcpExchangeFactory>(std::move(protocol));
}

}  // namespace

void registerIstioTcpExchange() {
  net::registerNetworkFilter(
      net::FilterRegistration{"istio.metadata_exchange", std::string(kExchangeType), createExchange});
}

}  // namespace skiff::filters::istio
