// FilterManager: the pause/resume/buffering contract every filter kind (native, Lua, WASM, ext_proc) relies
// on.
#include "server/http/filter_manager.h"

#include <gtest/gtest.h>

#include "support/fake_stream.h"

#include <asio/io_context.hpp>
#include <string>
#include <vector>

namespace skiff::server {
namespace {

using http::Buffer;
using http::DataStatus;
using http::HeaderMap;
using http::HeadersStatus;
using http::TrailersStatus;

using skiff::testing::FakeStream;

// The codec side: what reached the downstream connection.
class FakeSink : public FilterManagerSink {
 public:
  void writeHeaders(HeaderMap& h, bool end) override {
    events.push_back("H:" + std::string(h.getOr(":status")) + (end ? ":end" : ""));
  }
  void writeData(Buffer& d, bool end) override { events.push_back("D:" + d + (end ? ":end" : "")); }
  void writeTrailers(HeaderMap&) override { events.push_back("T"); }
  std::vector<std::string> events;
};

// A decoder filter scripted per call; records what it saw.
class ScriptedDecoder : public http::StreamDecoderFilter {
 public:
  ScriptedDecoder(std::string name, std::vector<std::string>& log) : name_(std::move(name)), log_(log) {}
  void setDecoderFilterCallbacks(http::DecoderFilterCallbacks& cb) override { callbacks = &cb; }
  HeadersStatus decodeHeaders(HeaderMap&, bool end) override {
    log_.push_back(name_ + ".headers" + (end ? ":end" : ""));
    return headers_status;
  }
  DataStatus decodeData(Buffer& data, bool end) override {
    log_.push_back(name_ + ".data:" + data + (end ? ":end" : ""));
    return data_status;
  }
  TrailersStatus decodeTrailers(HeaderMap&) override {
    log_.push_back(name_ + ".trailers");
    return TrailersStatus::kContinue;
  }
  void onDestroy() override { log_.push_back(name_ + ".destroy"); }

  HeadersStatus headers_status = HeadersStatus::kContinue;
  DataStatus data_status = DataStatus::kContinue;
  http::DecoderFilterCallbacks* callbacks = nullptr;

 private:
  std::string name_;
  std::vector<std::string>& log_;
};

class AddHeaderEncoder : public http::StreamEncoderFilter {
 public:
  AddHeaderEncoder(std::string value, std::vector<std::string>& log) : value_(std::move(value)), log_(log) {}
  void setEncoderFilterCallbacks(http::EncoderFilterCallbacks&) override {}
  HeadersStatus encodeHeaders(HeaderMap& h, bool) override {
    log_.push_back("enc." + value_);
    h.add("x-order", value_);
    return HeadersStatus::kContinue;
  }

 private:
  std::string value_;
  std::vector<std::string>& log_;
};

class FilterManagerTest : public ::testing::Test {
 protected:
  FilterManagerTest() : fm(stream, sink, 16) { stream.fm = &fm; }

  ScriptedDecoder* addDecoder(const std::string& name) {
    auto f = std::make_unique<ScriptedDecoder>(name, log);
    auto* raw = f.get();
    fm.addDecoderFilter(std::move(f));
    return raw;
  }
  static std::unique_ptr<HeaderMap> request() {
    auto h = std::make_unique<HeaderMap>();
    h->add(":method", "POST");
    h->add(":path", "/");
    return h;
  }

