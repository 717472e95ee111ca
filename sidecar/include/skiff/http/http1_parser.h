// Strict HTTP/1.1 (RFC 9110/9112) parsers: request heads, response heads and message bodies.
//
// The head parsers are incremental over a growing buffer: the caller passes everything it has buffered since
// the start of the head each time (nothing is consumed before the head is complete), and the parser resumes
// scanning where it stopped. Errors carry the HTTP status to answer with and an Envoy-style response code
// detail ("http1.codec_error", ...).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "skiff/http/header_map.h"

namespace skiff::http1 {

struct Limits {
  size_t max_header_bytes = 60 * 1024;  // Header section (after the start line), CRLFs included.
  size_t max_headers = 100;
  size_t max_request_line = 16 * 1024;  // Also bounds a response's status line and a chunk-size line.
};

enum class Framing { kNone, kContentLength, kChunked, kUntilClose };  // kUntilClose only for responses.

struct ParseError {
  int status = 0;  // 400, 413, 414, 431, 501 or 505; 0 when there is no error.
  std::string_view detail;
};

// Envoy's response code details for codec errors.
namespace details {
inline constexpr std::string_view kCodecError = "http1.codec_error";
inline constexpr std::string_view kInvalidCharacters = "http1.invalid_characters";
inline constexpr std::string_view kHeadersTooLarge = "http1.headers_too_large";
inline constexpr std::string_view kTooManyHeaders = "http1.too_many_headers";
inline constexpr std::string_view kInvalidUrl = "http1.invalid_url";
inline constexpr std::string_view kInvalidTransferEncoding = "http1.invalid_transfer_encoding";
inline constexpr std::string_view kChunkedContentLength = "http1.content_length_and_chunked_not_allowed";
inline constexpr std::string_view kMissingHost = "missing_host_header";
}  // namespace details

// What the request and response heads share: the header section, its framing and connection semantics.
class HeadParserBase {
 public:
  enum class Status { kNeedMore, kDone, kError };

  const ParseError& error() const { return error_; }
  skiff::http::HeaderMap& headers() { return headers_; }
  const skiff::http::HeaderMap& headers() const { return headers_; }
  int versionMinor() const { return version_minor_; }
  bool keepAlive() const { return keep_alive_; }
  // kNone also for "Content-Length: 0" (the header stays in headers()); kUntilClose only for responses.
  Framing framing() const { return framing_; }
  uint64_t contentLength() const { return content_length_; }

 protected:
  explicit HeadParserBase(Limits limits) : limits_(limits) {}
  void resetBase();
  // Finds the end of the head in `data` (resuming the previous scan). Returns kDone with head_end_ set, or
  // kNeedMore, or kError for bare LF and size limits. `start_line_error` is the status for an over-long first
  // line (414 for requests).
  Status scanHead(std::string_view data, int start_line_error);
  // Parses the header lines of `section` (the head minus the start line) into headers_.
  bool parseHeaderSection(std::string_view section);
  Status fail(int status, std::string_view detail) {
    error_ = {status, detail};
    return Status::kError;
  }

  Limits limits_;
  skiff::http::HeaderMap headers_;
  ParseError error_;
  int version_minor_ = 1;
  bool keep_alive_ = true;
  Framing framing_ = Framing::kNone;
  uint64_t content_length_ = 0;
  // Facts gathered while parsing header lines.
  size_t host_count_ = 0;
  bool cl_added_ = false;  // The (collapsed) Content-Length entry is in headers_.
  bool has_cl_ = false;
  bool has_te_ = false;
  bool te_chunked_last_ = false;  // Last coding is chunked.
  bool te_only_chunked_ = false;  // Exactly one coding, chunked.
  bool te_bad_ = false;           // An empty coding, or a coding after chunked.
  bool conn_close_ = false;
  bool conn_keep_alive_ = false;
  bool conn_upgrade_ = false;
  bool has_upgrade_ = false;
  bool expect_continue_ = false;
  // Scan state.
  size_t scanned_ = 0;           // Bytes of the buffer already examined.
  size_t line_start_ = 0;        // Start of the line being scanned.
  size_t first_line_start_ = 0;  // After any leading empty lines.
  size_t first_line_end_ = 0;    // Offset just past the start line's CRLF; 0 while unknown.
  size_t head_end_ = 0;          // Offset just past the final CRLFCRLF; 0 while unknown.
  bool in_first_line_ = true;
  bool start_line_parsed_ = false;
  bool is_request_ = false;
  std::string_view host_value_;  // Into the fed buffer; only used during feed().
};

// Request head parser.
class RequestParser : public HeadParserBase {
 public:
  explicit RequestParser(Limits limits = {}) : HeadParserBase(limits) { is_request_ = true; }

