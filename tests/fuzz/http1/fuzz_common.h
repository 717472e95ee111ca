// Helpers shared by the HTTP/1 fuzz targets: input splitting and invariant checks that abort on violation.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "skiff/http/http1_parser.h"

namespace skiff::http1::fuzz {

inline void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

// A split point in [0, size] chosen by one input byte.
inline size_t splitPoint(uint8_t selector, size_t size) {
  return size == 0 ? 0 : selector % (size + 1);
}

// Decodes `in` as one body in two pieces split at `split`; returns the final status and fills out/consumed.
inline BodyDecoder::Status decodeSplit(BodyDecoder& d, std::string_view in, size_t split, std::string& out,
                                       size_t* consumed) {
  size_t c = 0;
  BodyDecoder::Status s = d.decode(in.substr(0, split), &c, out);
  check(c <= split, "body consumed more than given");
  *consumed = c;
  if (s != BodyDecoder::Status::kNeedMore) return s;
  check(c == split, "body kNeedMore left input unconsumed");
  s = d.decode(in.substr(split), &c, out);
  check(c <= in.size() - split, "body consumed more than given");
  *consumed += c;
  return s;
}

// Whole-input decode and split decode must agree.
inline void checkBody(Framing framing, uint64_t content_length, std::string_view in, size_t split) {
  BodyDecoder whole(framing, content_length);
  std::string out_whole;
  size_t consumed_whole = 0;
  const auto s1 = whole.decode(in, &consumed_whole, out_whole);
  BodyDecoder parts(framing, content_length);
  std::string out_parts;
  size_t consumed_parts = 0;
  const auto s2 = decodeSplit(parts, in, split, out_parts, &consumed_parts);
  check(s1 == s2, "body status differs between whole and split input");
  if (s1 == BodyDecoder::Status::kDone) {
    check(consumed_whole == consumed_parts, "body consumed differs");
    check(out_whole == out_parts, "body payload differs");
    check(whole.trailers().entries() == parts.trailers().entries(), "trailers differ");
  }
  if (s1 == BodyDecoder::Status::kNeedMore) {
    check(out_whole == out_parts, "partial payload differs");
    whole.finish();
  }
}

}  // namespace skiff::http1::fuzz
