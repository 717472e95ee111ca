// A sans-IO HTTP/2 codec over nghttp2: bytes in → stream events, stream actions → bytes out.
//
// The codec never touches a socket. The owner feeds received bytes to receive(), takes what must be sent
// with takeOutput(), and reacts to Callbacks. One codec serves one connection, client or server side.
// Headers use skiff's HeaderMap with the pseudo-headers (":method", ":status"...) first, as HTTP/1 does.
//
// Abuse limits (rapid reset, CONTINUATION, PING and SETTINGS floods, header-list size, Envoy's
// Http2ProtocolOptions flood limits: outbound frames, outbound control frames, empty frames, PRIORITY and
// WINDOW_UPDATE floods) are enforced here: a violation counts the matching http2.* stat, queues GOAWAY and
// makes wantsClose() true.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "skiff/http/filter.h"
#include "skiff/http/header_map.h"
#include "skiff/stats/stats.h"

namespace envoy::config::core::v3 {
class Http2ProtocolOptions;
}

namespace skiff::http2 {

// RFC 9113 error codes used by callers.
enum ErrorCode : uint32_t {
  kNoError = 0x0,
  kProtocolError = 0x1,
  kInternalError = 0x2,
  kFlowControlError = 0x3,
  kRefusedStream = 0x7,
  kCancel = 0x8,
  kEnhanceYourCalm = 0xb,
};

// Envoy's Http2ProtocolOptions with Envoy's defaults (RFC defaults where Envoy keeps them).
struct Settings {
  uint32_t hpack_table_size = 4096;
  uint32_t max_concurrent_streams = 2147483647;
  uint32_t initial_stream_window_size = 268435456;      // 256 MiB
  uint32_t initial_connection_window_size = 268435456;  // 256 MiB
  uint32_t max_header_list_size = 60 * 1024;            // HCM max_request_headers_kb (60 KiB)
  uint32_t max_headers_count = 100;                     // HCM common_http_protocol_options.max_headers_count
  uint32_t max_outbound_frames = 10000;
  uint32_t max_outbound_control_frames = 1000;
  uint32_t max_consecutive_inbound_frames_with_empty_payload = 1;
  uint32_t max_inbound_priority_frames_per_stream = 100;
  uint32_t max_inbound_window_update_frames_per_data_frame_sent = 10;
  uint32_t max_continuation_frames = 8;  // per header block (nghttp2's own limit)
  // Rapid reset (CVE-2023-44487), Envoy's overload.premature_reset_*: once
  // `premature_reset_total_stream_count` streams were opened, more than half of them reset by the peer within
  // `premature_reset_min_lifetime_ms` closes the connection; that many premature resets close it at once.
  uint32_t premature_reset_total_stream_count = 500;
  uint32_t premature_reset_min_lifetime_ms = 1000;
  bool allow_connect = false;

  // Fields left unset in `proto` keep the defaults above.
  static Settings fromProto(const envoy::config::core::v3::Http2ProtocolOptions& proto);
};

// http2.* (downstream: at the root; upstream: cluster.<name>.http2.*), Envoy's names.
struct Http2Stats {
  Http2Stats(stats::Store& store, const std::string& prefix);  // prefix like "http2." or "cluster.x.http2."
  stats::Counter header_overflow, headers_cb_no_stream, inbound_empty_frames_flood,
      inbound_priority_frames_flood, inbound_window_update_frames_flood, outbound_control_flood,
      outbound_flood, rx_messaging_error, rx_reset, stream_refused_errors, trailers, tx_reset, goaway_sent,
      too_many_header_frames, keepalive_timeout, dropped_headers_with_underscores, premature_resets;
  stats::Gauge streams_active, pending_send_data;
};

class Codec {
 public:
  enum class Role { kClient, kServer };

  class Callbacks {
   public:
    virtual ~Callbacks() = default;
    // Server: a new request stream opened (before its headers are delivered). Returning false refuses it
    // (RST_STREAM REFUSED_STREAM), e.g. while draining.
    virtual bool onNewStream(int32_t stream_id) { return true; }
    // The first header block of a stream (request, or final non-1xx response).
    virtual void onHeaders(int32_t stream_id, std::unique_ptr<http::HeaderMap> headers, bool end_stream) = 0;
    virtual void onData(int32_t stream_id, http::Buffer& data, bool end_stream) = 0;
    virtual void onTrailers(int32_t stream_id, std::unique_ptr<http::HeaderMap> trailers) = 0;
    // The stream is gone. `error_code` 0 = both sides ended normally; otherwise the RST_STREAM code (ours
    // or the peer's: `remote` says which).
    virtual void onStreamClose(int32_t stream_id, uint32_t error_code, bool remote) = 0;
    // The peer sent GOAWAY: streams above `last_stream_id` were not processed (safe to retry).
    virtual void onGoAway(uint32_t last_stream_id, uint32_t error_code) {}
  };

  Codec(Role role, const Settings& settings, Callbacks& callbacks, const Http2Stats* stats);
  ~Codec();
  Codec(const Codec&) = delete;
  Codec& operator=(const Codec&) = delete;

