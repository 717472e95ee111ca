// The ext_proc filter for one HTTP stream: one gRPC stream to the processor, opened on the first message,
// carrying headers, body and trailers of both directions as the processing mode says, and applying the
// processor's mutations, immediate responses and mode overrides.
#pragma once

#include <asio/steady_timer.hpp>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "filters/http/ext_proc/ext_proc_config.h"
#include "skiff/grpc/async_client.h"
#include "skiff/http/filter.h"

namespace envoy::service::ext_proc::v3 {
class ProcessingRequest;
class ProcessingResponse;
class CommonResponse;
class HeaderMutation;
class ImmediateResponse;
}  // namespace envoy::service::ext_proc::v3

namespace skiff::filters::ext_proc {

class ExtProcFilter : public http::StreamFilter, public grpc::StreamCallbacks {
 public:
  explicit ExtProcFilter(std::shared_ptr<const ExtProcConfig> config);
  ~ExtProcFilter() override;

  void setDecoderFilterCallbacks(http::DecoderFilterCallbacks& cb) override { decoder_ = &cb; }
  void setEncoderFilterCallbacks(http::EncoderFilterCallbacks& cb) override { encoder_ = &cb; }
  http::HeadersStatus decodeHeaders(http::HeaderMap& headers, bool end_stream) override;
  http::DataStatus decodeData(http::Buffer& data, bool end_stream) override;
  http::TrailersStatus decodeTrailers(http::HeaderMap& trailers) override;
  http::HeadersStatus encodeHeaders(http::HeaderMap& headers, bool end_stream) override;
  http::DataStatus encodeData(http::Buffer& data, bool end_stream) override;
  http::TrailersStatus encodeTrailers(http::HeaderMap& trailers) override;
  void onDestroy() override;

  // grpc::StreamCallbacks
  void onReceiveMessage(std::string message) override;
  void onRemoteClose(const grpc::Status& status) override;
  void onSendQueueLow() override;

 private:
  enum class Await { kNone, kHeaders, kBody, kTrailers };

  // One direction's progress (request = decode, response = encode).
  struct Direction {
    bool request = true;
    bool send_headers = true;
    BodyMode body = BodyMode::kNone;
    bool send_trailers = false;
    bool started = false;            // headers reached us
    bool headers_pending = false;    // headers message sent, reply outstanding
    bool stopped = false;            // we hold iteration in this direction
    bool end_seen = false;           // the direction's end reached us
    bool body_expected = false;      // headers were not end_stream
    bool body_sent = false;          // buffered modes: the body message went out
    bool partial_over = false;       // BUFFERED_PARTIAL: the partial body was processed; rest passes through
    size_t body_in_flight = 0;       // body messages awaiting replies
    std::deque<size_t> chunk_sizes;  // STREAMED: sizes of held chunks in flight, oldest first
    size_t processed_bytes = 0;      // STREAMED: processed prefix of the held buffer
    size_t unsent_bytes = 0;         // STREAMED: held bytes that arrived while headers were pending
    bool unsent_end = false;
    http::HeaderMap* trailers = nullptr;  // trailers reached us
    bool trailers_pending = false;        // trailers message sent, reply outstanding
    bool trailers_sent = false;
    bool duplex_started = false;  // FULL_DUPLEX_STREAMED: a body chunk went to the processor
    bool duplex_eos = false;      // FULL_DUPLEX_STREAMED: the processor's body ended
    bool done = false;            // no more messages for this direction
    bool released = false;        // the headers went on past this filter
  };

  Direction& dir(bool request) { return request ? request_ : response_; }
  http::HeaderMap* headersOf(bool request);
  http::Buffer* bufferOf(bool request);
  bool awaiting(const Direction& d) const {
    return d.headers_pending || d.body_in_flight > 0 || d.trailers_pending;
  }

  http::HeadersStatus onHeaders(Direction& d, http::HeaderMap& headers, bool end_stream);
  http::DataStatus onData(Direction& d, http::Buffer& data, bool end_stream);
  http::TrailersStatus onTrailers(Direction& d, http::HeaderMap& trailers);
  // Sends what is due next in `d`, or lets iteration continue when nothing is outstanding.
  void advance(Direction& d);
  void resume(Direction& d);
  bool sendBody(Direction& d, std::string body, bool end_stream);

  // `expect_reply` false: no reply is owed for this message (full-duplex body chunks), so no timer.
  bool send(envoy::service::ext_proc::v3::ProcessingRequest& request, bool expect_reply = true);
  http::DataStatus onDuplexData(Direction& d, http::Buffer& data, bool end_stream);
  void onDuplexChunk(Direction& d, const std::string& chunk, bool end_of_stream);
  // Full duplex: passes held processor output on (and the headers, if still held); false when not yet.
  bool flushDuplex(Direction& d);
  void applyDynamicMetadata(const envoy::service::ext_proc::v3::ProcessingResponse& response);
  const MetadataOptions& metadataOptions() const {
    return metadata_override_ ? *metadata_override_ : config_->metadata;
  }
  void armTimer(std::chrono::milliseconds timeout);
  void onTimeout();
  void handleResponse(const envoy::service::ext_proc::v3::ProcessingResponse& response);
  bool applyCommon(Direction& d, const envoy::service::ext_proc::v3::CommonResponse& common,
                   bool headers_reply, size_t chunk_offset, size_t chunk_len, bool buffered_reply);
  bool applyHeaderMutation(http::HeaderMap& headers, const envoy::service::ext_proc::v3::HeaderMutation& m,
                           bool request_headers);
  void immediateResponse(const envoy::service::ext_proc::v3::ImmediateResponse& response);
  void applyModeOverride(const Mode& mode);
  void addAttributes(envoy::service::ext_proc::v3::ProcessingRequest& request, bool request_side);
  // The processor went away or misbehaved: continue without it (failure_mode_allow) or fail the stream.
  void fail(std::string_view details, bool timeout);
  void finishProcessing();  // no more messages in either direction; releases held iteration
  void closeStream();
  void maybeCloseSend();
  void resumeDuplexReading();  // undoes the FULL_DUPLEX_STREAMED send-queue pause

  std::shared_ptr<const ExtProcConfig> config_;
  std::optional<grpc::ServiceConfig> service_override_;
  std::optional<MetadataOptions> metadata_override_;
  http::DecoderFilterCallbacks* decoder_ = nullptr;
  http::EncoderFilterCallbacks* encoder_ = nullptr;
  grpc::AsyncStreamPtr stream_;
  std::unique_ptr<asio::steady_timer> timer_;
  std::chrono::milliseconds current_timeout_{0};
  Direction request_, response_;
  bool disabled_ = false;       // per-route disabled, or processing ended
  bool stream_closed_ = false;  // the gRPC stream ended or was abandoned
  bool send_closed_ = false;    // we half-closed: nothing more to send
  bool send_failed_ = false;    // the stream could not take a message (no channel to the processor)
  bool local_reply_ = false;    // we answered locally: the reply is not processed
  bool destroyed_ = false;
  bool duplex_paused_ = false;  // downstream reading paused: too many request bytes queued to the processor
  bool timeout_overridden_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // weak copies guard timer handlers
};

}  // namespace skiff::filters::ext_proc
