// Serialization: start lines, Host placement, pseudo-header skipping, injection safety, chunks, round trips.
#include <gtest/gtest.h>

#include <string>

#include "skiff/http/http1_parser.h"
#include "skiff/http/http1_writer.h"

namespace skiff::http1 {
namespace {

using http::HeaderMap;

TEST(Http1WriterTest, RequestHead) {
  HeaderMap h;
  h.add(":method", "POST");
  h.add(":path", "/api?x=1");
  h.add(":authority", "svc.local:8080");
  h.add(":scheme", "http");
  h.add("host", "stale");
  h.add("content-length", "3");
  h.add("x-b", "2");
  std::string out = "prefix|";
  writeRequestHead(h, out);
  EXPECT_EQ(out,
            "prefix|POST /api?x=1 HTTP/1.1\r\nhost: svc.local:8080\r\ncontent-length: 3\r\nx-b: 2\r\n\r\n");
}

TEST(Http1WriterTest, RequestHeadKeepsHostWithoutAuthority) {
  HeaderMap h;
  h.add(":method", "GET");
  h.add(":path", "/");
  h.add("Host", "h");
  std::string out;
  writeRequestHead(h, out);
  EXPECT_EQ(out, "GET / HTTP/1.1\r\nhost: h\r\n\r\n");
}

TEST(Http1WriterTest, ConnectUsesAuthorityAsTarget) {
  HeaderMap h;
  h.add(":method", "CONNECT");
  h.add(":authority", "db:5432");
  std::string out;
  writeRequestHead(h, out);
  EXPECT_EQ(out, "CONNECT db:5432 HTTP/1.1\r\nhost: db:5432\r\n\r\n");
}

TEST(Http1WriterTest, UnsafeFieldsAreDropped) {
  HeaderMap h;
  h.add(":status", "200");
  h.add("x-evil", "a\r\nset-cookie: pwned");
  h.add("x-nul", std::string("a\0b", 3));
  h.add("x-ok", "fine");
  std::string out;
  writeResponseHead(h, out, 1, "OK\r\nX: y");
  EXPECT_EQ(out, "HTTP/1.1 200 OK\r\nx-ok: fine\r\n\r\n");
}

// The word-at-a-time scan: a CR, LF or NUL at any position of names and values of every length (short
// strings, whole words, overlapping tails) drops the field; TAB and bytes >= 0x80 do not.
TEST(Http1WriterTest, UnsafeByteAtAnyPositionIsFound) {
  for (size_t len = 1; len <= 40; ++len) {
    for (size_t pos = 0; pos < len; ++pos) {
      for (char bad : {'\r', '\n', '\0'}) {
        std::string value(len, 'v');
        value[pos] = bad;
        std::string name(len, 'n');
        name[pos] = bad;
        HeaderMap h;
        h.add(":status", "200");
        h.add("x-v", value);
        h.add(name, "ok");
        h.add("x-ok", "1");
        std::string out;
        writeResponseHead(h, out);
        EXPECT_EQ(out, "HTTP/1.1 200 OK\r\nx-ok: 1\r\n\r\n") << len << " " << pos << " " << int(bad);
      }
    }
    std::string fine(len, 'a');
    fine[len / 2] = '\t';
    fine[0] = static_cast<char>(0xe9);
    HeaderMap h;
    h.add(":status", "200");
    h.add("x-fine", fine);
    std::string out = "pre|";
    writeResponseHead(h, out);
    EXPECT_EQ(out, "pre|HTTP/1.1 200 OK\r\nx-fine: " + fine + "\r\n\r\n") << len;
  }
}

TEST(Http1WriterTest, ManyFieldsKeepTheirOrder) {
  HeaderMap h;
  h.add(":status", "200");
  std::string expected = "HTTP/1.1 200 OK\r\n";
  for (int i = 0; i < 70; ++i) {  // past the 64-field fast path
    h.add("x-" + std::to_string(i), i % 7 == 3 ? "bad\r\n" : std::to_string(i));
    if (i % 7 != 3) expected += "x-" + std::to_string(i) + ": " + std::to_string(i) + "\r\n";
  }
  std::string out;
  writeResponseHead(h, out);
  EXPECT_EQ(out, expected + "\r\n");
  HeaderMap few;
  few.add(":status", "204");
  for (int i = 0; i < 64; ++i) few.add("y-" + std::to_string(i), "v");
  std::string out2;
  writeResponseHead(few, out2);
  EXPECT_EQ(out2.size(), std::string("HTTP/1.1 204 No Content\r\n\r\n").size() + 64 * 8 + (64 - 10));
}

TEST(Http1WriterTest, ResponseHeadReasonPhrases) {
  HeaderMap h;
  h.add(":status", "503");
  h.add("content-length", "0");
  std::string out;
  writeResponseHead(h, out);
  EXPECT_EQ(out, "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
  out.clear();
  writeResponseHead(h, out, 0, "Busy");
  EXPECT_EQ(out, "HTTP/1.0 503 Busy\r\ncontent-length: 0\r\n\r\n");
  h.set(":status", "299");
  out.clear();
  writeResponseHead(h, out);
  EXPECT_EQ(out, "HTTP/1.1 299 \r\ncontent-length: 0\r\n\r\n");
  h.set(":status", "abc");
  out.clear();
  writeResponseHead(h, out);
  EXPECT_EQ(out.substr(0, 35), "HTTP/1.1 500 Internal Server Error\r");
}

TEST(Http1WriterTest, ReasonPhraseTable) {
  EXPECT_EQ(reasonPhrase(200), "OK");
  EXPECT_EQ(reasonPhrase(404), "Not Found");
  EXPECT_EQ(reasonPhrase(431), "Request Header Fields Too Large");
  EXPECT_EQ(reasonPhrase(999), "");
}

TEST(Http1WriterTest, Chunks) {
  std::string out;
  writeChunk("", out);
  EXPECT_EQ(out, "");
  writeChunk("hello", out);
  writeChunk(std::string(300, 'x'), out);
  EXPECT_EQ(out.substr(0, 14), "5\r\nhello\r\n12c\r");
  HeaderMap trailers;
  trailers.add("grpc-status", "0");
  writeLastChunk(&trailers, out);
  writeLastChunk(nullptr, out);
  EXPECT_EQ(out.substr(out.size() - 26), "0\r\ngrpc-status: 0\r\n\r\n0\r\n\r\n");

  BodyDecoder d(Framing::kChunked, 0);
  std::string body;
  size_t consumed = 0;
  ASSERT_EQ(d.decode(out, &consumed, body), BodyDecoder::Status::kDone);
  EXPECT_EQ(body, "hello" + std::string(300, 'x'));
  EXPECT_EQ(d.trailers().getOr("grpc-status"), "0");
  EXPECT_EQ(consumed, out.size() - 5);  // The second last-chunk is left over.
}

TEST(Http1WriterTest, ParsedRequestRoundTrips) {
  const std::string in =
      "PUT /a%20b?c HTTP/1.1\r\nX-First: 1\r\nHost: example.org\r\nContent-Length: 4\r\nAccept: a, b\r\n\r\n";
  RequestParser p;
  size_t consumed = 0;
  ASSERT_EQ(p.feed(in, &consumed), RequestParser::Status::kDone);
  std::string out;
  writeRequestHead(p.headers(), out);
  EXPECT_EQ(out,
            "PUT /a%20b?c HTTP/1.1\r\nhost: example.org\r\nx-first: 1\r\ncontent-length: 4\r\naccept: a, "
            "b\r\n\r\n");
  RequestParser again;
  ASSERT_EQ(again.feed(out, &consumed), RequestParser::Status::kDone);
  EXPECT_EQ(again.headers().entries(), p.headers().entries());
}

TEST(Http1WriterTest, ParsedResponseRoundTrips) {
  const std::string in = "HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n";
  ResponseParser p;
  size_t consumed = 0;
  ASSERT_EQ(p.feed(in, &consumed), ResponseParser::Status::kDone);
  std::string out;
  writeResponseHead(p.headers(), out, p.versionMinor(), p.reasonPhrase());
  EXPECT_EQ(out, "HTTP/1.1 302 Found\r\nlocation: /x\r\ncontent-length: 0\r\n\r\n");
}

}  // namespace
}  // namespace skiff::http1