  // Feeds received bytes. False on a connection error (GOAWAY queued; send it and close).
  bool receive(std::string_view bytes);
  // Appends every frame ready to be sent to `out`. Returns false on an internal error.
  bool takeOutput(std::string& out);
  // Envoy's outbound queue accounting: frames takeOutput() produced that the owner has not written yet.
  // `control` are PING/SETTINGS ACKs and RST_STREAMs (max_outbound_control_frames); `frames` are all of
  // them (max_outbound_frames). Checked while receiving on the server side, as Envoy does.
  struct OutboundFrames {
    uint32_t frames = 0;
    uint32_t control = 0;
  };
  OutboundFrames outboundFrames() const { return {outbound_frames_, outbound_control_frames_}; }
  // The owner wrote `written` (a value outboundFrames() returned when it took that output).
  void onOutputWritten(OutboundFrames written);
  // The owner wrote everything it took.
  void onOutputDrained() { onOutputWritten(outboundFrames()); }

  // Client: opens a stream with request `headers`; returns the stream id, or -1 (no stream ids left,
  // GOAWAY received, or the peer's max_concurrent_streams reached: see canOpenStream()).
  int32_t submitRequest(const http::HeaderMap& headers, bool end_stream);
  bool canOpenStream() const;
  // Server: response headers (1xx allowed, then the final one).
  bool submitResponse(int32_t stream_id, const http::HeaderMap& headers, bool end_stream);
  // Queues body bytes, sent as flow control allows. `data` is moved from.
  bool sendData(int32_t stream_id, http::Buffer& data, bool end_stream);
  // Ends the stream with trailers (after any queued data).
  bool sendTrailers(int32_t stream_id, const http::HeaderMap& trailers);
  // RST_STREAM; onStreamClose follows.
  void resetStream(int32_t stream_id, uint32_t error_code);
  // RST_STREAM once our END_STREAM frame has been sent (at once if it has): a response that ends before
  // its request keeps its queued DATA, and the peer is then told to stop sending (RFC 9113 8.1).
  void resetStreamAfterEnd(int32_t stream_id, uint32_t error_code);
  // Graceful (`graceful`: last_stream_id = max, the shutdown notice) or final GOAWAY.
  void goAway(uint32_t error_code, bool graceful);

  // Flow control of a received stream: while disabled, its window is not reopened, so the peer stops
  // once the window is spent (memory stays bounded by the window, not by the sender).
  void readDisable(int32_t stream_id, bool disabled);
  // Bytes queued by sendData() not yet framed, over all streams.
  size_t pendingSendBytes() const { return pending_send_bytes_; }
  size_t streamPendingSendBytes(int32_t stream_id) const;

  // The session is finished (GOAWAY exchanged and no streams, or a fatal error) once output is written.
  bool wantsClose() const;
  bool goAwayReceived() const { return goaway_received_; }
  size_t activeStreams() const { return streams_.size(); }
  uint32_t peerMaxConcurrentStreams() const;
  // Why the session failed, for logs ("" when it did not).
  const std::string& error() const { return error_; }

  struct Impl;  // nghttp2 callback glue

 private:
  struct Stream;
  Stream* find(int32_t stream_id) const;
  void fail(uint32_t error_code, std::string reason);
  bool scanFrames(std::string_view bytes);
  bool trackEmptyFrame(uint8_t type, uint8_t flags, uint32_t payload);
  bool checkOutboundLimits();
  void setSendQueued(Stream& s, bool queued);

  Role role_;
  Settings settings_;
  Callbacks& callbacks_;
  const Http2Stats* stats_;
  void* session_ = nullptr;  // nghttp2_session*
  std::unordered_map<int32_t, std::unique_ptr<Stream>> streams_;
  mutable Stream* last_found_ = nullptr;  // find()'s cache
  size_t pending_send_bytes_ = 0;
  uint32_t pending_control_frames_ = 0;  // inbound PING/SETTINGS whose ACK is not serialized yet
  uint32_t outbound_frames_ = 0;
  uint32_t outbound_control_frames_ = 0;
  uint32_t pending_send_streams_ = 0;  // streams with body bytes or END_STREAM not framed yet
  bool goaway_received_ = false;
  bool failed_ = false;
  bool fatal_ = false;  // nghttp2 returned a fatal error: the session must not be used again
  std::string error_;

  // Raw frame scanner state (abuse limits need frame types nghttp2 does not report).
  size_t preface_left_ = 0;
  uint8_t frame_header_[9];
  size_t frame_header_have_ = 0;
  size_t frame_payload_left_ = 0;
  uint32_t continuation_count_ = 0;
  uint32_t consecutive_empty_frames_ = 0;
  uint64_t streams_opened_ = 0;
  uint64_t premature_resets_ = 0;
  uint64_t priority_frames_ = 0;
  uint64_t window_update_frames_ = 0;
  uint64_t outbound_data_frames_ = 0;
  bool padded_pending_ =
      false;  // the frame being scanned is PADDED: its first payload byte is the pad length
  uint8_t padded_type_ = 0;
  uint8_t padded_flags_ = 0;
  uint32_t padded_length_ = 0;
  std::string fatal_goaway_;  // hand-made GOAWAY after nghttp2 gave up on the session

  friend struct Impl;
};

}  // namespace skiff::http2
