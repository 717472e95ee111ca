// Fuzzes the request head parser and body decoder: whole vs split input must agree, and a parsed head must
// survive a write/re-parse round trip unchanged.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_common.h"
#include "skiff/http/http1_writer.h"

using namespace skiff::http1;
using skiff::http1::fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t head_sel = data[0];
  const uint8_t body_sel = data[1];
  const std::string_view in(reinterpret_cast<const char*>(data + 2), size - 2);
  Limits limits;
  limits.max_header_bytes = 4096;  // Small limits reach the limit paths.
  limits.max_headers = 32;
  limits.max_request_line = 1024;

  RequestParser whole(limits);
  size_t c1 = 0;
  const auto s1 = whole.feed(in, &c1);

  RequestParser inc(limits);
  const size_t split = fuzz::splitPoint(head_sel, in.size());
  size_t c2 = 0;
  auto s2 = inc.feed(in.substr(0, split), &c2);
  if (s2 == RequestParser::Status::kNeedMore) s2 = inc.feed(in, &c2);

  check(s1 == s2, "head status differs between whole and split input");
  if (s1 == RequestParser::Status::kError) {
    const int st = whole.error().status;
    check(st == 400 || st == 414 || st == 431 || st == 501 || st == 505, "unexpected error status");
    return 0;
  }
  if (s1 != RequestParser::Status::kDone) return 0;
  check(c1 == c2 && c1 <= in.size(), "head consumed differs");
  check(whole.headers().entries() == inc.headers().entries(), "headers differ");
  check(whole.framing() == inc.framing() && whole.contentLength() == inc.contentLength(), "framing differs");
  check(whole.keepAlive() == inc.keepAlive(), "keep-alive differs");
  check(whole.headers().size() > 0 && whole.headers().entries()[0].first == ":method", ":method not first");

  // Round trip: what we write, we parse back to the same head.
  if (whole.headers().get(":authority") != nullptr) {
    std::string written;
    writeRequestHead(whole.headers(), written);
    RequestParser again;
    size_t c3 = 0;
    check(again.feed(written, &c3) == RequestParser::Status::kDone, "written head does not parse");
    check(c3 == written.size(), "written head size");
    check(again.headers().entries() == whole.headers().entries(), "round trip changed the headers");
    check(again.framing() == whole.framing(), "round trip changed the framing");
  }

  const std::string_view body = in.substr(c1);
  fuzz::checkBody(whole.framing(), whole.contentLength(), body, fuzz::splitPoint(body_sel, body.size()));
  return 0;
}
