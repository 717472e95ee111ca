// HttpInspector: a request-line recogniser (RFC 9112 §3) and the HTTP/2 client preface (RFC 9113 §3.4).
#include "server/listener_filters/http_inspector.h"

#include <cctype>

namespace skiff::server {

namespace {

constexpr std::string_view kH2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

bool isTchar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

}  // namespace

HttpDetection detectHttp(std::string_view data, bool end_stream) {
  const size_t n = std::min(data.size(), kH2Preface.size());
  if (data.substr(0, n) == kH2Preface.substr(0, n)) {
    if (data.size() >= kH2Preface.size()) return HttpDetection::kH2c;
    return end_stream ? HttpDetection::kNotHttp : HttpDetection::kNeedMore;
  }
  enum { kMethod, kTarget, kVersion, kLf } state = kMethod;
  size_t token = 0;  // characters in the current part
  std::string_view version;
  for (size_t i = 0; i < data.size() && i < kMaxHttpInspectBytes; ++i) {
    const char c = data[i];
    switch (state) {
      case kMethod:
        if (c == ' ' && token > 0) {
          state = kTarget;
          token = 0;
        } else if (isTchar(c)) {
          ++token;
        } else {
          return HttpDetection::kNotHttp;
        }
        break;
      case kTarget:
        if (c == ' ' && token > 0) {
          state = kVersion;
          token = 0;
        } else if (static_cast<unsigned char>(c) > 0x20 && c != 0x7f) {
          ++token;
        } else {
          return HttpDetection::kNotHttp;
        }
        break;
      case kVersion: {
        if (c == '\r' || c == '\n') {
          version = data.substr(i - token, token);
          if (version != "HTTP/1.0" && version != "HTTP/1.1") return HttpDetection::kNotHttp;
          if (c == '\n') return version == "HTTP/1.0" ? HttpDetection::kHttp10 : HttpDetection::kHttp11;
          state = kLf;
          break;
        }
        constexpr std::string_view kPrefix = "HTTP/1.";
        if (token < kPrefix.size() ? c != kPrefix[token]
                                   : (token > kPrefix.size() || !std::isdigit(static_cast<unsigned char>(c))))
          return HttpDetection::kNotHttp;
        ++token;
        break;
      }
      case kLf:
        if (c != '\n') return HttpDetection::kNotHttp;
        return version == "HTTP/1.0" ? HttpDetection::kHttp10 : HttpDetection::kHttp11;
    }
  }
  if (data.size() >= kMaxHttpInspectBytes || end_stream) return HttpDetection::kNotHttp;
  return HttpDetection::kNeedMore;
}

HttpInspector::HttpInspector(stats::Store& store)
    : http10_found_(store.counter("http_inspector.http10_found")),
      http11_found_(store.counter("http_inspector.http11_found")),
      http2_found_(store.counter("http_inspector.http2_found")),
      http_not_found_(store.counter("http_inspector.http_not_found")) {}

ListenerFilterStatus HttpInspector::onAccept(int, network::ConnectionInfo& info) const {
  // As Envoy: nothing to learn from plaintext sniffing once another transport was detected.
  if (info.transport_protocol != "raw_buffer") return ListenerFilterStatus::kContinue;
  return ListenerFilterStatus::kNeedData;
}

ListenerFilterStatus HttpInspector::onData(std::string_view data, bool end_stream,
                                           network::ConnectionInfo& info) const {
  switch (detectHttp(data, end_stream)) {
    case HttpDetection::kNeedMore:
      return ListenerFilterStatus::kNeedData;
    case HttpDetection::kHttp10:
      http10_found_.inc();
      info.application_protocols = {"http/1.0"};
      break;
    case HttpDetection::kHttp11:
      http11_found_.inc();
      info.application_protocols = {"http/1.1"};
      break;
    case HttpDetection::kH2c:
      http2_found_.inc();
      info.application_protocols = {"h2c"};
      break;
    case HttpDetection::kNotHttp:
      http_not_found_.inc();
      break;
  }
  return ListenerFilterStatus::kContinue;
}

}  // namespace skiff::server
