// Http2 Codec: nghttp2 session glue, per-stream send queues with trailers, flow control and abuse limits.
#include "skiff/http/http2_codec.h"

#include <nghttp2/nghttp2.h>

#include <chrono>
#include <cstring>
#include <vector>

#include "envoy/config/core/v3/protocol.pb.h"

namespace skiff::http2 {

namespace {

constexpr size_t kClientPrefaceLen = 24;  // "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
constexpr uint8_t kData = 0x0, kHeaders = 0x1, kPriority = 0x2, kSettings = 0x4, kPing = 0x6,
                  kWindowUpdate = 0x8, kContinuation = 0x9;
constexpr uint8_t kFlagAck = 0x1, kFlagEndStream = 0x1, kFlagPadded = 0x8;

nghttp2_session* S(void* p) {
  return static_cast<nghttp2_session*>(p);
}

bool isConnectionHeader(std::string_view name, std::string_view value) {
  if (name == "connection" || name == "keep-alive" || name == "proxy-connection" ||
      name == "transfer-encoding" || name == "upgrade" || name == "host") {
    return true;
  }
  return name == "te" && value != "trailers";
}

// Header block to nghttp2's name/value array. Pseudo-headers go first (HPACK requires it); hop-by-hop
// headers are dropped (RFC 9113 8.2.2). Views point into `h` and `extra`.
std::vector<nghttp2_nv> toNv(const http::HeaderMap& h, bool request,
                             std::vector<std::pair<std::string, std::string>>& extra) {
  std::vector<nghttp2_nv> nv;
  nv.reserve(h.size() + 2);
  auto push = [&nv](std::string_view n, std::string_view v) {
    nv.push_back(nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                            reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(),
                            NGHTTP2_NV_FLAG_NONE});
  };
  if (request) {
    const std::string* method = h.get(http::headers::kMethod);
    const bool connect = method != nullptr && *method == "CONNECT";
    if (!connect && h.get(http::headers::kScheme) == nullptr) extra.emplace_back(":scheme", "http");
    const std::string* authority = h.get(http::headers::kAuthority);
    if ((authority == nullptr || authority->empty()) && h.get(http::headers::kHost) != nullptr) {
      extra.emplace_back(":authority", *h.get(http::headers::kHost));
    }
  }
  for (const auto& [n, v] : h) {
    if (!n.empty() && n[0] == ':') {
      if (n == http::headers::kAuthority && v.empty()) continue;
      push(n, v);
    }
  }
  for (const auto& [n, v] : extra) push(n, v);
  for (const auto& [n, v] : h) {
    if (n.empty() || n[0] == ':' || isConnectionHeader(n, v)) continue;
    push(n, v);
  }
  return nv;
}

}  // namespace

Settings Settings::fromProto(const envoy::config::core::v3::Http2ProtocolOptions& p) {
  Settings s;
  if (p.has_hpack_table_size()) s.hpack_table_size = p.hpack_table_size().value();
  if (p.has_max_concurrent_streams()) s.max_concurrent_streams = p.max_concurrent_streams().value();
  if (p.has_initial_stream_window_size())
    s.initial_stream_window_size = p.initial_stream_window_size().value();
  if (p.has_initial_connection_window_size())
    s.initial_connection_window_size = p.initial_connection_window_size().value();
  if (p.has_max_outbound_frames()) s.max_outbound_frames = p.max_outbound_frames().value();
  if (p.has_max_outbound_control_frames())
    s.max_outbound_control_frames = p.max_outbound_control_frames().value();
  if (p.has_max_consecutive_inbound_frames_with_empty_payload())
    s.max_consecutive_inbound_frames_with_empty_payload =
        p.max_consecutive_inbound_frames_with_empty_payload().value();
  if (p.has_max_inbound_priority_frames_per_stream())
    s.max_inbound_priority_frames_per_stream = p.max_inbound_priority_frames_per_stream().value();
  if (p.has_max_inbound_window_update_frames_per_data_frame_sent())
    s.max_inbound_window_update_frames_per_data_frame_sent =
        p.max_inbound_window_update_frames_per_data_frame_sent().value();
  s.allow_connect = p.allow_connect();
  return s;
}

