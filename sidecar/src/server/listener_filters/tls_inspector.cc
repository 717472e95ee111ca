// TlsInspector: a bounds-checked ClientHello reader (RFC 8446 §4.1.2, RFC 6066 §3, RFC 7301 §3.1).
#include "server/listener_filters/tls_inspector.h"

#include <cctype>
#include <cstdint>

namespace skiff::server {

namespace {

constexpr uint8_t kHandshakeRecord = 22;
constexpr uint8_t kClientHello = 1;
constexpr uint16_t kExtServerName = 0;
constexpr uint16_t kExtAlpn = 16;
constexpr size_t kRecordHeader = 5;
constexpr size_t kMaxRecordPayload = 16384 + 2048;  // TLSCiphertext ceiling

// A cursor over bytes that fails (instead of reading past the end) on short input.
class Reader {
 public:
  explicit Reader(std::string_view d) : d_(d) {}
  bool u8(uint8_t& v) {
    if (d_.size() < 1) return false;
    v = static_cast<uint8_t>(d_[0]);
    d_.remove_prefix(1);
    return true;
  }
  bool u16(uint16_t& v) {
    if (d_.size() < 2) return false;
    v = static_cast<uint16_t>(static_cast<uint8_t>(d_[0]) << 8 | static_cast<uint8_t>(d_[1]));
    d_.remove_prefix(2);
    return true;
  }
  bool bytes(size_t n, std::string_view& out) {
    if (d_.size() < n) return false;
    out = d_.substr(0, n);
    d_.remove_prefix(n);
    return true;
  }
  bool skip(size_t n) {
    std::string_view ignored;
    return bytes(n, ignored);
  }
  bool empty() const { return d_.empty(); }

