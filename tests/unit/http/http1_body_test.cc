// Body decoding: Content-Length, chunked (sizes, extensions, trailers, strictness) and until-close.
#include <gtest/gtest.h>

#include <string>

#include "skiff/http/http1_parser.h"

namespace skiff::http1 {
namespace {

using Status = BodyDecoder::Status;

struct Decoded {
  Status status;
  size_t consumed = 0;
  std::string out;
};

Decoded decodeAll(BodyDecoder& d, std::string_view in) {
  Decoded r;
  r.status = d.decode(in, &r.consumed, r.out);
  return r;
}

Decoded decodeChunked(std::string_view in) {
  BodyDecoder d(Framing::kChunked, 0);
  return decodeAll(d, in);
}

// Feeds `in` in pieces of `step` bytes, the way a read loop would.
Decoded decodeInSteps(BodyDecoder& d, std::string_view in, size_t step) {
  Decoded r{Status::kNeedMore, 0, {}};
  while (!in.empty()) {
    size_t consumed = 0;
    r.status = d.decode(in.substr(0, step), &consumed, r.out);
    r.consumed += consumed;
    if (r.status != Status::kNeedMore) break;
    EXPECT_EQ(consumed, std::min(step, in.size()));
    in.remove_prefix(consumed);
  }
  return r;
}

TEST(Http1BodyTest, ContentLengthStopsAtTheEnd) {
  BodyDecoder d(Framing::kContentLength, 5);
  Decoded r = decodeAll(d, "hel");
  EXPECT_EQ(r.status, Status::kNeedMore);
  EXPECT_EQ(r.consumed, 3u);
  EXPECT_EQ(r.out, "hel");
  r = decodeAll(d, "loGET / HTTP/1.1");
  EXPECT_EQ(r.status, Status::kDone);
  EXPECT_EQ(r.consumed, 2u);
  EXPECT_EQ(r.out, "lo");
  EXPECT_TRUE(d.done());
}

TEST(Http1BodyTest, NoBodyIsDoneAtOnce) {
  BodyDecoder none(Framing::kNone, 0);
  EXPECT_TRUE(none.done());
  EXPECT_EQ(decodeAll(none, "next").consumed, 0u);
  BodyDecoder zero(Framing::kContentLength, 0);
  EXPECT_EQ(decodeAll(zero, "x").status, Status::kDone);
}

TEST(Http1BodyTest, UntilCloseEndsWithFinish) {
  BodyDecoder d(Framing::kUntilClose, 0);
  Decoded r = decodeAll(d, "abc");
  EXPECT_EQ(r.status, Status::kNeedMore);
  EXPECT_EQ(r.consumed, 3u);
  EXPECT_EQ(d.finish(), Status::kDone);
  EXPECT_TRUE(d.done());
}

TEST(Http1BodyTest, EarlyCloseFailsFramedBodies) {
  BodyDecoder cl(Framing::kContentLength, 10);
  decodeAll(cl, "abc");
  EXPECT_EQ(cl.finish(), Status::kError);
  EXPECT_EQ(cl.error().status, 400);
  BodyDecoder chunked(Framing::kChunked, 0);
  decodeAll(chunked, "3\r\nab");
  EXPECT_EQ(chunked.finish(), Status::kError);
}

TEST(Http1BodyTest, SimpleChunked) {
  const Decoded r = decodeChunked("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET");
  EXPECT_EQ(r.status, Status::kDone);
  EXPECT_EQ(r.out, "hello world");
  EXPECT_EQ(r.consumed, 26u);
}

TEST(Http1BodyTest, ChunkedInEveryStepSize) {
  const std::string body =
      "4\r\nWiki\r\n5;name=val\r\npedia\r\nE ; a ; b=\"q\"\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n";
  for (size_t step = 1; step <= body.size(); ++step) {
    SCOPED_TRACE(step);
    BodyDecoder d(Framing::kChunked, 0);
    const Decoded r = decodeInSteps(d, body, step);
    EXPECT_EQ(r.status, Status::kDone);
    EXPECT_EQ(r.out, "Wikipedia in\r\n\r\nchunks.");
    EXPECT_EQ(r.consumed, body.size());
  }
}

TEST(Http1BodyTest, HexSizesAnyCaseAndLeadingZeros) {
  const std::string data(26, 'x');
  EXPECT_EQ(decodeChunked("1a\r\n" + data + "\r\n0\r\n\r\n").out, data);
  EXPECT_EQ(decodeChunked("1A\r\n" + data + "\r\n0\r\n\r\n").out, data);
  EXPECT_EQ(decodeChunked("001A\r\n" + data + "\r\n000\r\n\r\n").status, Status::kDone);
}

TEST(Http1BodyTest, BadChunkSizesAreRejected) {
  for (const char* line : {"-5", "+5", " 5", "5 ", "5x", "0x5", "", "g", "5 x", "5\t"}) {
    SCOPED_TRACE(line);
    const Decoded r = decodeChunked(std::string(line) + "\r\nhello\r\n0\r\n\r\n");
    EXPECT_EQ(r.status, Status::kError);
  }
}

TEST(Http1BodyTest, ChunkSizeOverflowIsRejected) {
  EXPECT_EQ(decodeChunked("10000000000000000\r\n").status, Status::kError);
  // The largest size parses, then waits for data.
  EXPECT_EQ(decodeChunked("ffffffffffffffff\r\nabc").status, Status::kNeedMore);
}

TEST(Http1BodyTest, CrlfMustFollowChunkData) {
  EXPECT_EQ(decodeChunked("5\r\nhelloX\r\n0\r\n\r\n").status, Status::kError);
  EXPECT_EQ(decodeChunked("5\r\nhello\n0\r\n\r\n").status, Status::kError);
  EXPECT_EQ(decodeChunked("5\r\nhello\r0\r\n\r\n").status, Status::kError);
  BodyDecoder d(Framing::kChunked, 0);
  EXPECT_EQ(decodeAll(d, "5\r\nhelloXY").status, Status::kError);  // Fails before a LF shows up.
}

TEST(Http1BodyTest, BareLfInChunkLinesIsRejected) {
  EXPECT_EQ(decodeChunked("5\nhello\r\n0\r\n\r\n").status, Status::kError);
  EXPECT_EQ(decodeChunked("5\r\nhello\r\n0\n\r\n").status, Status::kError);
  EXPECT_EQ(decodeChunked("5\r\nhello\r\n0\r\n\n").status, Status::kError);
  EXPECT_EQ(decodeChunked("5;ext\x01\r\nhello\r\n0\r\n\r\n").status, Status::kError);
}

TEST(Http1BodyTest, OverlongChunkSizeLineIsRejected) {
  Limits limits;
  limits.max_request_line = 32;
  BodyDecoder d(Framing::kChunked, 0, limits);
  EXPECT_EQ(decodeAll(d, "5;" + std::string(64, 'e')).status, Status::kError);
}

TEST(Http1BodyTest, TrailersAreParsed) {
  BodyDecoder d(Framing::kChunked, 0);
  const Decoded r = decodeAll(d, "3\r\nabc\r\n0\r\nGrpc-Status: 0\r\nX-Checksum:  abc \r\n\r\nnext");
  EXPECT_EQ(r.status, Status::kDone);
  EXPECT_EQ(r.out, "abc");
  EXPECT_EQ(std::string_view("3\r\nabc\r\n0\r\nGrpc-Status: 0\r\nX-Checksum:  abc \r\n\r\n").size(),
            r.consumed);
  ASSERT_EQ(d.trailers().size(), 2u);
  EXPECT_EQ(d.trailers().getOr("grpc-status"), "0");
  EXPECT_EQ(d.trailers().getOr("x-checksum"), "abc");
}

TEST(Http1BodyTest, BadTrailersAreRejected) {
  EXPECT_EQ(decodeChunked("0\r\nX : y\r\n\r\n").status, Status::kError);
  EXPECT_EQ(decodeChunked("0\r\nX: y\r\n z\r\n\r\n").status, Status::kError);
  EXPECT_EQ(decodeChunked("0\r\nX: y\n\r\n").status, Status::kError);
}

TEST(Http1BodyTest, TrailerLimits) {
  Limits limits;
  limits.max_headers = 2;
  BodyDecoder many(Framing::kChunked, 0, limits);
  EXPECT_EQ(decodeAll(many, "0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n").status, Status::kError);
  EXPECT_EQ(many.error().status, 431);

  limits = {};
  limits.max_header_bytes = 32;
  BodyDecoder big(Framing::kChunked, 0, limits);
  EXPECT_EQ(decodeInSteps(big, "0\r\nA: " + std::string(40, 'v') + "\r\n\r\n", 7).status, Status::kError);
  EXPECT_EQ(big.error().status, 431);
}

}  // namespace
}  // namespace skiff::http1
