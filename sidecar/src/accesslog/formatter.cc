// Envoy access-log format strings: parsing into segments once, and formatting a StreamInfo per request.
#include "skiff/accesslog/formatter.h"

#include <unistd.h>

#include <charconv>

#include "accesslog/time_format.h"
#include "skiff/accesslog/access_log.h"
#include "skiff/common/json.h"
#include "skiff/network/connection_info.h"
#include "skiff/tls/transport.h"

namespace skiff::accesslog {
namespace {

enum class Op : uint8_t {
  kLiteral,
  kAbsent,  // an operator we accept but do not track (always "-")
  kStartTime,
  kReq,
  kResp,
  kTrailer,
  kResponseCode,
  kResponseCodeDetails,
  kConnectionTerminationDetails,
  kResponseFlags,
  kResponseFlagsLong,
  kDuration,
  kRequestDuration,
  kResponseDuration,
  kResponseTxDuration,
  kBytesReceived,
  kBytesSent,
  kProtocol,
  kUpstreamHost,
  kUpstreamCluster,
  kUpstreamLocalAddress,
  kUpstreamTransportFailureReason,
  kDownstreamRemoteAddress,
  kDownstreamRemoteAddressWithoutPort,
  kDownstreamDirectRemoteAddress,
  kDownstreamDirectRemoteAddressWithoutPort,
  kDownstreamLocalAddress,
  kDownstreamLocalAddressWithoutPort,
  kRequestedServerName,
  kRouteName,
  kUpstreamRequestAttemptCount,
  kConnectionId,
  kHostname,
  // Downstream TLS (from the connection's TlsConnectionInfo; "-" on plaintext connections).
  kDownstreamPeerUriSan,
  kDownstreamLocalUriSan,
  kDownstreamPeerDnsSan,
  kDownstreamLocalDnsSan,
  kDownstreamPeerSubject,
  kDownstreamLocalSubject,
  kDownstreamPeerIssuer,
  kDownstreamPeerSerial,
  kDownstreamPeerFingerprint256,
  kDownstreamTlsVersion,
  kDownstreamTlsCipher,
};

struct OpName {
  std::string_view name;
  Op op;
};

constexpr OpName kOps[] = {
    {"START_TIME", Op::kStartTime},
    {"REQ", Op::kReq},
    {"RESP", Op::kResp},
    {"TRAILER", Op::kTrailer},
    {"RESPONSE_CODE", Op::kResponseCode},
    {"RESPONSE_CODE_DETAILS", Op::kResponseCodeDetails},
    {"CONNECTION_TERMINATION_DETAILS", Op::kConnectionTerminationDetails},
    {"RESPONSE_FLAGS", Op::kResponseFlags},
    {"RESPONSE_FLAGS_LONG", Op::kResponseFlagsLong},
    {"DURATION", Op::kDuration},
    {"REQUEST_DURATION", Op::kRequestDuration},
    {"RESPONSE_DURATION", Op::kResponseDuration},
    {"RESPONSE_TX_DURATION", Op::kResponseTxDuration},
    {"BYTES_RECEIVED", Op::kBytesReceived},
    {"BYTES_SENT", Op::kBytesSent},
    {"PROTOCOL", Op::kProtocol},
    {"UPSTREAM_HOST", Op::kUpstreamHost},
    {"UPSTREAM_CLUSTER", Op::kUpstreamCluster},
    {"UPSTREAM_CLUSTER_RAW", Op::kUpstreamCluster},  // we have no alt_stat_name: both are the real name
    {"UPSTREAM_LOCAL_ADDRESS", Op::kUpstreamLocalAddress},
    {"UPSTREAM_TRANSPORT_FAILURE_REASON", Op::kUpstreamTransportFailureReason},
    {"DOWNSTREAM_REMOTE_ADDRESS", Op::kDownstreamRemoteAddress},
    {"DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", Op::kDownstreamRemoteAddressWithoutPort},
    {"DOWNSTREAM_DIRECT_REMOTE_ADDRESS", Op::kDownstreamDirectRemoteAddress},
    {"DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT", Op::kDownstreamDirectRemoteAddressWithoutPort},
    {"DOWNSTREAM_LOCAL_ADDRESS", Op::kDownstreamLocalAddress},
    {"DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT", Op::kDownstreamLocalAddressWithoutPort},
    {"REQUESTED_SERVER_NAME", Op::kRequestedServerName},
    {"ROUTE_NAME", Op::kRouteName},
    {"UPSTREAM_REQUEST_ATTEMPT_COUNT", Op::kUpstreamRequestAttemptCount},
    {"CONNECTION_ID", Op::kConnectionId},
    {"HOSTNAME", Op::kHostname},
    // Known Envoy operators whose data StreamInfo does not carry yet: accepted so configs load, always "-".
    {"VIRTUAL_CLUSTER_NAME", Op::kAbsent},
    {"DYNAMIC_METADATA", Op::kAbsent},
    {"FILTER_STATE", Op::kAbsent},
    {"DOWNSTREAM_PEER_URI_SAN", Op::kDownstreamPeerUriSan},
    {"DOWNSTREAM_LOCAL_URI_SAN", Op::kDownstreamLocalUriSan},
    {"DOWNSTREAM_PEER_DNS_SAN", Op::kDownstreamPeerDnsSan},
    {"DOWNSTREAM_LOCAL_DNS_SAN", Op::kDownstreamLocalDnsSan},
    {"DOWNSTREAM_PEER_SUBJECT", Op::kDownstreamPeerSubject},
    {"DOWNSTREAM_LOCAL_SUBJECT", Op::kDownstreamLocalSubject},
    {"DOWNSTREAM_PEER_ISSUER", Op::kDownstreamPeerIssuer},
    {"DOWNSTREAM_PEER_SERIAL", Op::kDownstreamPeerSerial},
    {"DOWNSTREAM_PEER_FINGERPRINT_256", Op::kDownstreamPeerFingerprint256},
    {"DOWNSTREAM_TLS_VERSION", Op::kDownstreamTlsVersion},
    {"DOWNSTREAM_TLS_CIPHER", Op::kDownstreamTlsCipher},
};

bool takesArgs(Op op) {
  return op == Op::kStartTime || op == Op::kReq || op == Op::kResp || op == Op::kTrailer;
}
bool needsArgs(Op op) {
  return op == Op::kReq || op == Op::kResp || op == Op::kTrailer;
}

struct Segment {
  Op op = Op::kLiteral;
  std::string text;        // literal text, or the hostname
  std::string header;      // REQ/RESP/TRAILER: main name (lower-case)
  std::string alt_header;  // the name after '?', may be empty
  size_t max_len = std::string_view::npos;
  TimeFormat time;  // START_TIME
};

struct JsonField {
  std::string key;
  std::vector<Segment> segments;
};

enum class Kind { kAbsent, kString, kNumber };

void appendNumber(uint64_t v, std::string& out) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  out.append(buf, r.ptr);
}

Kind appendString(std::string_view v, size_t max_len, std::string& out) {
  if (v.empty()) return Kind::kAbsent;
  out.append(v.substr(0, max_len));
  return Kind::kString;
}

std::string joined(const std::vector<std::string>& values) {
  std::string out;
  for (const auto& v : values) {
    if (!out.empty()) out += ',';
    out += v;
  }
  return out;
}

// The downstream connection's TLS facts, Envoy's formats (SAN lists comma-joined); "-" without TLS.
Kind appendTlsField(Op op, const http::StreamInfo& info, size_t max_len, std::string& out) {
  const tls::TlsConnectionInfo* t = info.connection ? info.connection->tls.get() : nullptr;
  if (t == nullptr) return Kind::kAbsent;
  switch (op) {
    case Op::kDownstreamPeerUriSan:
      return appendString(joined(t->uri_san_peer), max_len, out);
    case Op::kDownstreamLocalUriSan:
      return appendString(joined(t->uri_san_local), max_len, out);
    case Op::kDownstreamPeerDnsSan:
      return appendString(joined(t->dns_san_peer), max_len, out);
    case Op::kDownstreamLocalDnsSan:
      return appendString(joined(t->dns_san_local), max_len, out);
    case Op::kDownstreamPeerSubject:
      return appendString(t->subject_peer, max_len, out);
    case Op::kDownstreamLocalSubject:
      return appendString(t->subject_local, max_len, out);
    case Op::kDownstreamPeerIssuer:
      return appendString(t->issuer_peer, max_len, out);
    case Op::kDownstreamPeerSerial:
      return appendString(t->serial_peer, max_len, out);
    case Op::kDownstreamPeerFingerprint256:
      return appendString(t->sha256_peer_digest, max_len, out);
    case Op::kDownstreamTlsVersion:
      return appendString(t->tls_version, max_len, out);
    case Op::kDownstreamTlsCipher:
      return appendString(t->cipher, max_len, out);
    default:
      return Kind::kAbsent;
  }
}

// "1.2.3.4:80" → "1.2.3.4", "[::1]:80" → "::1"; anything without a port is returned unchanged.
std::string_view withoutPort(std::string_view addr) {
  if (!addr.empty() && addr.front() == '[') {
    size_t close = addr.find(']');
    return close == std::string_view::npos ? addr : addr.substr(1, close - 1);
  }
  size_t colon = addr.rfind(':');
  if (colon == std::string_view::npos || addr.find(':') != colon) return addr;  // no port, or bare IPv6
  return addr.substr(0, colon);
}

Kind appendMs(std::optional<http::StreamInfo::Clock::duration> d, std::string& out) {
  if (!d) return Kind::kAbsent;
  appendNumber(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(*d).count()), out);
  return Kind::kNumber;
}