Http2Stats::Http2Stats(stats::Store& store, const std::string& prefix)
    : header_overflow(store.counter(prefix + "header_overflow")),
      headers_cb_no_stream(store.counter(prefix + "headers_cb_no_stream")),
      inbound_empty_frames_flood(store.counter(prefix + "inbound_empty_frames_flood")),
      inbound_priority_frames_flood(store.counter(prefix + "inbound_priority_frames_flood")),
      inbound_window_update_frames_flood(store.counter(prefix + "inbound_window_update_frames_flood")),
      outbound_control_flood(store.counter(prefix + "outbound_control_flood")),
      outbound_flood(store.counter(prefix + "outbound_flood")),
      rx_messaging_error(store.counter(prefix + "rx_messaging_error")),
      rx_reset(store.counter(prefix + "rx_reset")),
      stream_refused_errors(store.counter(prefix + "stream_refused_errors")),
      trailers(store.counter(prefix + "trailers")),
      tx_reset(store.counter(prefix + "tx_reset")),
      goaway_sent(store.counter(prefix + "goaway_sent")),
      too_many_header_frames(store.counter(prefix + "too_many_header_frames")),
      keepalive_timeout(store.counter(prefix + "keepalive_timeout")),
      dropped_headers_with_underscores(store.counter(prefix + "dropped_headers_with_underscores")),
      premature_resets(store.counter(prefix + "premature_resets")),
      streams_active(store.gauge(prefix + "streams_active")),
      pending_send_data(store.gauge(prefix + "pending_send_data")) {}

struct Codec::Stream {
  int32_t id;
  std::chrono::steady_clock::time_point created = std::chrono::steady_clock::now();
  std::unique_ptr<http::HeaderMap> incoming;  // header block being received
  size_t incoming_bytes = 0;
  bool headers_delivered = false;
  bool refused = false;
  bool remote_reset = false;
  bool remote_ended = false;
  http::Buffer in_data;  // chunks of the DATA frame being received
  size_t unconsumed = 0;
  bool read_disabled = false;
  // Send side.
  http::Buffer out;
  size_t out_off = 0;
  bool has_provider = false;
  bool deferred = false;
  bool out_end = false;
  bool send_queued = false;      // counted in pending_send_streams_: bytes or END_STREAM not framed yet
  bool end_sent = false;         // our END_STREAM frame went out
  bool reset_after_end = false;  // RST_STREAM once it has (resetStreamAfterEnd)
  uint32_t reset_code = 0;
  std::unique_ptr<http::HeaderMap> out_trailers;
};

// nghttp2 callbacks, as static functions with the codec in user_data.
struct Codec::Impl {
  static Codec& C(void* user) { return *static_cast<Codec*>(user); }

  static int onBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    Codec& c = C(user);
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    const int32_t id = frame->hd.stream_id;
    Stream* s = c.find(id);
    if (s == nullptr) {
      if (c.role_ != Role::kServer || frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        if (c.stats_) c.stats_->headers_cb_no_stream.inc();
        return 0;
      }
      auto owned = std::make_unique<Stream>();
      owned->id = id;
      s = owned.get();
      c.streams_.emplace(id, std::move(owned));
      ++c.streams_opened_;
      if (c.stats_) c.stats_->streams_active.inc();
      if (!c.callbacks_.onNewStream(id)) {
        s->refused = true;
        if (c.stats_) c.stats_->stream_refused_errors.inc();
        nghttp2_submit_rst_stream(S(c.session_), NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
        return 0;
      }
    }
    s->incoming = std::make_unique<http::HeaderMap>();
    s->incoming_bytes = 0;
    return 0;
  }

