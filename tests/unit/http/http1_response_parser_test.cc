// Response head parsing: status line, 1xx, bodiless responses, framing and connection semantics.
#include <gtest/gtest.h>

#include <string>

#include "skiff/http/http1_parser.h"

namespace skiff::http1 {
namespace {

using Status = ResponseParser::Status;

Status feedAll(ResponseParser& p, std::string_view data, size_t* consumed = nullptr) {
  size_t c = 0;
  const Status s = p.feed(data, &c);
  if (consumed != nullptr) *consumed = c;
  return s;
}

void expectError(std::string_view data) {
  SCOPED_TRACE(std::string(data));
  ResponseParser p;
  EXPECT_EQ(feedAll(p, data), Status::kError);
  EXPECT_NE(p.error().status, 0);
}

TEST(Http1ResponseParserTest, ParsesStatusLineAndHeaders) {
  ResponseParser p;
  const std::string resp = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
  size_t consumed = 0;
  ASSERT_EQ(feedAll(p, resp, &consumed), Status::kDone);
  EXPECT_EQ(consumed, resp.size() - 5);
  EXPECT_EQ(p.statusCode(), 200);
  EXPECT_EQ(p.reasonPhrase(), "OK");
  ASSERT_GE(p.headers().size(), 1u);
  EXPECT_EQ(p.headers().entries()[0], (http::HeaderMap::Entry{":status", "200"}));
  EXPECT_EQ(p.headers().getOr("content-type"), "text/plain");
  EXPECT_EQ(p.framing(), Framing::kContentLength);
  EXPECT_EQ(p.contentLength(), 5u);
  EXPECT_TRUE(p.keepAlive());
  EXPECT_EQ(p.versionMinor(), 1);
}

TEST(Http1ResponseParserTest, ReasonPhraseIsLenient) {
  ResponseParser p;
  ASSERT_EQ(feedAll(p, "HTTP/1.1 299 Whatever You Like\t!\r\nContent-Length: 0\r\n\r\n"), Status::kDone);
  EXPECT_EQ(p.reasonPhrase(), "Whatever You Like\t!");
  p.reset();
  ASSERT_EQ(feedAll(p, "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n"), Status::kDone);
  EXPECT_EQ(p.reasonPhrase(), "");
  p.reset();
  ASSERT_EQ(feedAll(p, "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"), Status::kDone);
  EXPECT_EQ(p.statusCode(), 200);
}

TEST(Http1ResponseParserTest, BadStatusLinesAreRejected) {
  expectError("HTTP/1.1 20 OK\r\n\r\n");
  expectError("HTTP/1.1 2000 OK\r\n\r\n");
  expectError("HTTP/1.1 099 Low\r\n\r\n");
  expectError("HTTP/1.1 2x0 OK\r\n\r\n");
  expectError("HTTP/2.0 200 OK\r\n\r\n");
  expectError("HTTP/1.1  200 OK\r\n\r\n");
  expectError("http/1.1 200 OK\r\n\r\n");
  expectError("HTTP/1.1 200 O\x01K\r\n\r\n");
  expectError("ICY 200 OK\r\n\r\n");
}

TEST(Http1ResponseParserTest, BareLfIsRejected) {
  expectError("HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n");
  expectError("HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n");
  expectError("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\n");
}

TEST(Http1ResponseParserTest, HeaderRulesApply) {
  expectError("HTTP/1.1 200 OK\r\nX : y\r\n\r\n");
  expectError("HTTP/1.1 200 OK\r\nX: y\r\n folded\r\n\r\n");
  expectError("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
  expectError("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n");
}

TEST(Http1ResponseParserTest, ContentLengthAndChunkedConflict) {
  ResponseParser p;
  EXPECT_EQ(feedAll(p, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Status::kError);
  EXPECT_EQ(p.error().detail, details::kChunkedContentLength);
}

TEST(Http1ResponseParserTest, Framing) {
  struct Case {
    std::string resp;
    Framing framing;
    bool keep_alive;
  };
  const std::vector<Case> cases = {
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", Framing::kChunked, true},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Framing::kChunked, true},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", Framing::kUntilClose, false},
      {"HTTP/1.1 200 OK\r\n\r\n", Framing::kUntilClose, false},
      {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", Framing::kNone, true},
      {"HTTP/1.1 204 No Content\r\n\r\n", Framing::kNone, true},
      {"HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\n\r\n", Framing::kNone, true},
      {"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", Framing::kContentLength, false},
      {"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n", Framing::kContentLength,
       true},
      {"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n", Framing::kContentLength, false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.resp);
    ResponseParser p;
    ASSERT_EQ(feedAll(p, c.resp), Status::kDone) << p.error().detail;
    EXPECT_EQ(p.framing(), c.framing);
    EXPECT_EQ(p.keepAlive(), c.keep_alive);
  }
}

TEST(Http1ResponseParserTest, ChunkedMustBeLastAndOnce) {
  expectError("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
  expectError("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n");
}

TEST(Http1ResponseParserTest, HeadResponseHasNoBody) {
  ResponseParser p;
  p.setRequestMethodHead(true);
  ASSERT_EQ(feedAll(p, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"), Status::kDone);
  EXPECT_EQ(p.framing(), Framing::kNone);
  EXPECT_EQ(p.contentLength(), 1000u);
  EXPECT_TRUE(p.keepAlive());
  // reset() keeps the request method.
  p.reset();
  ASSERT_EQ(feedAll(p, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), Status::kDone);
  EXPECT_EQ(p.framing(), Framing::kNone);
}

TEST(Http1ResponseParserTest, InformationalThenFinal) {
  const std::string buf =
      "HTTP/1.1 100 Continue\r\n\r\n"
      "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
      "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
  std::string_view rest = buf;
  ResponseParser p;
  size_t consumed = 0;
  ASSERT_EQ(p.feed(rest, &consumed), Status::kDone);
  EXPECT_EQ(p.statusCode(), 100);
  EXPECT_EQ(p.framing(), Framing::kNone);
  EXPECT_EQ(consumed, 25u);
  rest.remove_prefix(consumed);
  p.reset();
  ASSERT_EQ(p.feed(rest, &consumed), Status::kDone);
  EXPECT_EQ(p.statusCode(), 103);
  EXPECT_EQ(p.headers().getOr("link"), "</style.css>; rel=preload");
  rest.remove_prefix(consumed);
  p.reset();
  ASSERT_EQ(p.feed(rest, &consumed), Status::kDone);
  EXPECT_EQ(p.statusCode(), 201);
  EXPECT_EQ(p.framing(), Framing::kContentLength);
  rest.remove_prefix(consumed);
  EXPECT_EQ(rest, "ok");
}

TEST(Http1ResponseParserTest, EverySplitPointAndByteByByte) {
  const std::string resp =
      "HTTP/1.1 404 Not Found\r\nServer: upstream\r\nContent-Length: 9\r\nDate: Mon, 01 Jan 2024 00:00:00 "
      "GMT\r\n\r\nnot found";
  const size_t head = resp.size() - 9;
  for (size_t split = 0; split <= resp.size(); ++split) {
    SCOPED_TRACE(split);
    ResponseParser p;
    size_t consumed = 0;
    const Status first = p.feed(std::string_view(resp).substr(0, split), &consumed);
    if (split < head) {
      ASSERT_EQ(first, Status::kNeedMore);
      ASSERT_EQ(p.feed(resp, &consumed), Status::kDone);
    } else {
      ASSERT_EQ(first, Status::kDone);
    }
    EXPECT_EQ(consumed, head);
    EXPECT_EQ(p.statusCode(), 404);
    EXPECT_EQ(p.headers().size(), 4u);
    EXPECT_EQ(p.headers().getOr("date"), "Mon, 01 Jan 2024 00:00:00 GMT");
  }
  ResponseParser p;
  size_t consumed = 0;
  for (size_t n = 1; n < head; ++n) {
    ASSERT_EQ(p.feed(std::string_view(resp).substr(0, n), &consumed), Status::kNeedMore);
  }
  ASSERT_EQ(p.feed(std::string_view(resp).substr(0, head), &consumed), Status::kDone);
}

TEST(Http1ResponseParserTest, HeadTooLarge) {
  Limits limits;
  limits.max_header_bytes = 64;
  ResponseParser p(limits);
  EXPECT_EQ(feedAll(p, "HTTP/1.1 200 OK\r\nX: " + std::string(100, 'a')), Status::kError);
  EXPECT_EQ(p.error().status, 431);
}

}  // namespace
}  // namespace skiff::http1