Kind appendHeader(const http::HeaderMap* map, const Segment& s, std::string& out) {
  if (map == nullptr) return Kind::kAbsent;
  const std::string* v = map->get(s.header);
  if (v == nullptr && !s.alt_header.empty()) v = map->get(s.alt_header);
  if (v == nullptr) return Kind::kAbsent;
  out.append(std::string_view(*v).substr(0, s.max_len));
  return Kind::kString;
}

// Appends the value of one segment; returns what kind of value it was (nothing is appended when absent).
Kind appendValue(const Segment& s, const http::StreamInfo& info, std::string& out) {
  using O = Op;
  switch (s.op) {
    case O::kLiteral:
      out += s.text;
      return Kind::kString;
    case O::kAbsent:
      return Kind::kAbsent;
    case O::kStartTime:
      s.time.format(info.start_time, out);
      return Kind::kString;
    case O::kReq:
      return appendHeader(info.request_headers, s, out);
    case O::kResp:
      return appendHeader(info.response_headers, s, out);
    case O::kTrailer:
      return appendHeader(info.response_trailers, s, out);
    case O::kResponseCode:
      appendNumber(info.response_code, out);
      return Kind::kNumber;
    case O::kResponseCodeDetails:
      return appendString(info.response_code_details, s.max_len, out);
    case O::kConnectionTerminationDetails:
      return appendString(info.connection_termination_details, s.max_len, out);
    case O::kResponseFlags:
      out += http::responseFlagsShort(info.response_flags);
      return Kind::kString;
    case O::kResponseFlagsLong:
      out += http::responseFlagsLong(info.response_flags);
      return Kind::kString;
    case O::kDuration:
      appendNumber(durationMs(info), out);
      return Kind::kNumber;
    case O::kRequestDuration:
      return appendMs(info.last_downstream_rx, out);
    case O::kResponseDuration:
      return appendMs(info.first_upstream_rx, out);
    case O::kResponseTxDuration:
      if (!info.last_downstream_tx || !info.first_upstream_rx) return Kind::kAbsent;
      return appendMs(*info.last_downstream_tx - *info.first_upstream_rx, out);
    case O::kBytesReceived:
      appendNumber(info.bytes_received, out);
      return Kind::kNumber;
    case O::kBytesSent:
      appendNumber(info.bytes_sent, out);
      return Kind::kNumber;
    case O::kProtocol:
      return appendString(info.protocol, s.max_len, out);
    case O::kUpstreamHost:
      return appendString(info.upstream_host, s.max_len, out);
    case O::kUpstreamCluster:
      return appendString(info.upstream_cluster, s.max_len, out);
    case O::kUpstreamLocalAddress:
      return appendString(info.upstream_local_address, s.max_len, out);
    case O::kUpstreamTransportFailureReason:
      return appendString(info.upstream_transport_failure_reason, s.max_len, out);
    case O::kDownstreamRemoteAddress:
      return appendString(info.downstream_remote_address, s.max_len, out);
    case O::kDownstreamRemoteAddressWithoutPort:
      return appendString(withoutPort(info.downstream_remote_address), s.max_len, out);
    case O::kDownstreamDirectRemoteAddress:
      return appendString(info.downstream_direct_remote_address, s.max_len, out);
    case O::kDownstreamDirectRemoteAddressWithoutPort:
      return appendString(withoutPort(info.downstream_direct_remote_address), s.max_len, out);
    case O::kDownstreamLocalAddress:
      return appendString(info.downstream_local_address, s.max_len, out);
    case O::kDownstreamLocalAddressWithoutPort:
      return appendString(withoutPort(info.downstream_local_address), s.max_len, out);
    case O::kRequestedServerName:
      return appendString(info.requested_server_name, s.max_len, out);
    case O::kDownstreamPeerUriSan:
    case O::kDownstreamLocalUriSan:
    case O::kDownstreamPeerDnsSan:
    case O::kDownstreamLocalDnsSan:
    case O::kDownstreamPeerSubject:
    case O::kDownstreamLocalSubject:
    case O::kDownstreamPeerIssuer:
    case O::kDownstreamPeerSerial:
    case O::kDownstreamPeerFingerprint256:
    case O::kDownstreamTlsVersion:
    case O::kDownstreamTlsCipher:
      return appendTlsField(s.op, info, s.max_len, out);
    case O::kRouteName:
      return appendString(info.route_name, s.max_len, out);
    case O::kUpstreamRequestAttemptCount:
      appendNumber(info.attempt_count, out);
      return Kind::kNumber;
    case O::kConnectionId:
      appendNumber(info.connection_id, out);
      return Kind::kNumber;
    case O::kHostname:
      return appendString(s.text, s.max_len, out);
  }
  return Kind::kAbsent;
}