  static int onHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                      const uint8_t* value, size_t valuelen, uint8_t, void* user) {
    Codec& c = C(user);
    Stream* s = c.find(frame->hd.stream_id);
    if (s == nullptr || s->refused || !s->incoming) return 0;
    s->incoming_bytes += namelen + valuelen + 32;  // RFC 9113 6.5.2 accounting
    if (s->incoming_bytes > c.settings_.max_header_list_size) {
      if (c.stats_) c.stats_->header_overflow.inc();
      c.fail(NGHTTP2_ENHANCE_YOUR_CALM, "header list too large");  // the connection goes, as Envoy's
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (s->incoming->size() >= c.settings_.max_headers_count) {
      if (c.stats_) c.stats_->header_overflow.inc();
      c.fail(NGHTTP2_ENHANCE_YOUR_CALM, "too many headers");
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    s->incoming->add(std::string_view(reinterpret_cast<const char*>(name), namelen),
                     std::string_view(reinterpret_cast<const char*>(value), valuelen));
    return 0;
  }

  static int onDataChunk(nghttp2_session* session, uint8_t, int32_t id, const uint8_t* data, size_t len,
                         void* user) {
    Codec& c = C(user);
    nghttp2_session_consume_connection(session, len);
    Stream* s = c.find(id);
    if (s == nullptr || s->refused) return 0;
    s->in_data.append(reinterpret_cast<const char*>(data), len);
    if (s->read_disabled) {
      s->unconsumed += len;
    } else {
      nghttp2_session_consume_stream(session, id, len);
    }
    return 0;
  }

  static int onFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    Codec& c = C(user);
    const int32_t id = frame->hd.stream_id;
    switch (frame->hd.type) {
      case NGHTTP2_HEADERS: {
        Stream* s = c.find(id);
        if (s == nullptr || s->refused || !s->incoming) return 0;
        const bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
        auto headers = std::move(s->incoming);
        if (!s->headers_delivered) {
          if (c.role_ == Role::kClient) {
            const std::string_view status = headers->getOr(http::headers::kStatus);
            if (!status.empty() && status[0] == '1' && !end) return 0;  // 1xx: wait for the final one
          }
          s->headers_delivered = true;
          if (end) s->remote_ended = true;
          c.callbacks_.onHeaders(id, std::move(headers), end);
        } else {
          s->remote_ended = true;
          if (c.stats_) c.stats_->trailers.inc();
          c.callbacks_.onTrailers(id, std::move(headers));
        }
        return 0;
      }
      case NGHTTP2_DATA: {
        Stream* s = c.find(id);
        if (s == nullptr || s->refused) return 0;
        const bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
        if (s->in_data.empty() && !end) return 0;
        http::Buffer data;
        data.swap(s->in_data);
        if (end) s->remote_ended = true;
        c.callbacks_.onData(id, data, end);
        return 0;
      }
      case NGHTTP2_RST_STREAM: {
        if (c.stats_) c.stats_->rx_reset.inc();
        if (Stream* s = c.find(id)) s->remote_reset = true;
        return 0;
      }
      case NGHTTP2_GOAWAY:
        c.goaway_received_ = true;
        c.callbacks_.onGoAway(static_cast<uint32_t>(frame->goaway.last_stream_id), frame->goaway.error_code);
        return 0;
      default:
        return 0;
    }
  }

  static int onInvalidFrame(nghttp2_session*, const nghttp2_frame*, int, void* user) {
    Codec& c = C(user);
    if (c.stats_) c.stats_->rx_messaging_error.inc();
    return 0;
  }

  static int onFrameSend(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    Codec& c = C(user);
    const uint8_t type = frame->hd.type;
    ++c.outbound_frames_;
    if (type == NGHTTP2_RST_STREAM ||
        ((type == NGHTTP2_PING || type == NGHTTP2_SETTINGS) && (frame->hd.flags & NGHTTP2_FLAG_ACK))) {
      ++c.outbound_control_frames_;
    }
    if (type == NGHTTP2_DATA) ++c.outbound_data_frames_;
    if ((frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
      if (Stream* s = c.find(frame->hd.stream_id)) {
        s->end_sent = true;
        if (s->reset_after_end) {
          s->reset_after_end = false;
          nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, s->id, s->reset_code);
        }
      }
    }
    if (c.stats_ == nullptr) return 0;
    if (frame->hd.type == NGHTTP2_RST_STREAM) c.stats_->tx_reset.inc();
    if (frame->hd.type == NGHTTP2_GOAWAY) c.stats_->goaway_sent.inc();
    return 0;
  }

  static int onStreamClose(nghttp2_session*, int32_t id, uint32_t error_code, void* user) {
    Codec& c = C(user);
    auto it = c.streams_.find(id);
    if (it == c.streams_.end()) return 0;
    std::unique_ptr<Stream> s = std::move(it->second);
    c.streams_.erase(it);
    if (c.last_found_ == s.get()) c.last_found_ = nullptr;
    if (c.stats_) c.stats_->streams_active.dec();
    c.pending_send_bytes_ -= s->out.size() - s->out_off;
    c.setSendQueued(*s, false);
    if (s->refused) return 0;
    const bool remote = s->remote_reset;
    if (remote && error_code != 0 && c.role_ == Role::kServer) {
      // Rapid reset (CVE-2023-44487): streams the client opens and resets at once.
      const auto lifetime = std::chrono::steady_clock::now() - s->created;
      if (lifetime < std::chrono::milliseconds(c.settings_.premature_reset_min_lifetime_ms)) {
        ++c.premature_resets_;
        const uint64_t limit = c.settings_.premature_reset_total_stream_count;
        if (c.premature_resets_ >= limit ||
            (c.streams_opened_ >= limit && c.premature_resets_ * 2 > c.streams_opened_)) {
          if (c.stats_) c.stats_->premature_resets.inc();
          c.callbacks_.onStreamClose(id, error_code, remote);
          c.fail(NGHTTP2_ENHANCE_YOUR_CALM, "too many premature stream resets");
          return 0;
        }
      }
    }
    c.callbacks_.onStreamClose(id, error_code, remote);
    return 0;
  }

  static ssize_t readData(nghttp2_session* session, int32_t id, uint8_t* buf, size_t length, uint32_t* flags,
                          nghttp2_data_source*, void* user) {
    Codec& c = C(user);
    Stream* s = c.find(id);
    if (s == nullptr) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    const size_t avail = s->out.size() - s->out_off;
    const size_t n = std::min(avail, length);
    if (n > 0) {
      std::memcpy(buf, s->out.data() + s->out_off, n);
      s->out_off += n;
      c.pending_send_bytes_ -= n;
      if (s->out_off == s->out.size()) {
        s->out.clear();
        s->out_off = 0;
      }
    }
    if (s->out_off == s->out.size()) c.setSendQueued(*s, false);
    if (s->out_off == s->out.size() && s->out_end) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (s->out_trailers) {
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        std::vector<std::pair<std::string, std::string>> extra;
        auto nv = toNv(*s->out_trailers, false, extra);
        nghttp2_submit_trailer(session, id, nv.data(), nv.size());
        s->out_trailers.reset();
      }
      return static_cast<ssize_t>(n);
    }
    if (n == 0) {
      s->deferred = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    return static_cast<ssize_t>(n);
  }
};