 private:
  std::string_view d_;
};

bool parseServerName(std::string_view ext, std::string& out) {
  Reader r(ext);
  uint16_t list_len;
  std::string_view list;
  if (!r.u16(list_len) || !r.bytes(list_len, list) || !r.empty()) return false;
  Reader entries(list);
  while (!entries.empty()) {
    uint8_t type;
    uint16_t len;
    std::string_view name;
    if (!entries.u8(type) || !entries.u16(len) || !entries.bytes(len, name)) return false;
    if (type == 0 && out.empty()) {
      out.reserve(name.size());
      for (char c : name) out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    }
  }
  return true;
}

bool parseAlpn(std::string_view ext, std::vector<std::string>& out) {
  Reader r(ext);
  uint16_t list_len;
  std::string_view list;
  if (!r.u16(list_len) || !r.bytes(list_len, list) || !r.empty() || list_len == 0) return false;
  Reader entries(list);
  while (!entries.empty()) {
    uint8_t len;
    std::string_view proto;
    if (!entries.u8(len) || len == 0 || !entries.bytes(len, proto)) return false;
    out.emplace_back(proto);
  }
  return true;
}

// The ClientHello body (after the 4-byte handshake header).
bool parseBody(std::string_view body, ClientHello& hello) {
  Reader r(body);
  uint16_t version, cipher_len, ext_len;
  uint8_t session_len, compression_len;
  if (!r.u16(version) || !r.skip(32)) return false;
  if (!r.u8(session_len) || session_len > 32 || !r.skip(session_len)) return false;
  if (!r.u16(cipher_len) || cipher_len < 2 || cipher_len % 2 != 0 || !r.skip(cipher_len)) return false;
  if (!r.u8(compression_len) || compression_len < 1 || !r.skip(compression_len)) return false;
  if (r.empty()) return true;  // no extensions (SSLv3-style hello)
  std::string_view exts;
  if (!r.u16(ext_len) || !r.bytes(ext_len, exts) || !r.empty()) return false;
  Reader e(exts);
  while (!e.empty()) {
    uint16_t type, len;
    std::string_view data;
    if (!e.u16(type) || !e.u16(len) || !e.bytes(len, data)) return false;
    if (type == kExtServerName && !parseServerName(data, hello.server_name)) return false;
    if (type == kExtAlpn && !parseAlpn(data, hello.alpn)) return false;
  }
  return true;
}

}  // namespace

ClientHello parseClientHello(std::string_view data, size_t max_bytes) {
  ClientHello hello;
  // Most hellos fit one record and are parsed in place; a fragmented one is joined here.
  std::string joined;
  std::string_view handshake;
  size_t pos = 0;
  while (true) {
    if (data.size() - pos < kRecordHeader) {
      // Judge the partial record header by what is there.
      const std::string_view head = data.substr(pos);
      if ((head.size() >= 1 && static_cast<uint8_t>(head[0]) != kHandshakeRecord) ||
          (head.size() >= 2 && static_cast<uint8_t>(head[1]) != 3)) {
        hello.result = ClientHello::Result::kNotTls;
      } else {
        // The next record header alone would not fit.
        hello.result =
            pos + kRecordHeader > max_bytes ? ClientHello::Result::kTooLarge : ClientHello::Result::kNeedMore;
      }
      return hello;
    }
    const auto* h = reinterpret_cast<const uint8_t*>(data.data() + pos);
    const size_t record_len = static_cast<size_t>(h[3]) << 8 | h[4];
    if (h[0] != kHandshakeRecord || h[1] != 3 || record_len == 0 || record_len > kMaxRecordPayload) {
      hello.result = ClientHello::Result::kNotTls;
      return hello;
    }
    if (data.size() - pos - kRecordHeader < record_len) {
      hello.result = pos + kRecordHeader + record_len > max_bytes ? ClientHello::Result::kTooLarge
                                                                  : ClientHello::Result::kNeedMore;
      // The handshake header may already tell that the hello can never fit.
      const std::string_view partial = data.substr(pos + kRecordHeader);
      if (pos == 0 && partial.size() >= 4) {
        const auto* p = reinterpret_cast<const uint8_t*>(partial.data());
        if (p[0] != kClientHello) {
          hello.result = ClientHello::Result::kNotTls;
        } else if (4 + (static_cast<size_t>(p[1]) << 16 | static_cast<size_t>(p[2]) << 8 | p[3]) >
                   max_bytes) {
          hello.result = ClientHello::Result::kTooLarge;
        }
      }
      return hello;
    }
    const std::string_view fragment = data.substr(pos + kRecordHeader, record_len);
    pos += kRecordHeader + record_len;
    if (handshake.empty() && joined.empty()) {
      handshake = fragment;
    } else {
      if (joined.empty()) joined.assign(handshake);
      joined.append(fragment);
      handshake = joined;
    }
    if (handshake.size() < 4) continue;
    const auto* p = reinterpret_cast<const uint8_t*>(handshake.data());
    if (p[0] != kClientHello) {
      hello.result = ClientHello::Result::kNotTls;
      return hello;
    }
    const size_t body_len = static_cast<size_t>(p[1]) << 16 | static_cast<size_t>(p[2]) << 8 | p[3];
    if (4 + body_len > max_bytes) {
      hello.result = ClientHello::Result::kTooLarge;
      return hello;
    }
    if (handshake.size() < 4 + body_len) continue;
    hello.result = parseBody(handshake.substr(4, body_len), hello) ? ClientHello::Result::kTls
                                                                   : ClientHello::Result::kNotTls;
    if (hello.result != ClientHello::Result::kTls) {
      hello.server_name.clear();
      hello.alpn.clear();
    }
    hello.bytes = pos;
    return hello;
  }
}

TlsInspector::TlsInspector(stats::Store& store)
    : client_hello_too_large_(store.counter("tls_inspector.client_hello_too_large")),
      tls_found_(store.counter("tls_inspector.tls_found")),
      tls_not_found_(store.counter("tls_inspector.tls_not_found")),
      alpn_found_(store.counter("tls_inspector.alpn_found")),
      alpn_not_found_(store.counter("tls_inspector.alpn_not_found")),
      sni_found_(store.counter("tls_inspector.sni_found")),
      sni_not_found_(store.counter("tls_inspector.sni_not_found")),
      bytes_processed_(store.histogram("tls_inspector.bytes_processed", stats::Histogram::Unit::kBytes)) {}

ListenerFilterStatus TlsInspector::onAccept(int, network::ConnectionInfo&) const {
  return ListenerFilterStatus::kNeedData;
}

ListenerFilterStatus TlsInspector::onData(std::string_view data, bool end_stream,
                                          network::ConnectionInfo& info) const {
  ClientHello hello = parseClientHello(data);
  switch (hello.result) {
    case ClientHello::Result::kNeedMore:
      if (!end_stream) return ListenerFilterStatus::kNeedData;
      tls_not_found_.inc();
      return ListenerFilterStatus::kContinue;
    case ClientHello::Result::kTooLarge:
      client_hello_too_large_.inc();
      return ListenerFilterStatus::kClose;
    case ClientHello::Result::kNotTls:
      tls_not_found_.inc();
      return ListenerFilterStatus::kContinue;
    case ClientHello::Result::kTls:
      break;
  }
  tls_found_.inc();
  bytes_processed_.record(hello.bytes);
  (hello.server_name.empty() ? sni_not_found_ : sni_found_).inc();
  (hello.alpn.empty() ? alpn_not_found_ : alpn_found_).inc();
  info.transport_protocol = "tls";
  info.server_name = std::move(hello.server_name);
  info.application_protocols = std::move(hello.alpn);
  return ListenerFilterStatus::kContinue;
}

}  // namespace skiff::server
