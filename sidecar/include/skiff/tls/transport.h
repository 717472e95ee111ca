// TLS over a connected, non-blocking asio TCP socket, driven by coroutines on the socket's io_context.
//
// OpenSSL reads and writes the socket's file descriptor itself (a socket BIO) and the coroutines only wait
// for readiness (socket.async_wait). So ciphertext goes kernel -> OpenSSL's record buffer and plaintext is
// decrypted straight into the caller's buffer: no extra staging copy as with asio::ssl::stream's memory
// BIOs, and the proxy keeps its own buffers and error-value style (no exceptions on the data path).
// A reader and a writer coroutine may be outstanding at the same time (one each), on the socket's thread.
#pragma once

#include <asio/awaitable.hpp>
#include <asio/buffer.hpp>
#include <asio/ip/tcp.hpp>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "skiff/tls/context.h"

namespace skiff::tls {

// Errors of the TLS layer (clean close_notify is asio::error::eof).
enum class TlsError {
  kHandshakeFailed = 1,  // see TlsTransport::failureReason()
  kProtocolError,        // a TLS error after the handshake
  kNoContext,            // no usable context (SDS secret missing)
  kNotConnected,         // read/write before a successful handshake
};
const std::error_category& tlsCategory();
std::error_code make_error_code(TlsError e);

struct PeerCertificates;  // opaque: the peer's certificate and chain, for XFCC Cert/Chain

// What a handshake learnt; filled once the handshake succeeds. Names follow Envoy's Ssl::ConnectionInfo
// (peerCertificatePresented, uriSanPeerCertificate, sha256PeerCertificateDigest, subjectPeerCertificate...).
struct TlsConnectionInfo {
  bool peer_certificate_presented = false;
  bool peer_certificate_validated = false;  // a trust chain was configured and checked
  std::vector<std::string> uri_san_peer;
  std::vector<std::string> dns_san_peer;
  std::vector<std::string> uri_san_local;
  std::vector<std::string> dns_san_local;
  std::string sha256_peer_digest;  // lower-case hex of SHA-256 over the peer certificate's DER
  std::string subject_peer;        // RFC 2253
  std::string issuer_peer;
  std::string subject_local;
  std::string serial_peer;  // lower-case hex
  std::string serial_local;
  int64_t valid_from_peer = 0;  // Unix seconds
  int64_t expiration_peer = 0;
  std::string tls_version;      // "TLSv1.3"
  std::string cipher;           // OpenSSL's name ("TLS_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256")
  uint16_t cipher_id = 0xffff;  // IANA cipher suite number (0x1301); 0xffff when none
  std::string alpn;             // negotiated protocol, "" when none
  std::string sni;              // server name sent (client) or received (server)
  bool session_reused = false;
  std::shared_ptr<const PeerCertificates> peer;
};

// URL-encoded PEM of the peer certificate / of the whole peer chain (XFCC Cert= / Chain=).
std::string urlEncodedPemPeerCertificate(const TlsConnectionInfo& info);
std::string urlEncodedPemPeerCertificateChain(const TlsConnectionInfo& info);

// Per-connection choices made by the caller (upstream: the host; downstream: nothing).
struct HandshakeOptions {
  std::string sni;                                 // overrides the context's `sni` (auto_host_sni)
  std::vector<std::string> alpn;                   // overrides the context's alpn_protocols (client)
  std::vector<std::string> extra_dns_san_matches;  // auto_sni_san_validation: the SNI must be a DNS SAN
};

class TlsTransport {
 public:
  enum class Role { kClient, kServer };

  // `socket` must be connected and outlive the transport. `context` may be null (handshake() then fails
  // with kNoContext).
  TlsTransport(asio::ip::tcp::socket& socket, ContextSnapshotConstSharedPtr context, Role role,
               HandshakeOptions options = {});
  ~TlsTransport();
  TlsTransport(const TlsTransport&) = delete;
  TlsTransport& operator=(const TlsTransport&) = delete;

  // Runs the handshake. On failure the reason is in failureReason() and the stats are counted.
  asio::awaitable<std::error_code> handshake();
  // Reads decrypted bytes into `buffer`; returns the count (>0), or an error (eof on close_notify or a
  // plain TCP close).
  asio::awaitable<std::pair<std::error_code, size_t>> readSome(asio::mutable_buffer buffer);
  // Writes all of `buffers` (runs of small buffers are coalesced into one record). The buffer array and
  // the bytes must stay valid until the returned awaitable completes.
  asio::awaitable<std::error_code> write(std::span<const asio::const_buffer> buffers);
  asio::awaitable<std::error_code> write(asio::const_buffer buffer);
  // Sends close_notify (does not wait for the peer's); the caller closes the socket.
  asio::awaitable<std::error_code> shutdown();

  // Callback-driven steps (network::Transport uses these; the coroutines above are built on them). Each
  // runs OpenSSL once without blocking: done (`want` kNone, `error`/`bytes` set) or "wait for this
  // readiness on the socket, then call the same step again with the same arguments".
  enum class Want { kNone, kRead, kWrite };
  struct Step {
    Want want = Want::kNone;
    std::error_code error;
    size_t bytes = 0;
  };
  Step handshakeStep();
  Step readStep(asio::mutable_buffer buffer);
  Step writeStep(asio::const_buffer buffer);  // writes all of `buffer` or nothing (retry it whole)
  Step shutdownStep();
  // The socket object moved (the owner was moved while no operation was pending).
  void rebind(asio::ip::tcp::socket& socket);

  bool established() const;
  const TlsConnectionInfo& info() const;
  // Envoy-shaped failure text for upstream_transport_failure_reason, e.g.
  // "TLS_error:|167772294:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED:verify cert failed: SAN
  // matcher:TLS_error_end" (OpenSSL's packed error code and library name; see src/tls/README.md).
  const std::string& failureReason() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace skiff::tls

namespace std {
template <>
struct is_error_code_enum<skiff::tls::TlsError> : true_type {};
}  // namespace std