Codec::Codec(Role role, const Settings& settings, Callbacks& callbacks, const Http2Stats* stats)
    : role_(role), settings_(settings), callbacks_(callbacks), stats_(stats) {
  nghttp2_session_callbacks* cbs = nullptr;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, &Impl::onBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(cbs, &Impl::onHeader);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &Impl::onDataChunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &Impl::onFrameRecv);
  nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs, &Impl::onInvalidFrame);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, &Impl::onFrameSend);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &Impl::onStreamClose);
  nghttp2_option* opt = nullptr;
  nghttp2_option_new(&opt);
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_max_continuations(opt, settings_.max_continuation_frames + 1);  // ours trips first
  nghttp2_option_set_max_reserved_remote_streams(opt, 0);
  // nghttp2 keeps closed streams for the RFC 7540 priority tree, up to SETTINGS_MAX_CONCURRENT_STREAMS (2^31
  // by Envoy's default): a client opening stream after stream would grow memory without bound. We never use
  // that tree.
  nghttp2_option_set_no_closed_streams(opt, 1);
  // nghttp2's own RST_STREAM rate limit stays as a backstop above the premature-reset rule.
  nghttp2_option_set_stream_reset_rate_limit(opt, 2000, 100);
  if (role_ == Role::kClient) {
    nghttp2_option_set_peer_max_concurrent_streams(opt, 100);  // until the server's SETTINGS arrive
    nghttp2_session* s = nullptr;
    nghttp2_session_client_new2(&s, cbs, this, opt);
    session_ = s;
  } else {
    preface_left_ = kClientPrefaceLen;
    nghttp2_session* s = nullptr;
    nghttp2_session_server_new2(&s, cbs, this, opt);
    session_ = s;
  }
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);

  std::vector<nghttp2_settings_entry> iv;
  iv.push_back({NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, settings_.hpack_table_size});
  iv.push_back({NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE,
                std::min<uint32_t>(settings_.initial_stream_window_size, NGHTTP2_MAX_WINDOW_SIZE)});
  iv.push_back({NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, settings_.max_header_list_size});
  if (role_ == Role::kServer) {
    iv.push_back({NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, settings_.max_concurrent_streams});
  } else {
    iv.push_back({NGHTTP2_SETTINGS_ENABLE_PUSH, 0});
  }
  nghttp2_submit_settings(S(session_), NGHTTP2_FLAG_NONE, iv.data(), iv.size());
  const uint32_t conn_window =
      std::min<uint32_t>(settings_.initial_connection_window_size, NGHTTP2_MAX_WINDOW_SIZE);
  if (conn_window > NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE) {
    nghttp2_session_set_local_window_size(S(session_), NGHTTP2_FLAG_NONE, 0,
                                          static_cast<int32_t>(conn_window));
  }
}