  // Feeds the whole buffered head so far. On kDone, *consumed = bytes of the head (leading empty lines
  // included); the parsed head stays available until reset(). On kError see error().
  Status feed(std::string_view data, size_t* consumed);

  // Pseudo-headers first: ":method", ":path" (absent for CONNECT), ":authority" (from the absolute-form URL,
  // else from Host, which gets no entry of its own), then the other headers in order, names lower-cased.
  bool expectContinue() const { return expect_continue_; }
  bool isUpgrade() const { return conn_upgrade_ && has_upgrade_; }
  void reset();

 private:
  Status parseRequestLine(std::string_view line);
  Status finish();
  bool is_connect_ = false;
  bool absolute_form_ = false;
};

// Response head parser. 1xx responses return kDone with statusCode() in 100..199; the caller then
// reset()s and parses the next head.
class ResponseParser : public HeadParserBase {
 public:
  explicit ResponseParser(Limits limits = {}) : HeadParserBase(limits) {}

  Status feed(std::string_view data, size_t* consumed);
  int statusCode() const { return status_code_; }
  std::string_view reasonPhrase() const { return reason_; }
  // A response to HEAD has no body whatever its headers say.
  void setRequestMethodHead(bool head) { request_head_ = head; }
  // Keeps setRequestMethodHead().
  void reset();

 private:
  Status parseStatusLine(std::string_view line);
  Status finish();
  int status_code_ = 0;
  std::string reason_;
  bool request_head_ = false;
};

// Decodes a message body framed by Content-Length, chunked coding or connection close.
class BodyDecoder {
 public:
  enum class Status { kNeedMore, kDone, kError };

  BodyDecoder(Framing framing, uint64_t content_length, Limits limits = {});

  // Consumes from `in` (never past the end of the message, so pipelined data stays with the caller) and
  // appends the payload to `out`. Chunk extensions are skipped; trailers go to trailers().
  Status decode(std::string_view in, size_t* consumed, std::string& out);
  // The peer closed the connection: completes an until-close body, fails an unfinished framed one.
  Status finish();
  bool done() const { return state_ == State::kDone; }
  Framing framing() const { return framing_; }
  const skiff::http::HeaderMap& trailers() const { return trailers_; }
  const ParseError& error() const { return error_; }

 private:
  enum class State { kLength, kUntilClose, kChunkSize, kChunkData, kChunkDataEnd, kTrailers, kDone, kError };
  Status fail(int status, std::string_view detail);
  bool parseChunkSizeLine(std::string_view line);
  bool parseTrailerLine(std::string_view line);

  Framing framing_;
  Limits limits_;
  State state_;
  uint64_t remaining_ = 0;
  std::string pending_;  // Partial chunk-size or trailer line (or the CRLF after chunk data).
  size_t trailer_bytes_ = 0;
  skiff::http::HeaderMap trailers_;
  ParseError error_;
};

namespace detail {
// RFC 9110 token characters (field names, methods).
bool isTokenChar(unsigned char c);
// True when `v` holds a CTL other than HTAB, or DEL (not allowed in field values).
bool hasInvalidValueChar(std::string_view v);
// Splits one header line (without its CRLF) into a name and an OWS-trimmed value; false (with *detail set) on
// an empty name, non-token name characters (whitespace before the colon included), a missing colon, or CTLs
// other than HTAB in the value. Lines starting with SP/HTAB (obs-fold) fail too.
bool splitHeaderLine(std::string_view line, std::string_view* name, std::string_view* value,
                     std::string_view* detail);
}  // namespace detail

}  // namespace skiff::http1
