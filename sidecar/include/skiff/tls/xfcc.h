// x-forwarded-client-cert: rendering this connection's element and applying the HTTP connection manager's
// forward_client_cert_details / set_current_client_cert_details to a request, as Envoy does.
#pragma once

#include <string>
#include <string_view>

namespace envoy::extensions::filters::network::http_connection_manager::v3 {
class HttpConnectionManager;
}
namespace skiff::http {
class HeaderMap;
}

namespace skiff::tls {

struct TlsConnectionInfo;

inline constexpr std::string_view kXfccHeader = "x-forwarded-client-cert";

// HttpConnectionManager.ForwardClientCertDetails (same numbering).
enum class ForwardClientCertMode {
  kSanitize = 0,
  kForwardOnly = 1,
  kAppendForward = 2,
  kSanitizeSet = 3,
  kAlwaysForwardOnly = 4
};

struct XfccConfig {
  ForwardClientCertMode mode = ForwardClientCertMode::kSanitize;
  // set_current_client_cert_details; rendered in Envoy's order Cert, Chain, Subject, URI, DNS.
  bool cert = false;
  bool chain = false;
  bool subject = false;
  bool uri = false;
  bool dns = false;

  static XfccConfig fromProto(
      const envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager& hcm);
};

// One XFCC element: By=<each local URI SAN>;Hash=<sha256 hex>;Cert="..";Chain="..";Subject="..";
// URI=<each peer URI SAN, or empty>;DNS=<each peer DNS SAN>.
std::string renderXfccElement(const TlsConnectionInfo& info, const XfccConfig& config);

// Applies the mode to `headers`. `tls` is the downstream connection's TLS info, nullptr for plaintext;
// a connection counts as mutual TLS when the peer presented a certificate.
void mutateXfcc(http::HeaderMap& headers, const TlsConnectionInfo* tls, const XfccConfig& config);

}  // namespace skiff::tls