Codec::~Codec() {
  if (stats_) stats_->streams_active.dec(static_cast<int64_t>(streams_.size()));
  nghttp2_session_del(S(session_));
}

// Callbacks come in runs for one stream (a header block's fields, a DATA frame's chunks): the last stream
// found is checked first.
Codec::Stream* Codec::find(int32_t stream_id) const {
  if (last_found_ != nullptr && last_found_->id == stream_id) return last_found_;
  auto it = streams_.find(stream_id);
  if (it == streams_.end()) return nullptr;
  last_found_ = it->second.get();
  return last_found_;
}

void Codec::fail(uint32_t error_code, std::string reason) {
  if (failed_) return;
  failed_ = true;
  if (error_.empty()) error_ = std::move(reason);
  nghttp2_session_terminate_session(S(session_), error_code);
}

// Walks frame headers in the raw byte stream for the limits nghttp2 does not enforce the way Envoy does.
bool Codec::scanFrames(std::string_view bytes) {
  size_t i = 0;
  if (preface_left_ > 0) {
    const size_t n = std::min(preface_left_, bytes.size());
    preface_left_ -= n;
    i = n;
  }
  while (i < bytes.size()) {
    if (frame_payload_left_ > 0) {
      if (padded_pending_) {  // the pad length decides whether a PADDED frame carries anything
        padded_pending_ = false;
        const uint32_t pad = 1u + static_cast<uint8_t>(bytes[i]);
        const uint32_t payload = padded_length_ > pad ? padded_length_ - pad : 0;
        if (!trackEmptyFrame(padded_type_, padded_flags_, payload)) return false;
      }
      const size_t n = std::min(frame_payload_left_, bytes.size() - i);
      frame_payload_left_ -= n;
      i += n;
      continue;
    }
    const size_t n = std::min<size_t>(9 - frame_header_have_, bytes.size() - i);
    std::memcpy(frame_header_ + frame_header_have_, bytes.data() + i, n);
    frame_header_have_ += n;
    i += n;
    if (frame_header_have_ < 9) break;
    frame_header_have_ = 0;
    const uint32_t length =
        (uint32_t{frame_header_[0]} << 16) | (uint32_t{frame_header_[1]} << 8) | frame_header_[2];
    const uint8_t type = frame_header_[3];
    const uint8_t flags = frame_header_[4];
    frame_payload_left_ = length;

    if (type == kHeaders) continuation_count_ = 0;
    if (type == kContinuation && ++continuation_count_ > settings_.max_continuation_frames) {
      if (stats_) stats_->too_many_header_frames.inc();
      fail(NGHTTP2_ENHANCE_YOUR_CALM, "CONTINUATION flood");
      return false;
    }
    if (type == kData || type == kHeaders || type == kContinuation) {
      if (type != kContinuation && (flags & kFlagPadded) && length > 0) {
        padded_pending_ = true;
        padded_type_ = type;
        padded_flags_ = flags;
        padded_length_ = length;
      } else if (!trackEmptyFrame(type, flags, length)) {
        return false;
      }
    }
    if (type == kPriority) {
      ++priority_frames_;
      if (priority_frames_ >
          uint64_t{settings_.max_inbound_priority_frames_per_stream} * (1 + streams_opened_)) {
        if (stats_) stats_->inbound_priority_frames_flood.inc();
        fail(NGHTTP2_ENHANCE_YOUR_CALM, "PRIORITY flood");
        return false;
      }
    }
    // WINDOW_UPDATEs are bounded by the streams opened and the DATA frames we sent (Envoy's formula).
    if (type == kWindowUpdate) {
      ++window_update_frames_;
      if (window_update_frames_ >
          5 + 2 * (streams_opened_ +
                   uint64_t{settings_.max_inbound_window_update_frames_per_data_frame_sent} *
                       outbound_data_frames_)) {
        if (stats_) stats_->inbound_window_update_frames_flood.inc();
        fail(NGHTTP2_ENHANCE_YOUR_CALM, "WINDOW_UPDATE flood");
        return false;
      }
    }
    // Each PING and SETTINGS makes us queue an ACK; a peer that never reads them piles them up.
    if ((type == kPing || type == kSettings) && !(flags & kFlagAck)) {
      if (++pending_control_frames_ + outbound_control_frames_ > settings_.max_outbound_control_frames) {
        if (stats_) stats_->outbound_control_flood.inc();
        fail(NGHTTP2_ENHANCE_YOUR_CALM, type == kPing ? "PING flood" : "SETTINGS flood");
        return false;
      }
    }
  }
  return true;
}