std::string hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return {};
  return buf;
}

bool parseHeaderArgs(std::string_view args, Segment* s) {
  size_t q = args.find('?');
  std::string_view main = args.substr(0, q);
  std::string_view alt = q == std::string_view::npos ? std::string_view() : args.substr(q + 1);
  if (main.empty() ||
      (q != std::string_view::npos && (alt.empty() || alt.find('?') != std::string_view::npos))) {
    return false;
  }
  s->header.assign(main);
  s->alt_header.assign(alt);
  http::toLowerInPlace(s->header);
  http::toLowerInPlace(s->alt_header);
  return true;
}

// Parses one operator starting just after its opening '%'. On success sets `*end` to the index just
// past the closing '%'.
bool parseOperator(std::string_view fmt, size_t start, Segment* seg, size_t* end, std::string* error) {
  size_t i = start;
  while (i < fmt.size() &&
         ((fmt[i] >= 'A' && fmt[i] <= 'Z') || (fmt[i] >= '0' && fmt[i] <= '9') || fmt[i] == '_')) {
    ++i;
  }
  std::string_view name = fmt.substr(start, i - start);
  if (name.empty() || i >= fmt.size()) {
    *error =
        "access log format: unterminated or empty command operator at offset " + std::to_string(start - 1);
    return false;
  }
  const OpName* found = nullptr;
  for (const auto& o : kOps) {
    if (o.name == name) found = &o;
  }
  if (found == nullptr) {
    *error = "access log format: unknown command operator '" + std::string(name) + "'";
    return false;
  }
  seg->op = found->op;
  std::string_view args;
  bool has_args = false;
  if (fmt[i] == '(') {
    // Arguments end at the first ')' followed by '%' or ":<digits>%" (START_TIME formats contain '%').
    size_t close = i;
    while (true) {
      close = fmt.find(')', close + 1);
      if (close == std::string_view::npos) {
        *error = "access log format: unterminated arguments of '" + std::string(name) + "'";
        return false;
      }
      size_t k = close + 1;
      if (k < fmt.size() && fmt[k] == ':') {
        ++k;
        while (k < fmt.size() && fmt[k] >= '0' && fmt[k] <= '9') ++k;
      }
      if (k < fmt.size() && fmt[k] == '%') break;
    }
    args = fmt.substr(i + 1, close - i - 1);
    has_args = true;
    i = close + 1;
  }
  if (i < fmt.size() && fmt[i] == ':') {
    size_t k = i + 1;
    while (k < fmt.size() && fmt[k] >= '0' && fmt[k] <= '9') ++k;
    size_t len = 0;
    auto r = std::from_chars(fmt.data() + i + 1, fmt.data() + k, len);
    if (k == i + 1 || r.ec != std::errc()) {
      *error = "access log format: bad length limit after '" + std::string(name) + "'";
      return false;
    }
    seg->max_len = len;
    i = k;
  }
  if (i >= fmt.size() || fmt[i] != '%') {
    *error = "access log format: command operator '" + std::string(name) + "' is not closed with '%'";
    return false;
  }
  if (seg->op != Op::kAbsent) {
    if (has_args && !takesArgs(seg->op)) {
      *error = "access log format: '" + std::string(name) + "' takes no arguments";
      return false;
    }
    if (!has_args && needsArgs(seg->op)) {
      *error = "access log format: '" + std::string(name) + "' needs a header name, e.g. " +
               std::string(name) + "(:PATH)";
      return false;
    }
  }
  if (needsArgs(seg->op) && !parseHeaderArgs(args, seg)) {
    *error =
        "access log format: bad header argument '" + std::string(args) + "' of '" + std::string(name) + "'";
    return false;
  }
  if (seg->op == Op::kStartTime) seg->time = TimeFormat(has_args ? args : std::string_view());
  if (seg->op == Op::kHostname) seg->text = hostname();
  *end = i + 1;
  return true;
}

