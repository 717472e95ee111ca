// FilterManager entry storage: chains longer than the in-place entries, stream filters on both sides,
// and the run-order indices that continueDecoding/continueEncoding resolve.
#include <gtest/gtest.h>

#include <memory>
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
  void writeHeaders(HeaderMap& h, bool end) override {
    events.push_back("H:" + std::string(h.getOr(":status")) + (end ? ":end" : ""));
  }
  void writeData(Buffer& d, bool end) override { events.push_back("D:" + d + (end ? ":end" : "")); }
  void writeTrailers(HeaderMap&) override { events.push_back("T"); }
  std::vector<std::string> events;
};

// A stream filter that logs both directions and can stop either one.
class Both : public http::StreamFilter {
 public:
  Both(std::string name, std::vector<std::string>& log) : name_(std::move(name)), log_(log) {}
  ~Both() override { log_.push_back(name_ + ".dtor"); }
  void setDecoderFilterCallbacks(http::DecoderFilterCallbacks& cb) override { dec = &cb; }
  void setEncoderFilterCallbacks(http::EncoderFilterCallbacks& cb) override { enc = &cb; }
  HeadersStatus decodeHeaders(HeaderMap&, bool) override {
    log_.push_back(name_ + ".dec");
    return stop_decode ? HeadersStatus::kStop : HeadersStatus::kContinue;
  }
  DataStatus decodeData(Buffer& data, bool) override {
    log_.push_back(name_ + ".data:" + data);
    return buffer_decode ? DataStatus::kStopAndBuffer : DataStatus::kContinue;
  }
  HeadersStatus encodeHeaders(HeaderMap&, bool) override {
    log_.push_back(name_ + ".enc");
    return stop_encode ? HeadersStatus::kStop : HeadersStatus::kContinue;
  }
  void onDestroy() override { log_.push_back(name_ + ".destroy"); }

  bool stop_decode = false;
  bool buffer_decode = false;
  bool stop_encode = false;
  http::DecoderFilterCallbacks* dec = nullptr;
  http::EncoderFilterCallbacks* enc = nullptr;

 private:
  std::string name_;
  std::vector<std::string>& log_;
};

class DecodeOnly : public http::StreamDecoderFilter {
 public:
  DecodeOnly(std::string name, std::vector<std::string>& log) : name_(std::move(name)), log_(log) {}
  void setDecoderFilterCallbacks(http::DecoderFilterCallbacks&) override {}
  HeadersStatus decodeHeaders(HeaderMap&, bool) override {
    log_.push_back(name_ + ".dec");
    return HeadersStatus::kContinue;
  }
  void onDestroy() override { log_.push_back(name_ + ".destroy"); }

 private:
  std::string name_;
  std::vector<std::string>& log_;
};

class EncodeOnly : public http::StreamEncoderFilter {
 public:
  EncodeOnly(std::string name, std::vector<std::string>& log) : name_(std::move(name)), log_(log) {}
  void setEncoderFilterCallbacks(http::EncoderFilterCallbacks&) override {}
  HeadersStatus encodeHeaders(HeaderMap&, bool) override {
    log_.push_back(name_ + ".enc");
    return HeadersStatus::kContinue;
  }
  void onDestroy() override { log_.push_back(name_ + ".destroy"); }

 private:
  std::string name_;
  std::vector<std::string>& log_;
};

std::unique_ptr<HeaderMap> headers(const char* pseudo, const char* value) {
  auto h = std::make_unique<HeaderMap>();
  h->add(pseudo, value);
  return h;
}

class FilterManagerChainTest : public ::testing::Test {
 protected:
  FilterManagerChainTest() : fm(std::make_unique<FilterManager>(stream, sink, 1024)) { stream.fm = fm.get(); }