// HEADERS, CONTINUATION and DATA frames without payload (padding aside) and without END_STREAM.
bool Codec::trackEmptyFrame(uint8_t type, uint8_t flags, uint32_t payload) {
  const bool end_stream = type != kContinuation && (flags & kFlagEndStream);
  if (payload != 0 || end_stream) {
    consecutive_empty_frames_ = 0;
    return true;
  }
  if (++consecutive_empty_frames_ > settings_.max_consecutive_inbound_frames_with_empty_payload) {
    if (stats_) stats_->inbound_empty_frames_flood.inc();
    fail(NGHTTP2_ENHANCE_YOUR_CALM, "empty frame flood");
    return false;
  }
  return true;
}

void Codec::setSendQueued(Stream& s, bool queued) {
  if (s.send_queued == queued) return;
  s.send_queued = queued;
  if (queued) {
    ++pending_send_streams_;
  } else {
    --pending_send_streams_;
  }
}

// Output the peer does not read: too many frames (or control frames) queued closes the connection. A stream
// whose answer waits for flow-control window counts as a queued frame too: a client that never reads nor
// opens its window would otherwise make us keep one finished stream per request.
bool Codec::checkOutboundLimits() {
  if (role_ != Role::kServer) return true;
  if (uint64_t{outbound_frames_} + pending_send_streams_ > settings_.max_outbound_frames) {
    if (stats_) stats_->outbound_flood.inc();
    fail(NGHTTP2_ENHANCE_YOUR_CALM, "outbound frame flood");
    return false;
  }
  if (outbound_control_frames_ > settings_.max_outbound_control_frames) {
    if (stats_) stats_->outbound_control_flood.inc();
    fail(NGHTTP2_ENHANCE_YOUR_CALM, "outbound control frame flood");
    return false;
  }
  return true;
}