bool parseSegments(std::string_view fmt, std::vector<Segment>* out, std::string* error) {
  std::string literal;
  auto flushLiteral = [&] {
    if (literal.empty()) return;
    Segment s;
    s.op = Op::kLiteral;
    s.text = std::move(literal);
    out->push_back(std::move(s));
    literal.clear();
  };
  size_t i = 0;
  while (i < fmt.size()) {
    char c = fmt[i];
    if (c != '%') {
      literal += c;
      ++i;
      continue;
    }
    if (i + 1 < fmt.size() && fmt[i + 1] == '%') {
      literal += '%';
      i += 2;
      continue;
    }
    Segment seg;
    size_t end = 0;
    if (!parseOperator(fmt, i + 1, &seg, &end, error)) return false;
    flushLiteral();
    out->push_back(std::move(seg));
    i = end;
  }
  flushLiteral();
  return true;
}

}  // namespace

struct Formatter::Impl {
  bool json = false;
  std::vector<Segment> segments;  // text format
  std::vector<JsonField> fields;  // json format
};

Formatter::Formatter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Formatter::~Formatter() = default;

std::string_view Formatter::defaultFormat() {
  return "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% "
         "%RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "
         "\"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" "
         "\"%UPSTREAM_HOST%\"\n";
}

std::unique_ptr<Formatter> Formatter::parse(std::string_view format, std::string* error) {
  auto impl = std::make_unique<Impl>();
  if (!parseSegments(format, &impl->segments, error)) return nullptr;
  return std::unique_ptr<Formatter>(new Formatter(std::move(impl)));
}