  // s0 d1 s2 e3 s4 d5 s6 e7 s8: 7 decoders, 6 encoders, more than fit in place on both sides.
  std::vector<Both*> addLongChain() {
    std::vector<Both*> dual;
    for (int i = 0; i < 9; ++i) {
      const std::string name = (i % 2 == 0 ? "s" : (i % 4 == 1 ? "d" : "e")) + std::to_string(i);
      if (i % 2 == 0) {
        auto f = std::make_unique<Both>(name, log);
        dual.push_back(f.get());
        fm->addStreamFilter(std::move(f));
      } else if (i % 4 == 1) {
        fm->addDecoderFilter(std::make_unique<DecodeOnly>(name, log));
      } else {
        fm->addEncoderFilter(std::make_unique<EncodeOnly>(name, log));
      }
    }
    return dual;
  }

  skiff::testing::FakeStream stream;
  NullSink sink;
  std::vector<std::string> log;
  std::unique_ptr<FilterManager> fm;
};

TEST_F(FilterManagerChainTest, LongChainDecodesInOrderAndResumesFromASpilledEntry) {
  auto dual = addLongChain();
  Both* s6 = dual[3];
  s6->stop_decode = true;
  fm->decodeHeaders(headers(":path", "/"), true);
  EXPECT_EQ(log, (std::vector<std::string>{"s0.dec", "d1.dec", "s2.dec", "s4.dec", "d5.dec", "s6.dec"}));
  s6->dec->continueDecoding();
  EXPECT_EQ(log.back(), "s8.dec");
  EXPECT_EQ(log.size(), 7u);
}

TEST_F(FilterManagerChainTest, SpilledEntryBuffersAndReleasesTheBody) {
  auto dual = addLongChain();
  Both* s6 = dual[3];
  s6->buffer_decode = true;
  fm->decodeHeaders(headers(":path", "/"), false);
  Buffer body("ab");
  fm->decodeData(body, false);
  ASSERT_NE(s6->dec->decodingBuffer(), nullptr);
  EXPECT_EQ(*s6->dec->decodingBuffer(), "ab");
  EXPECT_EQ(log.back(), "s6.data:ab");
  s6->dec->continueDecoding();
  EXPECT_EQ(log.back(), "s8.data:ab");
}

TEST_F(FilterManagerChainTest, LongChainEncodesInReverseAndResumesFromEitherStorage) {
  auto dual = addLongChain();
  Both* s8 = dual[4];  // runs first on the response; stored last (spilled)
  Both* s2 = dual[1];  // stored in place
  s8->stop_encode = true;
  s2->stop_encode = true;
  fm->encodeHeaders(headers(":status", "200"), true);
  EXPECT_EQ(log, (std::vector<std::string>{"s8.enc"}));
  s8->enc->continueEncoding();
  EXPECT_EQ(log, (std::vector<std::string>{"s8.enc", "e7.enc", "s6.enc", "s4.enc", "e3.enc", "s2.enc"}));
  EXPECT_TRUE(sink.events.empty());
  s2->enc->continueEncoding();
  EXPECT_EQ(log.back(), "s0.enc");
  EXPECT_EQ(sink.events, (std::vector<std::string>{"H:200:end"}));
}

TEST_F(FilterManagerChainTest, EveryFilterHearsOnDestroyOnceAndStreamFiltersAreFreedOnce) {
  addLongChain();
  fm->destroyFilters();
  EXPECT_EQ(log,
            (std::vector<std::string>{"s0.destroy", "d1.destroy", "s2.destroy", "s4.destroy", "d5.destroy",
                                      "s6.destroy", "s8.destroy", "e7.destroy", "e3.destroy"}));
  log.clear();
  fm.reset();
  EXPECT_EQ(log, (std::vector<std::string>{"s0.dtor", "s2.dtor", "s4.dtor", "s6.dtor", "s8.dtor"}));
}

TEST_F(FilterManagerChainTest, ShortChainStaysInPlace) {
  auto f = std::make_unique<Both>("only", log);
  Both* only = f.get();
  fm->addStreamFilter(std::move(f));
  only->stop_decode = true;
  fm->decodeHeaders(headers(":path", "/"), true);
  only->dec->continueDecoding();  // the last filter: nothing further to run
  fm->encodeHeaders(headers(":status", "204"), true);
  EXPECT_EQ(log, (std::vector<std::string>{"only.dec", "only.enc"}));
  EXPECT_EQ(sink.events, (std::vector<std::string>{"H:204:end"}));
}

}  // namespace
}  // namespace skiff::server
