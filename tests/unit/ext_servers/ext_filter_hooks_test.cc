// The two FilterManager hooks ext_proc relies on: a filter holding end_stream headers adds a body
// (addDecodingBuffer), and a filter injects its own body chunks (injectDecodedData / injectEncodedData),
// with the end of stream and trailers as the later filters see them.
#include <gtest/gtest.h>

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
using http::TrailersStatus;

class Sink : public FilterManagerSink {
 public:
  void writeHeaders(HeaderMap&, bool end) override {
    events.push_back(std::string("H") + (end ? ":end" : ""));
  }
  void writeData(Buffer& d, bool end) override { events.push_back("D:" + d + (end ? ":end" : "")); }
  void writeTrailers(HeaderMap&) override { events.push_back("T"); }
  std::vector<std::string> events;
};

// Holds everything it gets (and drops body bytes, as ext_proc's full duplex mode does).
class Holder : public http::StreamFilter {
 public:
  void setDecoderFilterCallbacks(http::DecoderFilterCallbacks& cb) override { dec = &cb; }
  void setEncoderFilterCallbacks(http::EncoderFilterCallbacks& cb) override { enc = &cb; }
  HeadersStatus decodeHeaders(HeaderMap&, bool) override { return HeadersStatus::kStop; }
  DataStatus decodeData(Buffer& data, bool) override {
    data.clear();
    return DataStatus::kStopAndBuffer;
  }
  TrailersStatus decodeTrailers(HeaderMap&) override { return TrailersStatus::kStop; }
  HeadersStatus encodeHeaders(HeaderMap&, bool) override { return HeadersStatus::kStop; }
  DataStatus encodeData(Buffer& data, bool) override {
    data.clear();
    return DataStatus::kStopAndBuffer;
  }
  http::DecoderFilterCallbacks* dec = nullptr;
  http::EncoderFilterCallbacks* enc = nullptr;
};

class Recorder : public http::StreamDecoderFilter {
 public:
  explicit Recorder(std::vector<std::string>& log) : log_(log) {}
  void setDecoderFilterCallbacks(http::DecoderFilterCallbacks&) override {}
  HeadersStatus decodeHeaders(HeaderMap&, bool end) override {
    log_.push_back(std::string("headers") + (end ? ":end" : ""));
    return HeadersStatus::kContinue;
  }
  DataStatus decodeData(Buffer& d, bool end) override {
    log_.push_back("data:" + d + (end ? ":end" : ""));
    return DataStatus::kContinue;
  }
  TrailersStatus decodeTrailers(HeaderMap&) override {
    log_.push_back("trailers");
    return TrailersStatus::kContinue;
  }

 private:
  std::vector<std::string>& log_;
};

class FilterHooksTest : public ::testing::Test {
 protected:
  FilterHooksTest() : fm(stream, sink, 1 << 20) {
    stream.fm = &fm;
    auto h = std::make_unique<Holder>();
    holder = h.get();
    fm.addStreamFilter(std::move(h));
    fm.addDecoderFilter(std::make_unique<Recorder>(log));
  }
  static std::unique_ptr<HeaderMap> headers() {
    auto h = std::make_unique<HeaderMap>();
    h->add(":method", "GET");
    h->add(":path", "/");
    h->add(":status", "200");
    return h;
  }

  skiff::testing::FakeStream stream;
  Sink sink;
  std::vector<std::string> log;
  FilterManager fm;
  Holder* holder = nullptr;
};

TEST_F(FilterHooksTest, AddedBodyTurnsEndStreamHeadersIntoHeadersAndData) {
  fm.decodeHeaders(headers(), true);
  EXPECT_TRUE(log.empty());
  Buffer* b = holder->dec->addDecodingBuffer();
  ASSERT_NE(b, nullptr);
  *b = "new-body";
  holder->dec->continueDecoding();
  EXPECT_EQ(log, (std::vector<std::string>{"headers", "data:new-body:end"}));
}

TEST_F(FilterHooksTest, InjectedChunksCarryTheirOwnEndAndTrailersFollowTheLast) {
  fm.decodeHeaders(headers(), false);
  Buffer chunk = "orig";
  fm.decodeData(chunk, false);
  fm.decodeTrailers(std::make_unique<HeaderMap>());  // the downstream is done; the holder still is not
  EXPECT_TRUE(log.empty());
  Buffer a = "A";
  holder->dec->injectDecodedData(a, false);
  Buffer b = "B";
  holder->dec->injectDecodedData(b, true);
  EXPECT_EQ(log, (std::vector<std::string>{"headers", "data:A", "data:B", "trailers"}));
}

TEST_F(FilterHooksTest, InjectWithoutDataReleasesHeadersOnly) {
  fm.decodeHeaders(headers(), false);
  Buffer empty;
  holder->dec->injectDecodedData(empty, false);
  EXPECT_EQ(log, (std::vector<std::string>{"headers"}));
  Buffer late = "late";
  fm.decodeData(late, true);  // the holder swallows it
  Buffer out = "X";
  holder->dec->injectDecodedData(out, true);
  EXPECT_EQ(log, (std::vector<std::string>{"headers", "data:X:end"}));
}

TEST_F(FilterHooksTest, InjectedResponseChunksReachTheCodec) {
  fm.encodeHeaders(headers(), false);
  Buffer up = "upstream";
  fm.encodeData(up, true);
  EXPECT_TRUE(sink.events.empty());
  Buffer a = "a";
  holder->enc->injectEncodedData(a, false);
  Buffer b = "b";
  holder->enc->injectEncodedData(b, true);
  EXPECT_EQ(sink.events, (std::vector<std::string>{"H", "D:a", "D:b:end"}));
}

}  // namespace
}  // namespace skiff::server
