// Request head parsing: RFC 9112 strictness, limits, incremental feeding and pipelining.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "skiff/http/http1_parser.h"

namespace skiff::http1 {
namespace {

using Status = RequestParser::Status;
using Entries = std::vector<std::pair<std::string, std::string>>;

struct Parsed {
  Status status;
  size_t consumed = 0;
  ParseError error;
};

Parsed parse(RequestParser& p, std::string_view data) {
  Parsed r;
  r.status = p.feed(data, &r.consumed);
  r.error = p.error();
  return r;
}

Parsed parse(std::string_view data, Limits limits = {}) {
  RequestParser p(limits);
  return parse(p, data);
}

void expectError(std::string_view data, int status, std::string_view detail = {}) {
  SCOPED_TRACE(std::string(data));
  const Parsed r = parse(data);
  ASSERT_EQ(r.status, Status::kError);
  EXPECT_EQ(r.error.status, status);
  if (!detail.empty()) {
    EXPECT_EQ(r.error.detail, detail);
  }
}

void expectOk(std::string_view data) {
  SCOPED_TRACE(std::string(data));
  const Parsed r = parse(data);
  EXPECT_EQ(r.status, Status::kDone) << r.error.detail;
}

Entries entries(const http::HeaderMap& h) {
  return Entries(h.begin(), h.end());
}

constexpr std::string_view kGet =
    "GET /index.html?q=1 HTTP/1.1\r\n"
    "Host: example.com\r\n"
    "User-Agent: curl/8.0\r\n"
    "Accept: */*\r\n"
    "\r\n";

TEST(Http1RequestParserTest, ParsesSimpleGet) {
  RequestParser p;
  const Parsed r = parse(p, kGet);
  ASSERT_EQ(r.status, Status::kDone);
  EXPECT_EQ(r.consumed, kGet.size());
  EXPECT_EQ(entries(p.headers()), (Entries{{":method", "GET"},
                                           {":path", "/index.html?q=1"},
                                           {":authority", "example.com"},
                                           {"user-agent", "curl/8.0"},
                                           {"accept", "*/*"}}));
  EXPECT_EQ(p.versionMinor(), 1);
  EXPECT_TRUE(p.keepAlive());
  EXPECT_EQ(p.framing(), Framing::kNone);
  EXPECT_FALSE(p.expectContinue());
  EXPECT_FALSE(p.isUpgrade());
  EXPECT_EQ(p.headers().count("host"), 0u);
}

TEST(Http1RequestParserTest, NeedsMoreUntilEmptyLine) {
  RequestParser p;
  EXPECT_EQ(parse(p, "GET / HTTP/1.1\r\nHost: a\r\n").status, Status::kNeedMore);
  EXPECT_EQ(parse(p, "GET / HTTP/1.1\r\nHost: a\r\n\r").status, Status::kNeedMore);
  const Parsed r = parse(p, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(r.status, Status::kDone);
  EXPECT_EQ(r.consumed, 27u);
}

TEST(Http1RequestParserTest, IgnoresLeadingEmptyLines) {
  RequestParser p;
  const std::string req = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
  const Parsed r = parse(p, req);
  ASSERT_EQ(r.status, Status::kDone);
  EXPECT_EQ(r.consumed, req.size());
  EXPECT_EQ(p.headers().getOr(":method"), "GET");
}

// ---- request line ----

TEST(Http1RequestParserTest, AbsoluteFormSplitsAuthorityAndPath) {
  RequestParser p;
  ASSERT_EQ(parse(p, "GET http://up.example:8080/a/b?c=d HTTP/1.1\r\nHost: ignored\r\n\r\n").status,
            Status::kDone);
  EXPECT_EQ(entries(p.headers()),
            (Entries{{":method", "GET"}, {":path", "/a/b?c=d"}, {":authority", "up.example:8080"}}));
}

TEST(Http1RequestParserTest, AbsoluteFormWithoutPath) {
  RequestParser p;
  ASSERT_EQ(parse(p, "GET HTTPS://x.y HTTP/1.1\r\nHost: x.y\r\n\r\n").status, Status::kDone);
  EXPECT_EQ(p.headers().getOr(":path"), "/");
  EXPECT_EQ(p.headers().getOr(":authority"), "x.y");
  p.reset();
  ASSERT_EQ(parse(p, "GET http://x.y?q HTTP/1.1\r\nHost: x.y\r\n\r\n").status, Status::kDone);
  EXPECT_EQ(p.headers().getOr(":path"), "/?q");
}

TEST(Http1RequestParserTest, AbsoluteFormStillNeedsHostInHttp11) {
  expectError("GET http://x.y/ HTTP/1.1\r\n\r\n", 400, details::kMissingHost);
}

TEST(Http1RequestParserTest, AbsoluteFormWithEmptyAuthorityIsRejected) {
  expectError("GET http:///a HTTP/1.1\r\nHost: a\r\n\r\n", 400, details::kInvalidUrl);
}

TEST(Http1RequestParserTest, ConnectUsesAuthorityForm) {
  RequestParser p;
  ASSERT_EQ(parse(p, "CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n").status,
            Status::kDone);
  EXPECT_EQ(entries(p.headers()), (Entries{{":method", "CONNECT"}, {":authority", "db.internal:5432"}}));
}

TEST(Http1RequestParserTest, AsteriskOnlyForOptions) {
  RequestParser p;
  ASSERT_EQ(parse(p, "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").status, Status::kDone);
  EXPECT_EQ(p.headers().getOr(":path"), "*");
  expectError("GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400, details::kInvalidUrl);
}

TEST(Http1RequestParserTest, RelativeTargetIsRejected) {
  expectError("GET index.html HTTP/1.1\r\nHost: a\r\n\r\n", 400, details::kInvalidUrl);
}

TEST(Http1RequestParserTest, MethodMustBeToken) {
  expectError("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
  expectError("GE\tT / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
  expectError(" / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
  expectOk("M-SEARCH / HTTP/1.1\r\nHost: a\r\n\r\n");
}

TEST(Http1RequestParserTest, SeparatorsMustBeSingleSpaces) {
  expectError("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
  expectError("GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400);
  expectError("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400);
  expectError("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400);
  expectError("GET /\r\nHost: a\r\n\r\n", 400);  // HTTP/0.9 style.
}

TEST(Http1RequestParserTest, TargetRejectsControls) {
  expectError(std::string("GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
  expectError(std::string("GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
  expectError(std::string("GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
  expectError(std::string("GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n", 30), 400);
}

TEST(Http1RequestParserTest, VersionMustBeExactly10Or11) {
  expectError("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505);
  expectError("GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505);
  expectError("GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505);
  expectError("GET / http/1.1\r\nHost: a\r\n\r\n", 400);
  expectError("GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400);
  expectError("GET / HTTP/1\r\nHost: a\r\n\r\n", 400);
  expectError("GET / FOO\r\nHost: a\r\n\r\n", 400);
  RequestParser p;
  ASSERT_EQ(parse(p, "GET / HTTP/1.0\r\n\r\n").status, Status::kDone);
  EXPECT_EQ(p.versionMinor(), 0);
}

TEST(Http1RequestParserTest, GarbageStartLineFailsBeforeHeadIsComplete) {
  const Parsed r = parse("\x16\x03\x01\x02\x05 garbage\r\nmore");
  EXPECT_EQ(r.status, Status::kError);
  EXPECT_EQ(r.error.status, 400);
}

TEST(Http1RequestParserTest, LongRequestLineIs414) {
  Limits limits;
  limits.max_request_line = 64;
  const std::string long_path(100, 'a');
  EXPECT_EQ(parse("GET /" + long_path + " HTTP/1.1\r\nHost: a\r\n\r\n", limits).error.status, 414);
  // Also while the line is still incomplete.
  const Parsed partial = parse("GET /" + long_path, limits);
  EXPECT_EQ(partial.status, Status::kError);
  EXPECT_EQ(partial.error.status, 414);
  EXPECT_EQ(parse("GET /" + std::string(30, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n", limits).status,
            Status::kDone);
}

// ---- header fields ----

TEST(Http1RequestParserTest, NamesAreLowerCasedAndValuesTrimmed) {
  RequestParser p;
  ASSERT_EQ(parse(p, "GET / HTTP/1.1\r\nHost: a\r\nX-Foo: \t bar baz \t\r\nX-Empty:\r\n\r\n").status,
            Status::kDone);
  EXPECT_EQ(p.headers().getOr("x-foo"), "bar baz");
  ASSERT_NE(p.headers().get("x-empty"), nullptr);
  EXPECT_EQ(p.headers().getOr("x-empty", "absent"), "");
  EXPECT_EQ(p.headers().entries()[3].first, "x-foo");
}

TEST(Http1RequestParserTest, WhitespaceBeforeColonIsRejected) {
  expectError("GET / HTTP/1.1\r\nHost: a\r\nX-Foo : bar\r\n\r\n", 400);
  expectError("GET / HTTP/1.1\r\nHost: a\r\nX-Foo\t: bar\r\n\r\n", 400);
  expectError("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400);
}

TEST(Http1RequestParserTest, NameMustBeToken) {
  expectError("GET / HTTP/1.1\r\nHost: a\r\nX(Foo): bar\r\n\r\n", 400, details::kInvalidCharacters);
  expectError("GET / HTTP/1.1\r\nHost: a\r\nX\"F: bar\r\n\r\n", 400, details::kInvalidCharacters);
  expectError("GET / HTTP/1.1\r\nHost: a\r\n: bar\r\n\r\n", 400);
  expectError("GET / HTTP/1.1\r\nHost: a\r\nno-colon\r\n\r\n", 400);
  expectOk("GET / HTTP/1.1\r\nHost: a\r\nx_under~score!: ok\r\n\r\n");
}

TEST(Http1RequestParserTest, ValueRejectsControlsButHtabAndObsText) {
  expectError(std::string("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 35), 400,
              details::kInvalidCharacters);
  expectError(
      "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01"
      "b\r\n\r\n",
      400, details::kInvalidCharacters);
  expectError("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", 400, details::kInvalidCharacters);
  expectError("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400);
  expectError("GET / HTTP/1.1\r\nHost: a\r\nX: ab\r\r\n\r\n", 400);
  expectOk("GET / HTTP/1.1\r\nHost: a\r\nX: a\tb \xc3\xa9\r\n\r\n");
}

TEST(Http1RequestParserTest, ObsFoldIsRejected) {
  expectError("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400);
  expectError("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n", 400);
  expectError("GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400);
}

TEST(Http1RequestParserTest, BareLfIsRejectedAnywhere) {
  expectError("GET / HTTP/1.1\nHost: a\r\n\r\n", 400);
  expectError("GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 400);
  expectError("GET / HTTP/1.1\r\nHost: a\r\n\n", 400);
  expectError("GET / HTTP/1.1\r\nHost: a\n\n", 400);
  expectError("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
  // Detected as soon as it arrives, not only once the head is complete.
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\nX").status, Status::kError);
}

TEST(Http1RequestParserTest, HeadTooLargeIs431) {
  Limits limits;
  limits.max_header_bytes = 100;
  const std::string big = "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(100, 'v') + "\r\n\r\n";
  const Parsed r = parse(big, limits);
  EXPECT_EQ(r.error.status, 431);
  EXPECT_EQ(r.error.detail, details::kHeadersTooLarge);
  // Without an end in sight too.
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nX: " + std::string(200, 'v'), limits).error.status, 431);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(50, 'v') + "\r\n\r\n", limits).status,
            Status::kDone);
}

TEST(Http1RequestParserTest, TooManyHeadersIs431) {
  Limits limits;
  limits.max_headers = 5;
  std::string req = "GET / HTTP/1.1\r\nHost: a\r\n";
  for (int i = 0; i < 4; ++i) req += "X-" + std::to_string(i) + ": v\r\n";
  EXPECT_EQ(parse(req + "\r\n", limits).status, Status::kDone);
  const Parsed r = parse(req + "X-9: v\r\n\r\n", limits);
  EXPECT_EQ(r.error.status, 431);
  EXPECT_EQ(r.error.detail, details::kTooManyHeaders);
}

// ---- Content-Length ----

TEST(Http1RequestParserTest, ContentLengthFraming) {
  RequestParser p;
  ASSERT_EQ(parse(p, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\n\r\n").status, Status::kDone);
  EXPECT_EQ(p.framing(), Framing::kContentLength);
  EXPECT_EQ(p.contentLength(), 42u);
  EXPECT_EQ(p.headers().getOr("content-length"), "42");
}

TEST(Http1RequestParserTest, ZeroContentLengthMeansNoBody) {
  RequestParser p;
  ASSERT_EQ(parse(p, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n").status, Status::kDone);
  EXPECT_EQ(p.framing(), Framing::kNone);
  EXPECT_EQ(p.headers().getOr("content-length"), "0");
}

TEST(Http1RequestParserTest, ContentLengthMustBeDigits) {
  for (const char* v : {"+5", "-5", "5a", "0x5", "5.0", "", "5 5", "1e3"}) {
    expectError(std::string("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ") + v + "\r\n\r\n", 400);
  }
}

TEST(Http1RequestParserTest, ContentLengthOverflowIsRejected) {
  expectError("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n", 400);
  RequestParser p;
  ASSERT_EQ(parse(p, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n").status,
            Status::kDone);
  EXPECT_EQ(p.contentLength(), 18446744073709551615u);
}

TEST(Http1RequestParserTest, IdenticalContentLengthsAreCollapsed) {
  RequestParser p;
  ASSERT_EQ(
      parse(p, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nX: y\r\ncontent-length: 5\r\n\r\n").status,
      Status::kDone);
  EXPECT_EQ(p.headers().count("content-length"), 1u);
  EXPECT_EQ(p.contentLength(), 5u);
  p.reset();
  ASSERT_EQ(parse(p, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5,5\r\n\r\n").status, Status::kDone);
  EXPECT_EQ(p.headers().getOr("content-length"), "5");
}

TEST(Http1RequestParserTest, DifferingContentLengthsAreRejected) {
  expectError("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400);
  expectError("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", 400);
  expectError("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\n", 400);
}

// ---- Transfer-Encoding ----

TEST(Http1RequestParserTest, ChunkedFraming) {
  RequestParser p;
  ASSERT_EQ(parse(p, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n").status,
            Status::kDone);
  EXPECT_EQ(p.framing(), Framing::kChunked);
}

TEST(Http1RequestParserTest, ChunkedWithContentLengthIsRejected) {
  expectError("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
              details::kChunkedContentLength);
  expectError("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400,
              details::kChunkedContentLength);
}

TEST(Http1RequestParserTest, OnlyPlainChunkedIsImplemented) {
  for (const char* te : {"gzip", "gzip, chunked", "chunked, chunked", "chunked,", ", chunked", "identity",
                         "chunked;q=1", "xchunked"}) {
    expectError(std::string("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ") + te + "\r\n\r\n", 501,
                details::kInvalidTransferEncoding);
  }
  expectError(
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501);
  expectError("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
              501);
}

TEST(Http1RequestParserTest, TransferEncodingInHttp10IsRejected) {
  expectError("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
}

// ---- Host ----

TEST(Http1RequestParserTest, HostIsRequiredInHttp11) {
  expectError("GET / HTTP/1.1\r\nX: y\r\n\r\n", 400, details::kMissingHost);
  expectError("GET / HTTP/1.1\r\nHost:\r\n\r\n", 400, details::kMissingHost);
  RequestParser p;
  ASSERT_EQ(parse(p, "GET / HTTP/1.0\r\n\r\n").status, Status::kDone);
  EXPECT_EQ(p.headers().get(":authority"), nullptr);
  p.reset();
  ASSERT_EQ(parse(p, "GET / HTTP/1.0\r\nHost: old\r\n\r\n").status, Status::kDone);
  EXPECT_EQ(p.headers().getOr(":authority"), "old");
}

TEST(Http1RequestParserTest, SeveralHostsAreRejected) {
  expectError("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400);
  expectError("GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", 400);
}

TEST(Http1RequestParserTest, AuthorityComesRightAfterPathWhereverHostWas) {
  RequestParser p;
  ASSERT_EQ(parse(p, "GET / HTTP/1.1\r\nA: 1\r\nContent-Length: 3\r\nhOsT: h\r\nB: 2\r\n\r\n").status,
            Status::kDone);
  EXPECT_EQ(entries(p.headers()), (Entries{{":method", "GET"},
                                           {":path", "/"},
                                           {":authority", "h"},
                                           {"a", "1"},
                                           {"content-length", "3"},
                                           {"b", "2"}}));
}

// ---- connection semantics ----

TEST(Http1RequestParserTest, KeepAliveDefaultsAndTokens) {
  struct Case {
    std::string req;
    bool keep_alive;
  };
  const std::vector<Case> cases = {
      {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
      {"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false},
      {"GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, CLOSE\r\n\r\n", false},
      {"GET / HTTP/1.0\r\n\r\n", false},
      {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true},
      {"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.req);
    RequestParser p;
    ASSERT_EQ(parse(p, c.req).status, Status::kDone);
    EXPECT_EQ(p.keepAlive(), c.keep_alive);
  }
}

TEST(Http1RequestParserTest, ExpectContinue) {
  RequestParser p;
  ASSERT_EQ(parse(p, "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n").status,
            Status::kDone);
  EXPECT_TRUE(p.expectContinue());
  p.reset();
  ASSERT_EQ(parse(p, "PUT / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n").status, Status::kDone);
  EXPECT_FALSE(p.expectContinue());
  p.reset();
  ASSERT_EQ(parse(p, "PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").status, Status::kDone);
  EXPECT_FALSE(p.expectContinue());
}

TEST(Http1RequestParserTest, UpgradeNeedsBothHeaders) {
  RequestParser p;
  ASSERT_EQ(
      parse(p, "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n")
          .status,
      Status::kDone);
  EXPECT_TRUE(p.isUpgrade());
  p.reset();
  ASSERT_EQ(parse(p, "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n").status, Status::kDone);
  EXPECT_FALSE(p.isUpgrade());
  p.reset();
  ASSERT_EQ(parse(p, "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n").status, Status::kDone);
  EXPECT_FALSE(p.isUpgrade());
}

// ---- incremental feeding, pipelining, reuse ----

const std::string kPost =
    "POST /submit HTTP/1.1\r\n"
    "Host: api.example.com\r\n"
    "Content-Type: application/json\r\n"
    "Content-Length: 13\r\n"
    "X-Request-Id: 0f7c\r\n"
    "\r\n"
    "{\"a\":\"hello\"}";

TEST(Http1RequestParserTest, EverySplitPointGivesTheSameResult) {
  RequestParser whole;
  const Parsed expected = parse(whole, kPost);
  ASSERT_EQ(expected.status, Status::kDone);
  for (size_t split = 0; split <= kPost.size(); ++split) {
    SCOPED_TRACE(split);
    RequestParser p;
    const Parsed first = parse(p, std::string_view(kPost).substr(0, split));
    if (split < expected.consumed) {
      EXPECT_EQ(first.status, Status::kNeedMore);
      const Parsed second = parse(p, kPost);
      ASSERT_EQ(second.status, Status::kDone);
      EXPECT_EQ(second.consumed, expected.consumed);
    } else {
      ASSERT_EQ(first.status, Status::kDone);
      EXPECT_EQ(first.consumed, expected.consumed);
    }
    EXPECT_EQ(entries(p.headers()), entries(whole.headers()));
    EXPECT_EQ(p.contentLength(), 13u);
  }
}

TEST(Http1RequestParserTest, ByteByByte) {
  RequestParser p;
  size_t consumed = 0;
  size_t n = 1;
  for (; n <= kPost.size(); ++n) {
    const Status s = p.feed(std::string_view(kPost).substr(0, n), &consumed);
    ASSERT_NE(s, Status::kError);
    if (s == Status::kDone) break;
    EXPECT_EQ(consumed, 0u);
  }
  EXPECT_EQ(n, kPost.size() - 13);
  EXPECT_EQ(consumed, n);
  EXPECT_EQ(p.headers().getOr(":authority"), "api.example.com");
}

TEST(Http1RequestParserTest, PipelinedRequestsInOneBuffer) {
  const std::string buf =
      kPost + "GET /second HTTP/1.1\r\nHost: b\r\n\r\n" + "GET /third HTTP/1.1\r\nHost: c\r\n\r\n";
  std::string_view rest = buf;
  std::vector<std::string> paths;
  RequestParser p;
  while (!rest.empty()) {
    size_t consumed = 0;
    ASSERT_EQ(p.feed(rest, &consumed), Status::kDone);
    paths.push_back(p.headers().getOr(":path").data());
    rest.remove_prefix(consumed);
    if (p.framing() == Framing::kContentLength) {
      BodyDecoder body(p.framing(), p.contentLength());
      std::string out;
      ASSERT_EQ(body.decode(rest, &consumed, out), BodyDecoder::Status::kDone);
      EXPECT_EQ(out, "{\"a\":\"hello\"}");
      rest.remove_prefix(consumed);
    }
    p.reset();
  }
  EXPECT_EQ(paths, (std::vector<std::string>{"/submit", "/second", "/third"}));
}

TEST(Http1RequestParserTest, ErrorIsSticky) {
  RequestParser p;
  EXPECT_EQ(parse(p, "GET / HTTP/1.1\nHost: a\r\n\r\n").status, Status::kError);
  EXPECT_EQ(parse(p, kGet).status, Status::kError);
  p.reset();
  EXPECT_EQ(parse(p, kGet).status, Status::kDone);
  EXPECT_EQ(p.error().status, 0);
}

TEST(Http1RequestParserTest, FeedAfterDoneRepeatsTheResult) {
  RequestParser p;
  ASSERT_EQ(parse(p, kGet).status, Status::kDone);
  const Parsed again = parse(p, kGet);
  EXPECT_EQ(again.status, Status::kDone);
  EXPECT_EQ(again.consumed, kGet.size());
  EXPECT_EQ(p.headers().size(), 5u);
}

}  // namespace
}  // namespace skiff::http1
