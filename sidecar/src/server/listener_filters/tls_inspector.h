// envoy.filters.listener.tls_inspector: recognises a TLS ClientHello in the first bytes and records
// SNI and ALPN for filter chain matching, without consuming anything.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "server/listener_filters/listener_filter.h"

namespace skiff::server {

// Envoy's ceiling for one ClientHello (larger is client_hello_too_large).
constexpr size_t kMaxClientHelloBytes = 64 * 1024;

struct ClientHello {
  enum class Result { kNeedMore, kTls, kNotTls, kTooLarge };
  Result result = Result::kNeedMore;
  std::string server_name;  // lower-cased host_name from server_name, empty when absent
  std::vector<std::string> alpn;
  size_t bytes = 0;  // record bytes the ClientHello took (kTls)
};

// Parses the TLS records at the start of `data` (the handshake may span records). Malformed input
// is kNotTls; a ClientHello longer than `max_bytes` is kTooLarge.
ClientHello parseClientHello(std::string_view data, size_t max_bytes = kMaxClientHelloBytes);

class TlsInspector : public ListenerFilter {
 public:
  explicit TlsInspector(stats::Store& store);
  ListenerFilterStatus onAccept(int fd, network::ConnectionInfo& info) const override;
  ListenerFilterStatus onData(std::string_view data, bool end_stream,
                              network::ConnectionInfo& info) const override;
  size_t maxReadBytes() const override { return kMaxClientHelloBytes; }

 private:
  stats::Counter client_hello_too_large_, tls_found_, tls_not_found_, alpn_found_, alpn_not_found_,
      sni_found_, sni_not_found_;
  stats::Histogram bytes_processed_;
};

}  // namespace skiff::server
