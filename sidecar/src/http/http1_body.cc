// HTTP/1.1 message body decoding: Content-Length, chunked (RFC 9112 section 7.1) and until-close.
#include <algorithm>
#include <cstring>
#include <limits>

#include "skiff/http/http1_parser.h"

namespace skiff::http1 {

namespace {

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

BodyDecoder::BodyDecoder(Framing framing, uint64_t content_length, Limits limits)
    : framing_(framing), limits_(limits) {
  switch (framing) {
    case Framing::kNone:
      state_ = State::kDone;
      break;
    case Framing::kContentLength:
      remaining_ = content_length;
      state_ = content_length == 0 ? State::kDone : State::kLength;
      break;
    case Framing::kChunked:
      state_ = State::kChunkSize;
      break;
    case Framing::kUntilClose:
      state_ = State::kUntilClose;
      break;
  }
}

BodyDecoder::Status BodyDecoder::fail(int status, std::string_view detail) {
  state_ = State::kError;
  error_ = {status, detail};
  return Status::kError;
}

BodyDecoder::Status BodyDecoder::finish() {
  if (state_ == State::kUntilClose) state_ = State::kDone;
  if (state_ == State::kDone) return Status::kDone;
  if (state_ == State::kError) return Status::kError;
  return fail(400, details::kCodecError);  // Connection closed mid-body.
}

bool BodyDecoder::parseChunkSizeLine(std::string_view line) {
  uint64_t size = 0;
  size_t i = 0;
  for (; i < line.size(); ++i) {
    const int d = hexValue(line[i]);
    if (d < 0) break;
    if (size > (std::numeric_limits<uint64_t>::max() >> 4)) return false;  // Overflow.
    size = (size << 4) | static_cast<uint64_t>(d);
  }
  if (i == 0) return false;
  // chunk-ext: BWS ";" ... is skipped; anything else after the size is junk.
  std::string_view ext = line.substr(i);
  while (!ext.empty() && (ext.front() == ' ' || ext.front() == '\t')) ext.remove_prefix(1);
  if (!ext.empty()) {
    if (ext.front() != ';') return false;
    for (char ch : ext) {
      const auto c = static_cast<unsigned char>(ch);
      if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
    }
  } else if (i != line.size()) {
    return false;  // Trailing whitespace with no extension.
  }
  remaining_ = size;
  state_ = size == 0 ? State::kTrailers : State::kChunkData;
  return true;
}

bool BodyDecoder::parseTrailerLine(std::string_view line) {
  std::string_view name, value, detail;
  if (!detail::splitHeaderLine(line, &name, &value, &detail)) {
    fail(400, detail);
    return false;
  }
  trailer_bytes_ += line.size() + 2;
  if (trailers_.size() + 1 > limits_.max_headers) {
    fail(431, details::kTooManyHeaders);
    return false;
  }
  if (trailer_bytes_ > limits_.max_header_bytes) {
    fail(431, details::kHeadersTooLarge);
    return false;
  }
  trailers_.add(name, value);
  return true;
}

BodyDecoder::Status BodyDecoder::decode(std::string_view in, size_t* consumed, std::string& out) {
  size_t pos = 0;
  *consumed = 0;
  while (true) {
    switch (state_) {
      case State::kDone:
        *consumed = pos;
        return Status::kDone;
      case State::kError:
        *consumed = pos;
        return Status::kError;
      case State::kUntilClose:
        out.append(in.substr(pos));
        *consumed = in.size();
        return Status::kNeedMore;
      case State::kLength:
      case State::kChunkData: {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, in.size() - pos));
        out.append(in.substr(pos, n));
        pos += n;
        remaining_ -= n;
        if (remaining_ != 0) {
          *consumed = pos;
          return Status::kNeedMore;
        }
        state_ = state_ == State::kLength ? State::kDone : State::kChunkDataEnd;
        break;
      }
      case State::kChunkSize:
      case State::kChunkDataEnd:
      case State::kTrailers: {
        // Line-oriented states; a line split across calls is kept in pending_.
        const size_t max_line = state_ == State::kChunkDataEnd ? 2
                                : state_ == State::kChunkSize  ? limits_.max_request_line
                                                               : limits_.max_header_bytes;
        const void* lf = std::memchr(in.data() + pos, '\n', in.size() - pos);
        if (lf == nullptr) {
          if (pos == in.size()) {
            *consumed = pos;
            return Status::kNeedMore;
          }
          // After chunk data only a lone CR may wait for its LF.
          const bool bad_data_end =
              state_ == State::kChunkDataEnd && (!pending_.empty() || in.size() - pos > 1 || in[pos] != '\r');
          if (bad_data_end) return fail(400, details::kCodecError);
          if (pending_.size() + (in.size() - pos) > max_line) {
            return state_ == State::kTrailers ? fail(431, details::kHeadersTooLarge)
                                              : fail(400, details::kCodecError);
          }
          pending_.append(in.substr(pos));
          *consumed = in.size();
          return Status::kNeedMore;
        }
        const size_t end = static_cast<const char*>(lf) - in.data();
        std::string_view line;
        if (pending_.empty()) {
          line = in.substr(pos, end - pos);
        } else {
          pending_.append(in.substr(pos, end - pos));
          line = pending_;
        }
        pos = end + 1;
        if (line.size() + 1 > max_line || line.empty() || line.back() != '\r') {
          // Bare LF, or an over-long line.
          return state_ == State::kTrailers && !line.empty() && line.back() == '\r'
                     ? fail(431, details::kHeadersTooLarge)
                     : fail(400, details::kCodecError);
        }
        line.remove_suffix(1);
        bool ok = true;
        if (state_ == State::kChunkSize) {
          ok = parseChunkSizeLine(line);
        } else if (state_ == State::kChunkDataEnd) {
          ok = line.empty();  // CRLF must follow the chunk data.
          state_ = State::kChunkSize;
        } else if (line.empty()) {
          state_ = State::kDone;
        } else if (!parseTrailerLine(line)) {
          pending_.clear();
          *consumed = pos;
          return Status::kError;
        }
        pending_.clear();
        if (!ok) return fail(400, details::kCodecError);
        break;
      }
    }
  }
}

}  // namespace skiff::http1
