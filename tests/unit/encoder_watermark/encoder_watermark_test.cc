// FilterManager back-pressure (both directions; mostly the response side): an encoder filter holding more
// than the buffer limit after kStopAndWatermark makes the terminal filter see the downstream as backed up
// until the filter lets its body go (Envoy's StopIterationAndWatermark; ext_proc STREAMED response bodies,
// Wasm plugins).
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "server/http/filter_manager.h"
#include "support/fake_stream.h"

namespace skiff::server {
namespace {

using http::Buffer;
using http::DataStatus;
using http::HeaderMap;
using http::HeadersStatus;

class NullSink : public FilterManagerSink {
 public:
  void writeHeaders(HeaderMap&, bool) override { ++headers; }
  void writeData(Buffer& d, bool) override { data += d; }
  void writeTrailers(HeaderMap&) override {}
  int headers = 0;
  std::string data;
};

// Stands in for the router: keeps its callbacks to ask about back-pressure.
class Terminal : public http::StreamDecoderFilter {
 public:
  void setDecoderFilterCallbacks(http::DecoderFilterCallbacks& cb) override { callbacks = &cb; }
  HeadersStatus decodeHeaders(HeaderMap&, bool) override { return HeadersStatus::kContinue; }
  http::DecoderFilterCallbacks* callbacks = nullptr;
};

// Holds response body with the configured status until told to continue.
class Holder : public http::StreamEncoderFilter {
 public:
  void setEncoderFilterCallbacks(http::EncoderFilterCallbacks& cb) override { callbacks = &cb; }
  HeadersStatus encodeHeaders(HeaderMap&, bool) override { return HeadersStatus::kContinue; }
  DataStatus encodeData(Buffer&, bool end_stream) override {
    if (release_at_end && end_stream) return DataStatus::kContinue;
    return hold ? status : DataStatus::kContinue;
  }
  http::EncoderFilterCallbacks* callbacks = nullptr;
  bool release_at_end = false;  // a Wasm plugin buffering the whole body
  DataStatus status = DataStatus::kStopAndWatermark;
  bool hold = true;
};

class EncoderWatermarkTest : public ::testing::Test {
 protected:
  static constexpr size_t kLimit = 1024;
  EncoderWatermarkTest() : fm(stream, sink, kLimit) {
    stream.fm = &fm;
    auto t = std::make_unique<Terminal>();
    terminal = t.get();
    fm.addDecoderFilter(std::move(t));
    auto h = std::make_unique<Holder>();
    holder = h.get();
    fm.addEncoderFilter(std::move(h));
    fm.setBackpressureHooks([this] { return connection_backed_up; },
                            [this](std::function<void()> cb) { connection_waiters.push_back(std::move(cb)); },
                            [](bool) {});
    auto req = std::make_unique<HeaderMap>();
    req->add(":method", "GET");
    req->add(":path", "/");
    fm.decodeHeaders(std::move(req), true);
    auto resp = std::make_unique<HeaderMap>();
    resp->add(":status", "200");
    fm.encodeHeaders(std::move(resp), false);
  }
  ~EncoderWatermarkTest() override { fm.destroyFilters(); }

  // More than the buffer limit: the one chunk crosses the high mark.
  static std::string big(char c = 'a') { return std::string(kLimit + 1, c); }
  Holder& addHolder() {
    auto h = std::make_unique<Holder>();
    Holder* raw = h.get();
    fm.addEncoderFilter(std::move(h));
    return *raw;
  }
  void body(const std::string& s, bool end = false) {
    Buffer b(s);
    fm.encodeData(b, end);
  }

