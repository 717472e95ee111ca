// Fuzzes the response head parser (1xx, HEAD, bodiless codes, until-close) and the body decoder.
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
  const bool head_request = (body_sel & 0x80) != 0;
  std::string_view in(reinterpret_cast<const char*>(data + 2), size - 2);
  Limits limits;
  limits.max_header_bytes = 4096;
  limits.max_headers = 32;

  // Like a connection would: informational heads first, then the final one.
  for (int round = 0; round < 4; ++round) {
    ResponseParser whole(limits);
    whole.setRequestMethodHead(head_request);
    size_t c1 = 0;
    const auto s1 = whole.feed(in, &c1);

    ResponseParser inc(limits);
    inc.setRequestMethodHead(head_request);
    size_t c2 = 0;
    auto s2 = inc.feed(in.substr(0, fuzz::splitPoint(head_sel, in.size())), &c2);
    if (s2 == ResponseParser::Status::kNeedMore) s2 = inc.feed(in, &c2);
    check(s1 == s2, "head status differs between whole and split input");
    if (s1 != ResponseParser::Status::kDone) return 0;
    check(c1 == c2 && c1 <= in.size(), "head consumed differs");
    check(whole.headers().entries() == inc.headers().entries(), "headers differ");
    check(whole.statusCode() >= 100 && whole.statusCode() <= 999, "status code range");
    check(whole.headers().entries()[0].first == ":status", ":status not first");
    check(whole.framing() != Framing::kUntilClose || !whole.keepAlive(), "until-close with keep-alive");

    std::string written;
    writeResponseHead(whole.headers(), written, whole.versionMinor(), whole.reasonPhrase());
    ResponseParser again(limits);
    again.setRequestMethodHead(head_request);
    size_t c3 = 0;
    check(again.feed(written, &c3) == ResponseParser::Status::kDone, "written head does not parse");
    check(again.headers().entries() == whole.headers().entries(), "round trip changed the headers");
    check(again.framing() == whole.framing(), "round trip changed the framing");

    in.remove_prefix(c1);
    if (whole.statusCode() >= 200) {
      fuzz::checkBody(whole.framing(), whole.contentLength(), in, fuzz::splitPoint(body_sel, in.size()));
      return 0;
    }
  }
  return 0;
}
