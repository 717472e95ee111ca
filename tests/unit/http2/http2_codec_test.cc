// Client and server Http2 codecs driven against each other in memory.
#include "skiff/http/http2_codec.h"

#include <gtest/gtest.h>

#include "envoy/config/core/v3/protocol.pb.h"

#include <map>

namespace skiff::http2 {
namespace {

struct Recorder : Codec::Callbacks {
  struct StreamLog {
    std::unique_ptr<http::HeaderMap> headers;
    std::string body;
    std::unique_ptr<http::HeaderMap> trailers;
    bool ended = false;
    bool closed = false;
    uint32_t close_code = 0;
    bool close_remote = false;
  };
  bool refuse = false;
  std::map<int32_t, StreamLog> streams;
  std::vector<int32_t> opened;
  bool goaway = false;
  uint32_t goaway_last = 0;

  bool onNewStream(int32_t id) override {
    opened.push_back(id);
    return !refuse;
  }
  void onHeaders(int32_t id, std::unique_ptr<http::HeaderMap> h, bool end) override {
    streams[id].headers = std::move(h);
    streams[id].ended |= end;
  }
  void onData(int32_t id, http::Buffer& d, bool end) override {
    streams[id].body += d;
    streams[id].ended |= end;
  }
  void onTrailers(int32_t id, std::unique_ptr<http::HeaderMap> t) override {
    streams[id].trailers = std::move(t);
    streams[id].ended = true;
  }
  void onStreamClose(int32_t id, uint32_t code, bool remote) override {
    streams[id].closed = true;
    streams[id].close_code = code;
    streams[id].close_remote = remote;
  }
  void onGoAway(uint32_t last, uint32_t) override {
    goaway = true;
    goaway_last = last;
  }
};

class Http2CodecTest : public ::testing::Test {
 protected:
  Http2CodecTest()
      : store_(1),
        server_stats_(store_, "http2."),
        client_stats_(store_, "cluster.c.http2."),
        client_(Codec::Role::kClient, Settings{}, client_cb_, &client_stats_),
        server_(Codec::Role::kServer, server_settings_, server_cb_, &server_stats_) {}

  // Moves bytes both ways until nothing is left to send.
  void pump() {
    for (int i = 0; i < 100; ++i) {
      std::string c2s, s2c;
      ASSERT_TRUE(client_.takeOutput(c2s));
      ASSERT_TRUE(server_.takeOutput(s2c));
      if (c2s.empty() && s2c.empty()) return;
      if (!c2s.empty()) server_ok_ = server_.receive(c2s) && server_ok_;
      if (!s2c.empty()) client_ok_ = client_.receive(s2c) && client_ok_;
      server_.onOutputDrained();
      client_.onOutputDrained();
    }
  }

  static http::HeaderMap request(std::string_view method = "GET", std::string_view path = "/") {
    http::HeaderMap h;
    h.add(":method", method);
    h.add(":path", path);
    h.add(":authority", "example.com");
    h.add("x-test", "1");
    return h;
  }

