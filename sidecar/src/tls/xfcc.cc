// x-forwarded-client-cert: renders this hop's element and applies forward_client_cert_details.
#include "skiff/tls/xfcc.h"

#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "skiff/http/header_map.h"
#include "skiff/tls/transport.h"

namespace skiff::tls {

XfccConfig XfccConfig::fromProto(
    const envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager& hcm) {
  XfccConfig out;
  out.mode = static_cast<ForwardClientCertMode>(hcm.forward_client_cert_details());
  const auto& details = hcm.set_current_client_cert_details();
  out.cert = details.cert();
  out.chain = details.chain();
  out.subject = details.has_subject() && details.subject().value();
  out.uri = details.uri();
  out.dns = details.dns();
  return out;
}

std::string renderXfccElement(const TlsConnectionInfo& info, const XfccConfig& config) {
  std::string out;
  auto add = [&out](std::string_view key, std::string_view value, bool quoted) {
    if (!out.empty()) out += ';';
    out.append(key).append("=");
    if (quoted) out += '"';
    out.append(value);
    if (quoted) out += '"';
  };
  for (const auto& uri : info.uri_san_local) add("By", uri, false);
  if (!info.sha256_peer_digest.empty()) add("Hash", info.sha256_peer_digest, false);
  if (config.cert) {
    std::string pem = urlEncodedPemPeerCertificate(info);
    if (!pem.empty()) add("Cert", pem, true);
  }
  if (config.chain) {
    std::string pem = urlEncodedPemPeerCertificateChain(info);
    if (!pem.empty()) add("Chain", pem, true);
  }
  if (config.subject) add("Subject", info.subject_peer, true);  // present even when empty, as Envoy
  if (config.uri) {
    if (info.uri_san_peer.empty()) add("URI", "", false);
    for (const auto& uri : info.uri_san_peer) add("URI", uri, false);
  }
  if (config.dns) {
    for (const auto& dns : info.dns_san_peer) add("DNS", dns, false);
  }
  return out;
}

void mutateXfcc(http::HeaderMap& headers, const TlsConnectionInfo* tls, const XfccConfig& config) {
  if (config.mode == ForwardClientCertMode::kAlwaysForwardOnly) return;
  const bool mutual = tls != nullptr && tls->peer_certificate_presented;
  if (config.mode == ForwardClientCertMode::kSanitize || !mutual) {
    headers.remove(kXfccHeader);
    return;
  }
  if (config.mode == ForwardClientCertMode::kForwardOnly) return;
  std::string element = renderXfccElement(*tls, config);
  if (config.mode == ForwardClientCertMode::kAppendForward) {
    const std::string* existing = headers.get(kXfccHeader);
    if (existing != nullptr && !existing->empty()) {
      std::string joined = headers.getJoined(kXfccHeader) + "," + element;
      headers.set(kXfccHeader, joined);
      return;
    }
  }
  headers.set(kXfccHeader, element);
}

}  // namespace skiff::tls