  skiff::testing::FakeStream stream;
  NullSink sink;
  FilterManager fm;
  Terminal* terminal = nullptr;
  Holder* holder = nullptr;
  bool connection_backed_up = false;
  std::vector<std::function<void()>> connection_waiters;
};

TEST_F(EncoderWatermarkTest, OverTheLimitBacksUpTheTerminalUntilTheFilterContinues) {
  EXPECT_FALSE(terminal->callbacks->downstreamBackedUp());
  const std::string held = big();
  body(held);
  EXPECT_TRUE(terminal->callbacks->downstreamBackedUp());
  EXPECT_EQ(stream.resets, 0) << "a watermarking filter over the limit pushes back, it does not reset";
  int resumed = 0;
  terminal->callbacks->onDownstreamWritable([&] { ++resumed; });
  EXPECT_EQ(resumed, 0);
  EXPECT_TRUE(connection_waiters.empty()) << "the wait is for the filter, not the connection";
  EXPECT_EQ(sink.data, "");

  holder->hold = false;
  holder->callbacks->continueEncoding();
  EXPECT_EQ(resumed, 1);
  EXPECT_FALSE(terminal->callbacks->downstreamBackedUp());
  EXPECT_EQ(sink.data, held);
  body("de", true);
  EXPECT_EQ(sink.data, held + "de");
}

TEST_F(EncoderWatermarkTest, WatermarkingEveryChunkUnderTheLimitNeverBacksUp) {
  // A Wasm plugin returning StopIterationAndWatermark until end_of_stream buffers the whole body: the
  // router must keep reading upstream, or end_of_stream never comes.
  holder->release_at_end = true;
  std::string want;
  for (int i = 0; i < 8; ++i) {
    const std::string chunk(100, static_cast<char>('a' + i));
    want += chunk;
    body(chunk);
    ASSERT_FALSE(terminal->callbacks->downstreamBackedUp()) << "chunk " << i;
  }
  EXPECT_EQ(sink.data, "");
  body("end", true);
  EXPECT_EQ(sink.data, want + "end");
  EXPECT_TRUE(fm.responseComplete());
  EXPECT_EQ(stream.resets, 0);
}

TEST_F(EncoderWatermarkTest, PlainBufferingOverTheLimitStillResets) {
  holder->status = DataStatus::kStopAndBuffer;
  body(big());
  EXPECT_EQ(stream.resets, 1);
  EXPECT_FALSE(terminal->callbacks->downstreamBackedUp());
}

TEST_F(EncoderWatermarkTest, ContinuingFromEncodeDataReleasesTheWatermark) {
  const std::string held = big();
  body(held);
  int resumed = 0;
  terminal->callbacks->onDownstreamWritable([&] { ++resumed; });
  holder->hold = false;
  body("x");  // the filter goes on by returning kContinue, not by continueEncoding()
  EXPECT_EQ(sink.data, held + "x");
  EXPECT_FALSE(terminal->callbacks->downstreamBackedUp());
  EXPECT_EQ(resumed, 1);
}

TEST_F(EncoderWatermarkTest, InjectingReleasesTheWatermark) {
  body(big());
  int resumed = 0;
  terminal->callbacks->onDownstreamWritable([&] { ++resumed; });
  // ext_proc full duplex: the filter drops what it held and sends its own body on.
  holder->callbacks->addEncodingBuffer()->clear();
  Buffer mine("processed");
  holder->callbacks->injectEncodedData(mine, false);
  EXPECT_EQ(sink.data, "processed");
  EXPECT_FALSE(terminal->callbacks->downstreamBackedUp());
  EXPECT_EQ(resumed, 1);
}

TEST_F(EncoderWatermarkTest, WaitersRunAfterTheHeldBodyWentOn) {
  const std::string held = big();
  body(held);
  std::string seen_by_waiter;
  terminal->callbacks->onDownstreamWritable([&] {
    seen_by_waiter = sink.data;
    body("next");  // the router reads upstream again at once
  });
  holder->hold = false;
  holder->callbacks->continueEncoding();
  EXPECT_EQ(seen_by_waiter, held);
  EXPECT_EQ(sink.data, held + "next");
}

TEST_F(EncoderWatermarkTest, AWatermarkRaisedAgainKeepsTheWaitersWaiting) {
  // `first` is configured after `holder`, so it runs before it on the response. Both hold over the limit.
  Holder& first = addHolder();
  const std::string held = big();
  body(held);
  int resumed = 0;
  terminal->callbacks->onDownstreamWritable([&] { ++resumed; });
  first.hold = false;
  first.callbacks->continueEncoding();  // the body reaches `holder`, which holds it over the limit too
  EXPECT_EQ(resumed, 0);
  EXPECT_TRUE(terminal->callbacks->downstreamBackedUp());
  EXPECT_EQ(sink.data, "");
  holder->hold = false;
  holder->callbacks->continueEncoding();
  EXPECT_EQ(resumed, 1);
  EXPECT_EQ(sink.data, held);
  EXPECT_FALSE(terminal->callbacks->downstreamBackedUp());
}

TEST_F(EncoderWatermarkTest, ReleasedWaitersStillWaitForABackedUpConnection) {
  body(big());
  int resumed = 0;
  terminal->callbacks->onDownstreamWritable([&] { ++resumed; });
  connection_backed_up = true;
  holder->hold = false;
  holder->callbacks->continueEncoding();
  EXPECT_EQ(resumed, 0);
  ASSERT_EQ(connection_waiters.size(), 1u);
  EXPECT_TRUE(terminal->callbacks->downstreamBackedUp()) << "the connection's own state";
  connection_waiters[0]();
  EXPECT_EQ(resumed, 1);
}

TEST_F(EncoderWatermarkTest, PlainBufferingIsNoWatermark) {
  holder->status = DataStatus::kStopAndBuffer;
  body("abc");
  EXPECT_FALSE(terminal->callbacks->downstreamBackedUp());
  int resumed = 0;
  terminal->callbacks->onDownstreamWritable([&] { ++resumed; });
  EXPECT_EQ(connection_waiters.size(), 1u) << "goes to the connection as before";
  EXPECT_EQ(resumed, 0);
}

// The request side: a decoder filter's kStopAndWatermark pauses downstream reading only over the limit.
class DecoderHolder : public http::StreamDecoderFilter {
 public:
  void setDecoderFilterCallbacks(http::DecoderFilterCallbacks& cb) override { callbacks = &cb; }
  HeadersStatus decodeHeaders(HeaderMap&, bool) override { return HeadersStatus::kContinue; }
  DataStatus decodeData(Buffer&, bool end_stream) override {
    if (release_at_end && end_stream) return DataStatus::kContinue;
    return hold ? DataStatus::kStopAndWatermark : DataStatus::kContinue;
  }
  http::DecoderFilterCallbacks* callbacks = nullptr;
  bool hold = true;
  bool release_at_end = false;
};

class BodySink : public http::StreamDecoderFilter {
 public:
  void setDecoderFilterCallbacks(http::DecoderFilterCallbacks&) override {}
  HeadersStatus decodeHeaders(HeaderMap&, bool) override { return HeadersStatus::kContinue; }
  DataStatus decodeData(Buffer& d, bool end_stream) override {
    body += d;
    ended = ended || end_stream;
    return DataStatus::kContinue;
  }
  std::string body;
  bool ended = false;
};

class DecoderWatermarkTest : public ::testing::Test {
 protected:
  static constexpr size_t kLimit = 1024;
  DecoderWatermarkTest() : fm(stream, sink, kLimit) {
    stream.fm = &fm;
    auto h = std::make_unique<DecoderHolder>();
    holder = h.get();
    fm.addDecoderFilter(std::move(h));
    auto b = std::make_unique<BodySink>();
    upstream = b.get();
    fm.addDecoderFilter(std::move(b));
    fm.setBackpressureHooks([] { return false; }, [](std::function<void()>) {},
                            [this](bool p) { pauses.push_back(p); });
    auto req = std::make_unique<HeaderMap>();
    req->add(":method", "POST");
    req->add(":path", "/");
    fm.decodeHeaders(std::move(req), false);
  }
  ~DecoderWatermarkTest() override { fm.destroyFilters(); }
  void body(const std::string& s, bool end = false) {
    Buffer b(s);
    fm.decodeData(b, end);
  }