void Codec::onOutputWritten(OutboundFrames written) {
  outbound_frames_ -= std::min(outbound_frames_, written.frames);
  outbound_control_frames_ -= std::min(outbound_control_frames_, written.control);
}

bool Codec::receive(std::string_view bytes) {
  if (failed_) return false;
  if (!checkOutboundLimits() || !scanFrames(bytes)) return false;
  const ssize_t rv =
      nghttp2_session_mem_recv(S(session_), reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  if (rv < 0) {
    if (stats_ && rv != NGHTTP2_ERR_CALLBACK_FAILURE) stats_->rx_messaging_error.inc();
    const uint32_t code = rv == NGHTTP2_ERR_FLOODED ? NGHTTP2_ENHANCE_YOUR_CALM : NGHTTP2_PROTOCOL_ERROR;
    if (rv == NGHTTP2_ERR_FLOODED && stats_) stats_->outbound_flood.inc();
    if (error_.empty()) error_ = nghttp2_strerror(static_cast<int>(rv));
    // nghttp2 cannot be used after a fatal error: say goodbye by hand (except to a non-HTTP/2 peer).
    if (!failed_ && rv != NGHTTP2_ERR_BAD_CLIENT_MAGIC) {
      const uint32_t last = static_cast<uint32_t>(nghttp2_session_get_last_proc_stream_id(S(session_)));
      const uint8_t f[17] = {0,
                             0,
                             8,
                             7,
                             0,
                             0,
                             0,
                             0,
                             0,
                             uint8_t(last >> 24),
                             uint8_t(last >> 16),
                             uint8_t(last >> 8),
                             uint8_t(last),
                             uint8_t(code >> 24),
                             uint8_t(code >> 16),
                             uint8_t(code >> 8),
                             uint8_t(code)};
      fatal_goaway_.assign(reinterpret_cast<const char*>(f), sizeof(f));
      if (stats_) stats_->goaway_sent.inc();
    }
    failed_ = true;
    fatal_ = true;
    return false;
  }
  return !failed_;
}

bool Codec::takeOutput(std::string& out) {
  if (fatal_) {
    out.append(fatal_goaway_);
    fatal_goaway_.clear();
    return true;
  }
  while (true) {
    const uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(S(session_), &data);
    if (n < 0) {
      error_ = nghttp2_strerror(static_cast<int>(n));
      failed_ = true;
      return false;
    }
    if (n == 0) break;
    out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
  pending_control_frames_ = 0;  // their ACKs are serialized now, counted in outbound_control_frames_
  if (stats_) stats_->pending_send_data.set(static_cast<int64_t>(pending_send_bytes_));
  return true;
}

bool Codec::canOpenStream() const {
  if (failed_ || goaway_received_) return false;
  return nghttp2_session_get_remote_settings(S(session_), NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS) >
         streams_.size();
}

uint32_t Codec::peerMaxConcurrentStreams() const {
  return nghttp2_session_get_remote_settings(S(session_), NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
}

int32_t Codec::submitRequest(const http::HeaderMap& headers, bool end_stream) {
  if (role_ != Role::kClient || !canOpenStream()) return -1;
  std::vector<std::pair<std::string, std::string>> extra;
  auto nv = toNv(headers, true, extra);
  nghttp2_data_provider provider{};
  provider.read_callback = &Impl::readData;
  const int32_t id = nghttp2_submit_request(S(session_), nullptr, nv.data(), nv.size(),
                                            end_stream ? nullptr : &provider, nullptr);
  if (id < 0) return -1;
  auto s = std::make_unique<Stream>();
  s->id = id;
  s->has_provider = !end_stream;
  streams_.emplace(id, std::move(s));
  ++streams_opened_;
  if (stats_) stats_->streams_active.inc();
  return id;
}

bool Codec::submitResponse(int32_t stream_id, const http::HeaderMap& headers, bool end_stream) {
  Stream* s = find(stream_id);
  if (s == nullptr) return false;
  std::vector<std::pair<std::string, std::string>> extra;
  auto nv = toNv(headers, false, extra);
  const std::string_view status = headers.getOr(http::headers::kStatus);
  if (!status.empty() && status[0] == '1') {
    return nghttp2_submit_headers(S(session_), NGHTTP2_FLAG_NONE, stream_id, nullptr, nv.data(), nv.size(),
                                  nullptr) == 0;
  }
  nghttp2_data_provider provider{};
  provider.read_callback = &Impl::readData;
  s->has_provider = !end_stream;
  return nghttp2_submit_response(S(session_), stream_id, nv.data(), nv.size(),
                                 end_stream ? nullptr : &provider) == 0;
}

bool Codec::sendData(int32_t stream_id, http::Buffer& data, bool end_stream) {
  Stream* s = find(stream_id);
  if (s == nullptr || !s->has_provider || s->out_end) return false;
  pending_send_bytes_ += data.size();
  if (s->out.empty()) {
    s->out.swap(data);
    s->out_off = 0;
  } else {
    s->out.append(data);
  }
  data.clear();
  s->out_end = end_stream;
  setSendQueued(*s, !s->out.empty() || end_stream);
  if (s->deferred) {
    s->deferred = false;
    nghttp2_session_resume_data(S(session_), stream_id);
  }
  return true;
}

bool Codec::sendTrailers(int32_t stream_id, const http::HeaderMap& trailers) {
  Stream* s = find(stream_id);
  if (s == nullptr || !s->has_provider || s->out_end) return false;
  s->out_end = true;
  setSendQueued(*s, true);
  if (!trailers.empty()) s->out_trailers = std::make_unique<http::HeaderMap>(trailers);
  if (s->deferred) {
    s->deferred = false;
    nghttp2_session_resume_data(S(session_), stream_id);
  }
  return true;
}

void Codec::resetStream(int32_t stream_id, uint32_t error_code) {
  if (find(stream_id) == nullptr) return;
  nghttp2_submit_rst_stream(S(session_), NGHTTP2_FLAG_NONE, stream_id, error_code);
}

void Codec::resetStreamAfterEnd(int32_t stream_id, uint32_t error_code) {
  Stream* s = find(stream_id);
  if (s == nullptr) return;
  if (s->end_sent) {
    nghttp2_submit_rst_stream(S(session_), NGHTTP2_FLAG_NONE, stream_id, error_code);
    return;
  }
  s->reset_after_end = true;
  s->reset_code = error_code;
}

void Codec::goAway(uint32_t error_code, bool graceful) {
  if (graceful && role_ == Role::kServer && error_code == kNoError) {
    nghttp2_submit_shutdown_notice(S(session_));
    return;
  }
  nghttp2_submit_goaway(S(session_), NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(S(session_)),
                        error_code, nullptr, 0);
}

void Codec::readDisable(int32_t stream_id, bool disabled) {
  Stream* s = find(stream_id);
  if (s == nullptr || s->read_disabled == disabled) return;
  s->read_disabled = disabled;
  if (!disabled && s->unconsumed > 0) {
    nghttp2_session_consume_stream(S(session_), stream_id, s->unconsumed);
    s->unconsumed = 0;
  }
}

size_t Codec::streamPendingSendBytes(int32_t stream_id) const {
  Stream* s = find(stream_id);
  return s == nullptr ? 0 : s->out.size() - s->out_off;
}

bool Codec::wantsClose() const {
  if (failed_) return true;
  return nghttp2_session_want_read(S(session_)) == 0 && nghttp2_session_want_write(S(session_)) == 0;
}

}  // namespace skiff::http2