std::unique_ptr<Formatter> Formatter::parseJson(
    const std::vector<std::pair<std::string, std::string>>& fields, std::string* error) {
  auto impl = std::make_unique<Impl>();
  impl->json = true;
  for (const auto& [key, fmt] : fields) {
    JsonField f;
    f.key = key;
    if (!parseSegments(fmt, &f.segments, error)) {
      *error += " (json_format key '" + key + "')";
      return nullptr;
    }
    impl->fields.push_back(std::move(f));
  }
  return std::unique_ptr<Formatter>(new Formatter(std::move(impl)));
}

void Formatter::format(const http::StreamInfo& info, std::string& out) const {
  if (!impl_->json) {
    for (const auto& s : impl_->segments) {
      if (appendValue(s, info, out) == Kind::kAbsent) out += '-';
    }
    return;
  }
  thread_local std::string scratch;
  out += '{';
  bool first = true;
  for (const auto& f : impl_->fields) {
    if (!first) out += ',';
    first = false;
    out += '"';
    appendJsonEscaped(f.key, out);
    out += "\":";
    scratch.clear();
    if (f.segments.size() == 1 && f.segments[0].op != Op::kLiteral) {
      // A lone operator keeps its type.
      Kind k = appendValue(f.segments[0], info, scratch);
      if (k == Kind::kAbsent) {
        out += "null";
      } else if (k == Kind::kNumber) {
        out += scratch;
      } else {
        out += '"';
        appendJsonEscaped(scratch, out);
        out += '"';
      }
      continue;
    }
    for (const auto& s : f.segments) {
      if (appendValue(s, info, scratch) == Kind::kAbsent) scratch += '-';
    }
    out += '"';
    appendJsonEscaped(scratch, out);
    out += '"';
  }
  out += "}\n";
}

}  // namespace skiff::accesslog