  skiff::testing::FakeStream stream;
  NullSink sink;
  FilterManager fm;
  DecoderHolder* holder = nullptr;
  BodySink* upstream = nullptr;
  std::vector<bool> pauses;
};

TEST_F(DecoderWatermarkTest, WatermarkingEveryChunkUnderTheLimitKeepsReading) {
  holder->release_at_end = true;
  for (int i = 0; i < 8; ++i) body(std::string(100, 'a'));
  EXPECT_TRUE(pauses.empty()) << "paused before the limit: the rest of the body would never come";
  body("end", true);
  EXPECT_EQ(upstream->body, std::string(800, 'a') + "end");
  EXPECT_TRUE(upstream->ended);
}

TEST_F(DecoderWatermarkTest, OverTheLimitPausesUntilTheFilterGoesOn) {
  const std::string held(kLimit + 1, 'a');
  body(held);
  EXPECT_EQ(pauses, std::vector<bool>{true});
  EXPECT_TRUE(stream.local_replies.empty()) << "no 413 for a watermarking filter";
  holder->hold = false;
  body("x");  // goes on by returning kContinue
  EXPECT_EQ(pauses, (std::vector<bool>{true, false}));
  EXPECT_EQ(upstream->body, held + "x");
}

}  // namespace
}  // namespace skiff::server