  stats::Store store_;
  Http2Stats server_stats_;
  Http2Stats client_stats_;
  Settings server_settings_;
  Recorder client_cb_;
  Recorder server_cb_;
  Codec client_;
  Codec server_;
  bool client_ok_ = true;
  bool server_ok_ = true;
};

TEST_F(Http2CodecTest, RequestResponseWithBody) {
  const int32_t id = client_.submitRequest(request("POST"), false);
  ASSERT_EQ(id, 1);
  http::Buffer body = "hello";
  ASSERT_TRUE(client_.sendData(id, body, true));
  pump();
  auto& rq = server_cb_.streams[id];
  ASSERT_TRUE(rq.headers);
  EXPECT_EQ(rq.headers->getOr(":method"), "POST");
  EXPECT_EQ(rq.headers->getOr(":scheme"), "http");  // added for a request without one
  EXPECT_EQ(rq.headers->getOr(":authority"), "example.com");
  EXPECT_EQ(rq.headers->getOr("x-test"), "1");
  EXPECT_EQ(rq.body, "hello");
  EXPECT_TRUE(rq.ended);

  http::HeaderMap resp;
  resp.add(":status", "200");
  resp.add("connection", "keep-alive");  // hop-by-hop: never on the h2 wire
  resp.add("content-type", "text/plain");
  ASSERT_TRUE(server_.submitResponse(id, resp, false));
  http::Buffer rbody(100000, 'x');  // beyond one frame and the default 64 KiB stream window
  ASSERT_TRUE(server_.sendData(id, rbody, true));
  pump();
  auto& rs = client_cb_.streams[id];
  ASSERT_TRUE(rs.headers);
  EXPECT_EQ(rs.headers->getOr(":status"), "200");
  EXPECT_EQ(rs.headers->get("connection"), nullptr);
  EXPECT_EQ(rs.body.size(), 100000u);
  EXPECT_TRUE(rs.ended);
  EXPECT_TRUE(rs.closed);
  EXPECT_EQ(rs.close_code, 0u);
  EXPECT_EQ(client_.activeStreams(), 0u);
  EXPECT_EQ(server_.activeStreams(), 0u);
}

TEST_F(Http2CodecTest, TrailersBothWays) {
  const int32_t id = client_.submitRequest(request("POST", "/svc/Method"), false);
  http::Buffer body = "req";
  client_.sendData(id, body, false);
  http::HeaderMap rq_trailers;
  rq_trailers.add("x-req-trailer", "t");
  client_.sendTrailers(id, rq_trailers);
  pump();
  ASSERT_TRUE(server_cb_.streams[id].trailers);
  EXPECT_EQ(server_cb_.streams[id].trailers->getOr("x-req-trailer"), "t");
  EXPECT_EQ(server_cb_.streams[id].body, "req");

  http::HeaderMap resp;
  resp.add(":status", "200");
  resp.add("content-type", "application/grpc");
  server_.submitResponse(id, resp, false);
  http::Buffer msg = std::string("\0\0\0\0\0", 5);
  server_.sendData(id, msg, false);
  http::HeaderMap trailers;
  trailers.add("grpc-status", "14");
  trailers.add("grpc-message", "unavailable");
  server_.sendTrailers(id, trailers);
  pump();
  auto& rs = client_cb_.streams[id];
  ASSERT_TRUE(rs.trailers);
  EXPECT_EQ(rs.trailers->getOr("grpc-status"), "14");
  EXPECT_EQ(rs.trailers->getOr("grpc-message"), "unavailable");
  EXPECT_EQ(rs.body.size(), 5u);
  EXPECT_EQ(client_stats_.trailers.value(), 1u);
}

TEST_F(Http2CodecTest, TrailersOnlyResponseAndHeadersOnlyRequest) {
  const int32_t id = client_.submitRequest(request(), true);
  pump();
  EXPECT_TRUE(server_cb_.streams[id].ended);
  http::HeaderMap resp;
  resp.add(":status", "204");
  server_.submitResponse(id, resp, true);
  pump();
  EXPECT_TRUE(client_cb_.streams[id].ended);
  EXPECT_EQ(client_cb_.streams[id].headers->getOr(":status"), "204");
}

TEST_F(Http2CodecTest, ResetStreamReachesPeer) {
  const int32_t id = client_.submitRequest(request(), false);
  pump();
  client_.resetStream(id, kCancel);
  pump();
  EXPECT_TRUE(server_cb_.streams[id].closed);
  EXPECT_EQ(server_cb_.streams[id].close_code, kCancel);
  EXPECT_TRUE(server_cb_.streams[id].close_remote);
  EXPECT_TRUE(client_cb_.streams[id].closed);
  EXPECT_FALSE(client_cb_.streams[id].close_remote);
  EXPECT_EQ(server_stats_.rx_reset.value(), 1u);
  EXPECT_EQ(client_stats_.tx_reset.value(), 1u);
}

TEST_F(Http2CodecTest, RefusedStreamAndGoAway) {
  server_cb_.refuse = true;
  const int32_t id = client_.submitRequest(request(), true);
  pump();
  EXPECT_TRUE(client_cb_.streams[id].closed);
  EXPECT_EQ(client_cb_.streams[id].close_code, kRefusedStream);
  EXPECT_EQ(server_cb_.streams.count(id), 0u);  // never delivered
  server_.goAway(kNoError, false);
  pump();
  EXPECT_TRUE(client_cb_.goaway);
  EXPECT_EQ(client_cb_.goaway_last, static_cast<uint32_t>(id));
  EXPECT_FALSE(client_.canOpenStream());
  EXPECT_EQ(client_.submitRequest(request(), true), -1);
  EXPECT_EQ(server_stats_.goaway_sent.value(), 1u);
}

TEST_F(Http2CodecTest, MaxConcurrentStreamsFromSettings) {
  server_.~Codec();
  server_settings_.max_concurrent_streams = 2;
  new (&server_) Codec(Codec::Role::kServer, server_settings_, server_cb_, &server_stats_);
  client_.submitRequest(request(), false);
  pump();
  EXPECT_EQ(client_.peerMaxConcurrentStreams(), 2u);
  EXPECT_TRUE(client_.canOpenStream());
  client_.submitRequest(request(), false);
  EXPECT_FALSE(client_.canOpenStream());
  EXPECT_EQ(client_.submitRequest(request(), false), -1);
}

TEST_F(Http2CodecTest, HeaderListTooLargeClosesConnection) {
  server_.~Codec();
  server_settings_.max_header_list_size = 8192;
  new (&server_) Codec(Codec::Role::kServer, server_settings_, server_cb_, &server_stats_);
  http::HeaderMap h = request();
  for (int i = 0; i < 4; ++i) h.add("x-big-" + std::to_string(i), std::string(4000, 'a' + i));
  client_.submitRequest(h, true);
  pump();
  EXPECT_FALSE(server_ok_);
  EXPECT_TRUE(server_.wantsClose());
  EXPECT_EQ(server_stats_.header_overflow.value(), 1u);
  EXPECT_TRUE(client_cb_.goaway);
}

TEST_F(Http2CodecTest, ReadDisableHoldsWindow) {
  server_.~Codec();
  server_settings_.initial_stream_window_size = 65535;
  new (&server_) Codec(Codec::Role::kServer, server_settings_, server_cb_, &server_stats_);
  const int32_t id = client_.submitRequest(request("POST"), false);
  pump();
  server_.readDisable(id, true);
  http::Buffer big(300000, 'b');
  client_.sendData(id, big, true);
  pump();
  // Only one window's worth arrives while reading is disabled.
  EXPECT_LE(server_cb_.streams[id].body.size(), 65535u);
  EXPECT_GT(client_.pendingSendBytes(), 0u);
  server_.readDisable(id, false);
  pump();
  EXPECT_EQ(server_cb_.streams[id].body.size(), 300000u);
  EXPECT_TRUE(server_cb_.streams[id].ended);
}

TEST_F(Http2CodecTest, OneInterimResponseIsSkipped) {
  const int32_t id = client_.submitRequest(request("POST"), false);
  pump();
  http::HeaderMap cont;
  cont.add(":status", "100");
  server_.submitResponse(id, cont, false);
  http::HeaderMap resp;
  resp.add(":status", "201");
  server_.submitResponse(id, resp, true);
  pump();
  EXPECT_EQ(client_cb_.streams[id].headers->getOr(":status"), "201");
}

// Raw frames, for the abuse limits.
std::string frame(uint8_t type, uint8_t flags, uint32_t stream, std::string_view payload) {
  std::string f;
  f.push_back(static_cast<char>(payload.size() >> 16));
  f.push_back(static_cast<char>(payload.size() >> 8));
  f.push_back(static_cast<char>(payload.size()));
  f.push_back(static_cast<char>(type));
  f.push_back(static_cast<char>(flags));
  f.push_back(static_cast<char>(stream >> 24));
  f.push_back(static_cast<char>(stream >> 16));
  f.push_back(static_cast<char>(stream >> 8));
  f.push_back(static_cast<char>(stream));
  f.append(payload);
  return f;
}

std::string preface() {
  return std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") + frame(0x4, 0, 0, "");
}

// HPACK for ":method GET" ":path /" ":scheme http" (static table indices 2, 4, 6).
const std::string kGetHeaders = "\x82\x84\x86";

TEST_F(Http2CodecTest, ContinuationFloodClosesConnection) {
  std::string in = preface() + frame(0x1, 0, 1, kGetHeaders);
  for (int i = 0; i < 20; ++i)
    in += frame(0x9, 0, 1,
                "\x40\x01"
                "a\x01"
                "b");
  EXPECT_FALSE(server_.receive(in));
  EXPECT_TRUE(server_.wantsClose());
  EXPECT_EQ(server_stats_.too_many_header_frames.value(), 1u);
  std::string out;
  server_.takeOutput(out);
  EXPECT_NE(out.find(std::string("\x00\x00\x08\x07", 4)), std::string::npos);  // a GOAWAY frame
}

TEST_F(Http2CodecTest, PingFloodClosesConnection) {
  std::string in = preface();
  for (int i = 0; i < 1100; ++i) in += frame(0x6, 0, 0, "12345678");
  EXPECT_FALSE(server_.receive(in));
  EXPECT_EQ(server_stats_.outbound_control_flood.value(), 1u);
}

TEST_F(Http2CodecTest, PingsReadByPeerAreFine) {
  for (int round = 0; round < 5; ++round) {
    std::string in = round == 0 ? preface() : std::string();
    for (int i = 0; i < 500; ++i) in += frame(0x6, 0, 0, "12345678");
    EXPECT_TRUE(server_.receive(in));
    std::string out;
    server_.takeOutput(out);
    server_.onOutputDrained();  // the peer read the ACKs
  }
  EXPECT_EQ(server_stats_.outbound_control_flood.value(), 0u);
}

TEST_F(Http2CodecTest, SettingsFloodClosesConnection) {
  std::string in = preface();
  for (int i = 0; i < 1100; ++i) in += frame(0x4, 0, 0, "");
  EXPECT_FALSE(server_.receive(in));
  EXPECT_EQ(server_stats_.outbound_control_flood.value(), 1u);
}

TEST_F(Http2CodecTest, EmptyDataFloodClosesConnection) {
  std::string in = preface() + frame(0x1, 0x4, 1, "\x83\x84\x86");  // POST, END_HEADERS
  in += frame(0x0, 0, 1, "");
  in += frame(0x0, 0, 1, "");
  EXPECT_FALSE(server_.receive(in));
  EXPECT_EQ(server_stats_.inbound_empty_frames_flood.value(), 1u);
}

TEST_F(Http2CodecTest, PaddedEmptyDataCountsAsEmpty) {
  std::string in = preface() + frame(0x1, 0x4, 1, "\x83\x84\x86");  // POST, END_HEADERS
  const std::string padding_only("\x03\0\0\0", 4);                  // pad length 3, no data
  in += frame(0x0, 0x8, 1, padding_only);
  in += frame(0x0, 0x8, 1, padding_only);
  EXPECT_FALSE(server_.receive(in));
  EXPECT_EQ(server_stats_.inbound_empty_frames_flood.value(), 1u);
}

TEST_F(Http2CodecTest, DataBetweenEmptyFramesIsFine) {
  std::string in = preface() + frame(0x1, 0x4, 1, "\x83\x84\x86");
  for (int i = 0; i < 10; ++i) in += frame(0x0, 0, 1, "") + frame(0x0, 0, 1, "x");
  EXPECT_TRUE(server_.receive(in));
  EXPECT_EQ(server_stats_.inbound_empty_frames_flood.value(), 0u);
}

TEST_F(Http2CodecTest, PriorityFloodClosesConnection) {
  std::string in = preface();
  const std::string priority("\0\0\0\0\x10", 5);
  for (int i = 0; i < 101; ++i) in += frame(0x2, 0, 3, priority);
  EXPECT_FALSE(server_.receive(in));
  EXPECT_EQ(server_stats_.inbound_priority_frames_flood.value(), 1u);
}

// Envoy's bound: 5 + 2 * (streams opened + max_inbound_window_update_frames_per_data_frame_sent * DATA sent).
TEST_F(Http2CodecTest, WindowUpdateFloodClosesConnection) {
  std::string in = preface();
  const std::string one("\0\0\0\x01", 4);
  for (int i = 0; i < 5; ++i) in += frame(0x8, 0, 0, one);
  EXPECT_TRUE(server_.receive(in));
  EXPECT_FALSE(server_.receive(frame(0x8, 0, 0, one)));
  EXPECT_EQ(server_stats_.inbound_window_update_frames_flood.value(), 1u);
}

TEST_F(Http2CodecTest, WindowUpdatesAfterDataAreFine) {
  const int32_t id = client_.submitRequest(request("GET"), true);
  pump();
  http::HeaderMap response;
  response.add(":status", "200");
  ASSERT_TRUE(server_.submitResponse(id, response, false));
  http::Buffer body(std::string(100000, 'x'));  // several DATA frames, each allowing 20 WINDOW_UPDATEs
  ASSERT_TRUE(server_.sendData(id, body, true));
  pump();
  std::string in;
  const std::string one("\0\0\0\x01", 4);
  for (int i = 0; i < 40; ++i) in += frame(0x8, 0, 0, one);
  EXPECT_TRUE(server_.receive(in));
  EXPECT_EQ(server_stats_.inbound_window_update_frames_flood.value(), 0u);
}

// GET with ":authority: a" (literal without indexing): nghttp2 answers requests without one with RST_STREAM.
const std::string kGetWithAuthority(
    "\x82\x84\x86\x01\x01"
    "a",
    6);

// A peer that sends requests and never reads: the answers pile up as frames in our output until
// max_outbound_frames trips on the next bytes received.
TEST_F(Http2CodecTest, OutboundFrameFloodClosesConnection) {
  server_.~Codec();
  server_settings_.max_outbound_frames = 50;
  new (&server_) Codec(Codec::Role::kServer, server_settings_, server_cb_, &server_stats_);
  std::string in = preface();
  for (uint32_t id = 1; id < 60; id += 2) in += frame(0x1, 0x5, id, kGetWithAuthority);
  ASSERT_TRUE(server_.receive(in));
  http::HeaderMap response;
  response.add(":status", "200");
  for (uint32_t id = 1; id < 60; id += 2) {
    ASSERT_TRUE(server_.submitResponse(static_cast<int32_t>(id), response, false));
    http::Buffer body(std::string("ok"));
    ASSERT_TRUE(server_.sendData(static_cast<int32_t>(id), body, true));
  }
  std::string out;
  ASSERT_TRUE(server_.takeOutput(out));  // never written to the peer
  EXPECT_GT(server_.outboundFrames().frames, 50u);
  EXPECT_FALSE(server_.receive(frame(0x6, 0, 0, "12345678")));
  EXPECT_EQ(server_stats_.outbound_flood.value(), 1u);
  EXPECT_TRUE(server_.wantsClose());
}

TEST_F(Http2CodecTest, WrittenFramesAreReleased) {
  server_.~Codec();
  server_settings_.max_outbound_frames = 50;
  new (&server_) Codec(Codec::Role::kServer, server_settings_, server_cb_, &server_stats_);
  std::string in = preface();
  ASSERT_TRUE(server_.receive(in));
  http::HeaderMap response;
  response.add(":status", "200");
  for (uint32_t round = 0; round < 10; ++round) {
    std::string batch;
    for (uint32_t i = 0; i < 10; ++i) {
      batch += frame(0x1, 0x5, 1 + 2 * (round * 10 + i), kGetWithAuthority);
    }
    ASSERT_TRUE(server_.receive(batch)) << server_.error();
    for (uint32_t i = 0; i < 10; ++i) {
      ASSERT_TRUE(server_.submitResponse(static_cast<int32_t>(1 + 2 * (round * 10 + i)), response, true));
    }
    std::string out;
    ASSERT_TRUE(server_.takeOutput(out));
    const auto taken = server_.outboundFrames();
    server_.onOutputWritten(taken);
    EXPECT_EQ(server_.outboundFrames().frames, 0u);
  }
  EXPECT_EQ(server_stats_.outbound_flood.value(), 0u);
}

TEST(Http2SettingsTest, FloodLimitsFromProto) {
  envoy::config::core::v3::Http2ProtocolOptions proto;
  proto.mutable_max_inbound_window_update_frames_per_data_frame_sent()->set_value(3);
  proto.mutable_max_outbound_frames()->set_value(77);
  const Settings s = Settings::fromProto(proto);
  EXPECT_EQ(s.max_inbound_window_update_frames_per_data_frame_sent, 3u);
  EXPECT_EQ(s.max_outbound_frames, 77u);
  EXPECT_EQ(s.max_outbound_control_frames, 1000u);
  EXPECT_EQ(Settings{}.max_inbound_window_update_frames_per_data_frame_sent, 10u);
}

TEST_F(Http2CodecTest, RapidResetClosesConnection) {
  server_.~Codec();
  server_settings_.premature_reset_total_stream_count = 50;
  new (&server_) Codec(Codec::Role::kServer, server_settings_, server_cb_, &server_stats_);
  std::string in = preface();
  bool ok = true;
  for (uint32_t id = 1; id < 400 && ok; id += 2) {
    in += frame(0x1, 0x4, id, kGetHeaders);
    in += frame(0x3, 0, id, std::string("\0\0\0\x08", 4));  // RST_STREAM CANCEL
    ok = server_.receive(in);
    in.clear();
  }
  EXPECT_FALSE(ok);
  EXPECT_TRUE(server_.wantsClose());
  EXPECT_EQ(server_stats_.premature_resets.value(), 1u);
  EXPECT_LE(server_cb_.opened.size(), 60u);
}

TEST_F(Http2CodecTest, GarbagePrefaceFails) {
  EXPECT_FALSE(server_.receive("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_TRUE(server_.wantsClose());
}

TEST(Http2SettingsTest, EnvoyDefaults) {
  Settings s;
  EXPECT_EQ(s.max_concurrent_streams, 2147483647u);
  EXPECT_EQ(s.initial_stream_window_size, 268435456u);
  EXPECT_EQ(s.initial_connection_window_size, 268435456u);
  EXPECT_EQ(s.hpack_table_size, 4096u);
}

// A response that ends before its request keeps all its DATA: the RST_STREAM (NO_ERROR) that tells the client
// to stop sending follows the END_STREAM frame instead of overtaking the queued DATA.
TEST_F(Http2CodecTest, ResetAfterEndKeepsQueuedResponseData) {
  const int32_t id = client_.submitRequest(request("POST"), false);
  pump();
  ASSERT_TRUE(server_cb_.streams[id].headers);
  http::HeaderMap response;
  response.add(":status", "200");
  ASSERT_TRUE(server_.submitResponse(id, response, false));
  http::Buffer body(std::string(200000, 'x'));
  ASSERT_TRUE(server_.sendData(id, body, true));
  server_.resetStreamAfterEnd(id, kNoError);
  pump();
  auto& rs = client_cb_.streams[id];
  EXPECT_EQ(rs.body.size(), 200000u);
  EXPECT_TRUE(rs.ended);
  EXPECT_TRUE(rs.closed);
  EXPECT_EQ(rs.close_code, kNoError);
  EXPECT_TRUE(server_cb_.streams[id].closed);
}

}  // namespace
}  // namespace skiff::http2