  FakeStream stream;
  FakeSink sink;
  std::vector<std::string> log;
  FilterManager fm;
};

TEST_F(FilterManagerTest, HeadersOnlyRequestReachesEveryFilterWithEndStream) {
  addDecoder("a");
  addDecoder("b");
  fm.decodeHeaders(request(), true);
  EXPECT_EQ(log, (std::vector<std::string>{"a.headers:end", "b.headers:end"}));
}

TEST_F(FilterManagerTest, StoppedHeadersResumeOnContinueDecoding) {
  auto* a = addDecoder("a");
  addDecoder("b");
  a->headers_status = HeadersStatus::kStop;
  fm.decodeHeaders(request(), true);
  EXPECT_EQ(log, (std::vector<std::string>{"a.headers:end"}));
  a->callbacks->continueDecoding();
  EXPECT_EQ(log, (std::vector<std::string>{"a.headers:end", "b.headers:end"}));
}

TEST_F(FilterManagerTest, StopAndBufferHoldsTheBodyUntilContinue) {
  auto* a = addDecoder("a");
  addDecoder("b");
  a->data_status = DataStatus::kStopAndBuffer;
  fm.decodeHeaders(request(), false);
  Buffer one("abc"), two("def");
  fm.decodeData(one, false);
  fm.decodeData(two, true);
  ASSERT_NE(a->callbacks->decodingBuffer(), nullptr);
  EXPECT_EQ(*a->callbacks->decodingBuffer(), "abcdef");
  // b saw the headers but none of the body yet.
  EXPECT_EQ(log, (std::vector<std::string>{"a.headers", "b.headers", "a.data:abc", "a.data:def:end"}));
  a->callbacks->continueDecoding();
  EXPECT_EQ(log.back(), "b.data:abcdef:end");
}

TEST_F(FilterManagerTest, StoppedHeadersStillSeeDataAndContinueOnIt) {
  auto* a = addDecoder("a");
  addDecoder("b");
  a->headers_status = HeadersStatus::kStop;
  fm.decodeHeaders(request(), false);
  Buffer body("xyz");
  fm.decodeData(body, true);  // a returns kContinue on data: headers and data move on together
  EXPECT_EQ(log, (std::vector<std::string>{"a.headers", "a.data:xyz:end", "b.headers", "b.data:xyz:end"}));
}

TEST_F(FilterManagerTest, TrailersFollowTheBufferedBody) {
  auto* a = addDecoder("a");
  addDecoder("b");
  a->data_status = DataStatus::kStopAndBuffer;
  fm.decodeHeaders(request(), false);
  Buffer body("12");
  fm.decodeData(body, false);
  auto trailers = std::make_unique<HeaderMap>();
  trailers->add("grpc-status", "0");
  fm.decodeTrailers(std::move(trailers));
  // Trailers release the filter that held the body; b sees body then trailers.
  EXPECT_EQ(log, (std::vector<std::string>{"a.headers", "b.headers", "a.data:12", "a.trailers", "b.data:12",
                                           "b.trailers"}));
}

TEST_F(FilterManagerTest, BufferOverLimitAnswers413) {
  auto* a = addDecoder("a");
  a->data_status = DataStatus::kStopAndBuffer;
  fm.decodeHeaders(request(), false);
  Buffer big(17, 'x');  // the limit is 16
  fm.decodeData(big, false);
  EXPECT_EQ(stream.local_replies, (std::vector<uint32_t>{413}));
  EXPECT_EQ(sink.events.front(), "H:413");
}

TEST_F(FilterManagerTest, EncodersRunInReverseConfigurationOrder) {
  fm.addEncoderFilter(std::make_unique<AddHeaderEncoder>("first-configured", log));
  fm.addEncoderFilter(std::make_unique<AddHeaderEncoder>("second-configured", log));
  auto response = std::make_unique<HeaderMap>();
  response->add(":status", "200");
  fm.encodeHeaders(std::move(response), true);
  EXPECT_EQ(log, (std::vector<std::string>{"enc.second-configured", "enc.first-configured"}));
  EXPECT_EQ(sink.events, (std::vector<std::string>{"H:200:end"}));
  EXPECT_TRUE(fm.responseComplete());
}

TEST_F(FilterManagerTest, LocalReplyFromADecoderGoesThroughEncoders) {
  auto* a = addDecoder("a");
  fm.addEncoderFilter(std::make_unique<AddHeaderEncoder>("enc", log));
  a->headers_status = HeadersStatus::kStop;
  fm.decodeHeaders(request(), true);
  a->callbacks->sendLocalReply(403, "Forbidden", "test", nullptr);
  EXPECT_EQ(sink.events, (std::vector<std::string>{"H:403", "D:Forbidden:end"}));
  ASSERT_NE(fm.responseHeaders(), nullptr);
  EXPECT_EQ(fm.responseHeaders()->getOr("x-order"), "enc");
}

TEST_F(FilterManagerTest, DestroyTellsEveryFilterOnceAndStopsIteration) {
  auto* a = addDecoder("a");
  addDecoder("b");
  a->headers_status = HeadersStatus::kStop;
  fm.decodeHeaders(request(), true);
  fm.destroyFilters();
  a->callbacks->continueDecoding();  // after destroy: nothing runs
  EXPECT_EQ(log, (std::vector<std::string>{"a.headers:end", "a.destroy", "b.destroy"}));
}

}  // namespace
}  // namespace skiff::server
