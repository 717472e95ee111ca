// TlsTransport: handshake, read, write and close_notify over a non-blocking TCP socket whose descriptor
// OpenSSL drives directly; coroutines only wait for readiness. Also the Envoy-shaped failure text and the
// connection info (SANs, digest, serial, version, cipher) collected after the handshake.
#include "skiff/tls/transport.h"

#include <openssl/x509v3.h>
#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>

#include <cctype>
#include <cstring>

#include "tls/context_impl.h"

namespace skiff::tls {
namespace {

constexpr auto kToken = asio::experimental::as_tuple(asio::use_awaitable);
constexpr size_t kCoalesceLimit = 16 * 1024;  // one TLS record

class TlsCategory : public std::error_category {
 public:
  const char* name() const noexcept override { return "skiff.tls"; }
  std::string message(int ev) const override {
    switch (static_cast<TlsError>(ev)) {
      case TlsError::kHandshakeFailed:
        return "TLS handshake failed";
      case TlsError::kProtocolError:
        return "TLS protocol error";
      case TlsError::kNoContext:
        return "no TLS context (secret not ready)";
      case TlsError::kNotConnected:
        return "TLS handshake not done";
    }
    return "TLS error";
  }
};

// "CERTIFICATE_VERIFY_FAILED" from OpenSSL's "certificate verify failed", so the text reads like BoringSSL's.
std::string reasonToken(const char* reason) {
  std::string out = reason ? reason : "UNKNOWN";
  for (char& c : out) c = c == ' ' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string curveName(int nid) {
  switch (nid) {
    case NID_X9_62_prime256v1:
      return "P-256";
    case NID_secp384r1:
      return "P-384";
    case NID_secp521r1:
      return "P-521";
    default:
      break;
  }
  const char* sn = OBJ_nid2sn(nid);
  return sn ? sn : "";
}

std::string urlEncodePem(const std::string& pem) {
  std::string out;
  out.reserve(pem.size() + pem.size() / 8);
  for (char c : pem) {
    switch (c) {
      case '\n':
        out += "%0A";
        break;
      case ' ':
        out += "%20";
        break;
      case '+':
        out += "%2B";
        break;
      case '/':
        out += "%2F";
        break;
      case '=':
        out += "%3D";
        break;
      default:
        out += c;
    }
  }
  return out;
}

}  // namespace

const std::error_category& tlsCategory() {
  static const TlsCategory category;
  return category;
}
std::error_code make_error_code(TlsError e) {
  return {static_cast<int>(e), tlsCategory()};
}

std::string urlEncodedPemPeerCertificate(const TlsConnectionInfo& info) {
  if (!info.peer || !info.peer->leaf) return {};
  return urlEncodePem(detail::certToPem(info.peer->leaf.get()));
}

std::string urlEncodedPemPeerCertificateChain(const TlsConnectionInfo& info) {
  if (!info.peer) return {};
  std::string pem;
  for (const auto& cert : info.peer->chain) pem += detail::certToPem(cert.get());
  return urlEncodePem(pem);
}

struct TlsTransport::Impl {
  Impl(asio::ip::tcp::socket& s, ContextSnapshotConstSharedPtr c, Role r, HandshakeOptions o)
      : socket(&s), context(std::move(c)), role(r), options(std::move(o)) {}

  asio::ip::tcp::socket* socket;
  bool started = false;  // SSL object made (the first handshake step ran)
  ContextSnapshotConstSharedPtr context;
  Role role;
  HandshakeOptions options;
  detail::SslPtr ssl;
  ConnectionState state;
  TlsConnectionInfo info;
  std::string failure;
  bool established = false;
  bool errored = false;  // a TLS-level error after the handshake
  std::string sni_sent;
  std::vector<char> staging;

  // Every I/O loop goes straight back to SSL_* after this: if another handler closed the socket meanwhile,
  // its descriptor number may already be another connection's, so report it as gone.
  asio::awaitable<std::error_code> wait(asio::socket_base::wait_type type) {
    auto [ec] = co_await socket->async_wait(type, kToken);
    if (!ec && !socket->is_open()) ec = asio::error::bad_descriptor;
    co_return ec;
  }

  // Envoy's "TLS_error:|<code>:<lib>:OPENSSL_internal:<REASON>[:<detail>]:TLS_error_end", from OpenSSL's
  // queue (which it drains) and the verify callback's detail.
  // Drains OpenSSL's queue into Envoy's "TLS_error:|<code>:<lib>:OPENSSL_internal:<REASON>...:TLS_error_end"
  // (plus the verify callback's detail) and counts it as Envoy's drainErrorQueue() does: a missing client
  // certificate is fail_verify_no_cert, a failed verification was already counted by the callback, system
  // errors belong to connection stats; anything else is connection_error.
  void recordFailure(int ssl_error) {
    errored = true;
    std::string text = "TLS_error:";
    bool saw_error = false;
    bool counted = false;
    while (unsigned long err = ERR_get_error()) {
      if (ERR_GET_LIB(err) == ERR_LIB_SSL && ERR_GET_REASON(err) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
        context->stats->fail_verify_no_cert.inc();
        counted = true;
      } else if (ERR_GET_LIB(err) == ERR_LIB_SSL && ERR_GET_REASON(err) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        counted = true;
      } else if (ERR_GET_LIB(err) == ERR_LIB_SYS) {
        counted = true;
      }
      saw_error = true;
      const char* lib = ERR_lib_error_string(err);
      text += "|" + std::to_string(err) + ":" + (lib ? lib : "") +
              ":OPENSSL_internal:" + reasonToken(ERR_reason_error_string(err));
    }
    if (!saw_error) {
      text += "|" + (ssl_error == SSL_ERROR_SYSCALL && errno != 0 ? std::string(std::strerror(errno))
                                                                  : std::string("connection closed"));
    }
    if (!state.verify_detail.empty()) text += ":" + state.verify_detail;
    text += ":TLS_error_end";
    failure = std::move(text);
    if (saw_error && !counted) context->stats->connection_error.inc();
  }

  void collectInfo() {
    TlsConnectionInfo& i = info;
    SSL* s = ssl.get();
    detail::X509Ptr peer(SSL_get1_peer_certificate(s));
    i.peer_certificate_presented = peer != nullptr;
    i.peer_certificate_validated = state.chain_validated;
    if (peer) {
      i.uri_san_peer = detail::sansOfType(peer.get(), GEN_URI);
      i.dns_san_peer = detail::sansOfType(peer.get(), GEN_DNS);
      i.sha256_peer_digest = detail::sha256Of(peer.get());
      i.subject_peer = detail::subjectOf(peer.get());
      i.issuer_peer = detail::issuerOf(peer.get());
      i.serial_peer = detail::serialOf(peer.get());
      i.valid_from_peer = detail::unixTime(X509_get0_notBefore(peer.get()));
      i.expiration_peer = detail::unixTime(X509_get0_notAfter(peer.get()));
      auto certs = std::make_shared<PeerCertificates>();
      X509_up_ref(peer.get());
      certs->chain.emplace_back(peer.get());
      if (STACK_OF(X509)* chain = SSL_get_peer_cert_chain(s)) {
        // A client's view of the chain starts with the leaf; a server's does not.
        for (int k = role == Role::kClient ? 1 : 0; k < sk_X509_num(chain); ++k) {
          X509* cert = sk_X509_value(chain, k);
          X509_up_ref(cert);
          certs->chain.emplace_back(cert);
        }
      }
      certs->leaf = std::move(peer);
      i.peer = std::move(certs);
    }
    i.uri_san_local = context->local_uri_sans;
    i.dns_san_local = context->local_dns_sans;
    i.subject_local = context->local_subject;
    i.serial_local = context->local_serial;
    i.tls_version = SSL_get_version(s);
    if (const SSL_CIPHER* cipher = SSL_get_current_cipher(s)) {
      i.cipher = SSL_CIPHER_get_name(cipher);
      i.cipher_id = SSL_CIPHER_get_protocol_id(cipher);
    }
    const unsigned char* alpn = nullptr;
    unsigned int alpn_len = 0;
    SSL_get0_alpn_selected(s, &alpn, &alpn_len);
    if (alpn_len > 0) i.alpn.assign(reinterpret_cast<const char*>(alpn), alpn_len);
    if (role == Role::kServer) {
      const char* name = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
      if (name) i.sni = name;
    } else {
      i.sni = sni_sent;
    }
    i.session_reused = SSL_session_reused(s) == 1;

    const TlsStats& st = *context->stats;
    st.handshake.inc();
    if (i.session_reused) st.session_reused.inc();
    if (role == Role::kServer && !i.peer_certificate_presented) st.no_certificate.inc();
    st.incFamily("versions", i.tls_version);
    if (!i.cipher.empty()) st.incFamily("ciphers", i.cipher);
    int group = SSL_get_negotiated_group(s);
    if (group > 0) {
      std::string curve = curveName(group & ~TLSEXT_nid_unknown);
      if (!curve.empty()) st.incFamily("curves", curve);
    }
  }

  asio::awaitable<std::error_code> writeAll(const char* data, size_t size) {
    if (size > 0 && !socket->is_open()) co_return std::error_code(asio::error::bad_descriptor);
    while (size > 0) {
      ERR_clear_error();
      size_t written = 0;
      int r = SSL_write_ex(ssl.get(), data, size, &written);
      if (r == 1) {
        data += written;
        size -= written;
        continue;
      }
      int e = SSL_get_error(ssl.get(), r);
      if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
        auto ec = co_await wait(e == SSL_ERROR_WANT_WRITE ? asio::socket_base::wait_write
                                                          : asio::socket_base::wait_read);
        if (ec) co_return ec;
        continue;
      }
      if (e == SSL_ERROR_SYSCALL && errno != 0) {
        std::error_code ec(errno, std::system_category());
        ERR_clear_error();
        co_return ec;
      }
      recordFailure(e);
      co_return make_error_code(TlsError::kProtocolError);
    }
    co_return std::error_code();
  }
};

TlsTransport::TlsTransport(asio::ip::tcp::socket& socket, ContextSnapshotConstSharedPtr context, Role role,
                           HandshakeOptions options)
    : impl_(std::make_unique<Impl>(socket, std::move(context), role, std::move(options))) {}

TlsTransport::~TlsTransport() {
  // OpenSSL marks the session of a connection freed without close_notify as not resumable, which would
  // poison the client session cache whenever a peer just closes TCP. Only a TLS error should do that.
  if (impl_->ssl && impl_->established && !impl_->errored) {
    SSL_set_shutdown(impl_->ssl.get(), SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  }
}

// Makes the SSL object; false (with the failure recorded) when there is no usable context.
static bool beginHandshake(TlsTransport::Impl& d, std::error_code* error) {
  using Role = TlsTransport::Role;
  d.started = true;
  if (!d.context) {
    d.failure = "TLS_error:|no TLS context (SDS secret not ready):TLS_error_end";
    *error = make_error_code(TlsError::kNoContext);
    return false;
  }
  d.ssl.reset(SSL_new(d.context->ctx.get()));
  if (!d.ssl) {
    d.recordFailure(SSL_ERROR_SSL);
    *error = make_error_code(TlsError::kHandshakeFailed);
    return false;
  }
  std::error_code nb_ec;
  d.socket->native_non_blocking(true, nb_ec);
  // A handshake flight is several small writes; with Nagle on, the second waits for the peer's delayed ACK
  // (~40 ms). Envoy sets TCP_NODELAY on every connection too.
  d.socket->set_option(asio::ip::tcp::no_delay(true), nb_ec);
  // Not SSL_set_fd: its BIO writes with write(2), and a peer's reset would raise SIGPIPE (openssl_util.h).
  BIO* bio = detail::newSocketBio(d.socket->native_handle());
  if (bio == nullptr) {
    d.recordFailure(SSL_ERROR_SSL);
    *error = make_error_code(TlsError::kHandshakeFailed);
    return false;
  }
  SSL_set_bio(d.ssl.get(), bio, bio);  // one reference for both directions
  d.state.context = d.context.get();
  SSL_set_ex_data(d.ssl.get(), ConnectionState::sslIndex(), &d.state);
  if (d.role == Role::kClient) {
    SSL_set_connect_state(d.ssl.get());
    d.sni_sent = d.options.sni.empty() ? d.context->sni : d.options.sni;
    if (!d.sni_sent.empty()) SSL_set_tlsext_host_name(d.ssl.get(), d.sni_sent.c_str());
    d.state.extra_dns_sans = d.options.extra_dns_san_matches;
    if (d.context->auto_sni_san_validation && !d.sni_sent.empty() && d.state.extra_dns_sans.empty()) {
      d.state.extra_dns_sans.push_back(d.sni_sent);
    }
    if (!d.options.alpn.empty()) {
      std::vector<unsigned char> wire;
      for (const auto& p : d.options.alpn) {
        if (p.empty() || p.size() > 255) continue;
        wire.push_back(static_cast<unsigned char>(p.size()));
        wire.insert(wire.end(), p.begin(), p.end());
      }
      SSL_set_alpn_protos(d.ssl.get(), wire.data(), static_cast<unsigned int>(wire.size()));
    }
    // Resume only a session made for the same SNI (RFC 8446 4.6.1): with auto_sni one context serves many
    // names, and a resumed handshake skips the certificate check (auto_san_validation) altogether.
    d.state.sni = d.sni_sent;
    std::lock_guard<std::mutex> lock(d.context->session_mu);
    if (SSL_SESSION* session = d.context->sessionFor(d.sni_sent)) SSL_set_session(d.ssl.get(), session);
  } else {
    SSL_set_accept_state(d.ssl.get());
  }
  return true;
}

// OpenSSL holds the descriptor number (socket BIO): once the socket is closed that number may already
// belong to another connection, so no step may touch OpenSSL's I/O any more.
static bool socketGone(const TlsTransport::Impl& d, TlsTransport::Step* step) {
  if (d.socket->is_open()) return false;
  step->error = asio::error::bad_descriptor;
  return true;
}

TlsTransport::Step TlsTransport::handshakeStep() {
  Impl& d = *impl_;
  Step step;
  if (d.established) return step;
  if (socketGone(d, &step)) return step;
  if (!d.started && !beginHandshake(d, &step.error)) return step;
  if (!d.ssl) {
    step.error = make_error_code(TlsError::kHandshakeFailed);
    return step;
  }
  ERR_clear_error();
  errno = 0;
  int r = SSL_do_handshake(d.ssl.get());
  if (r == 1) {
    d.collectInfo();
    d.established = true;
    return step;
  }
  int e = SSL_get_error(d.ssl.get(), r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    step.want = e == SSL_ERROR_WANT_READ ? Want::kRead : Want::kWrite;
    return step;
  }
  d.recordFailure(e);
  d.ssl.reset();
  step.error = make_error_code(TlsError::kHandshakeFailed);
  return step;
}

TlsTransport::Step TlsTransport::readStep(asio::mutable_buffer buffer) {
  Impl& d = *impl_;
  Step step;
  if (!d.established || !d.ssl) {
    step.error = make_error_code(TlsError::kNotConnected);
    return step;
  }
  if (buffer.size() == 0 || socketGone(d, &step)) return step;
  ERR_clear_error();
  errno = 0;
  int r = SSL_read_ex(d.ssl.get(), buffer.data(), buffer.size(), &step.bytes);
  if (r == 1) return step;
  step.bytes = 0;
  int e = SSL_get_error(d.ssl.get(), r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    step.want = e == SSL_ERROR_WANT_READ ? Want::kRead : Want::kWrite;
  } else if (e == SSL_ERROR_ZERO_RETURN) {
    step.error = asio::error::eof;
  } else if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
    step.error =
        errno == 0 ? std::error_code(asio::error::eof) : std::error_code(errno, std::system_category());
  } else {
    d.recordFailure(e);
    step.error = make_error_code(TlsError::kProtocolError);
  }
  return step;
}

TlsTransport::Step TlsTransport::writeStep(asio::const_buffer buffer) {
  Impl& d = *impl_;
  Step step;
  if (!d.established || !d.ssl) {
    step.error = make_error_code(TlsError::kNotConnected);
    return step;
  }
  if (buffer.size() == 0 || socketGone(d, &step)) return step;
  ERR_clear_error();
  errno = 0;
  int r = SSL_write_ex(d.ssl.get(), buffer.data(), buffer.size(), &step.bytes);
  if (r == 1) return step;
  step.bytes = 0;
  int e = SSL_get_error(d.ssl.get(), r);
  if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
    step.want = e == SSL_ERROR_WANT_WRITE ? Want::kWrite : Want::kRead;
  } else if (e == SSL_ERROR_SYSCALL && errno != 0) {
    step.error = std::error_code(errno, std::system_category());
    ERR_clear_error();
  } else {
    d.recordFailure(e);
    step.error = make_error_code(TlsError::kProtocolError);
  }
  return step;
}

TlsTransport::Step TlsTransport::shutdownStep() {
  Impl& d = *impl_;
  Step step;
  if (!d.established || !d.ssl || d.errored || !d.socket->is_open()) return step;
  ERR_clear_error();
  int r = SSL_shutdown(d.ssl.get());
  if (r >= 0) return step;  // close_notify sent (0: the peer's not seen yet, which we don't wait for)
  int e = SSL_get_error(d.ssl.get(), r);
  if (e == SSL_ERROR_WANT_WRITE) {
    step.want = Want::kWrite;
    return step;
  }
  ERR_clear_error();
  step.error = make_error_code(TlsError::kProtocolError);
  return step;
}

void TlsTransport::rebind(asio::ip::tcp::socket& socket) {
  impl_->socket = &socket;
}

asio::awaitable<std::error_code> TlsTransport::handshake() {
  Impl& d = *impl_;
  while (true) {
    Step step = handshakeStep();
    if (step.want == Want::kNone) co_return step.error;
    auto ec = co_await d.wait(step.want == Want::kRead ? asio::socket_base::wait_read
                                                       : asio::socket_base::wait_write);
    if (ec) {
      d.failure = "TLS_error:|" + ec.message() + ":TLS_error_end";
      co_return make_error_code(TlsError::kHandshakeFailed);
    }
  }
}

asio::awaitable<std::pair<std::error_code, size_t>> TlsTransport::readSome(asio::mutable_buffer buffer) {
  Impl& d = *impl_;
  if (!d.established) co_return std::make_pair(make_error_code(TlsError::kNotConnected), size_t{0});
  if (buffer.size() == 0) co_return std::make_pair(std::error_code(), size_t{0});
  if (!d.socket->is_open()) co_return std::make_pair(std::error_code(asio::error::bad_descriptor), size_t{0});
  while (true) {
    ERR_clear_error();
    errno = 0;
    size_t n = 0;
    int r = SSL_read_ex(d.ssl.get(), buffer.data(), buffer.size(), &n);
    if (r == 1) co_return std::make_pair(std::error_code(), n);
    int e = SSL_get_error(d.ssl.get(), r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      auto ec = co_await d.wait(e == SSL_ERROR_WANT_READ ? asio::socket_base::wait_read
                                                         : asio::socket_base::wait_write);
      if (ec) co_return std::make_pair(ec, size_t{0});
      continue;
    }
    if (e == SSL_ERROR_ZERO_RETURN) co_return std::make_pair(std::error_code(asio::error::eof), size_t{0});
    if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
      if (errno == 0) co_return std::make_pair(std::error_code(asio::error::eof), size_t{0});
      co_return std::make_pair(std::error_code(errno, std::system_category()), size_t{0});
    }
    d.recordFailure(e);
    co_return std::make_pair(make_error_code(TlsError::kProtocolError), size_t{0});
  }
}

asio::awaitable<std::error_code> TlsTransport::write(std::span<const asio::const_buffer> buffers) {
  Impl& d = *impl_;
  if (!d.established) co_return make_error_code(TlsError::kNotConnected);
  size_t i = 0;
  while (i < buffers.size()) {
    // Runs of small buffers go out as one record; a large buffer goes straight from the caller's memory.
    if (buffers[i].size() >= kCoalesceLimit / 2 || i + 1 == buffers.size()) {
      auto ec = co_await d.writeAll(static_cast<const char*>(buffers[i].data()), buffers[i].size());
      if (ec) co_return ec;
      ++i;
      continue;
    }
    d.staging.clear();
    while (i < buffers.size() && d.staging.size() + buffers[i].size() <= kCoalesceLimit &&
           buffers[i].size() < kCoalesceLimit / 2) {
      const char* p = static_cast<const char*>(buffers[i].data());
      d.staging.insert(d.staging.end(), p, p + buffers[i].size());
      ++i;
    }
    auto ec = co_await d.writeAll(d.staging.data(), d.staging.size());
    if (ec) co_return ec;
  }
  co_return std::error_code();
}

asio::awaitable<std::error_code> TlsTransport::write(asio::const_buffer buffer) {
  if (!impl_->established) co_return make_error_code(TlsError::kNotConnected);
  co_return co_await impl_->writeAll(static_cast<const char*>(buffer.data()), buffer.size());
}

asio::awaitable<std::error_code> TlsTransport::shutdown() {
  Impl& d = *impl_;
  if (!d.established || !d.ssl || !d.socket->is_open()) co_return std::error_code();
  while (true) {
    ERR_clear_error();
    int r = SSL_shutdown(d.ssl.get());
    if (r >= 0)
      co_return std::error_code();  // close_notify sent (0: peer's not seen yet, which we don't wait for)
    int e = SSL_get_error(d.ssl.get(), r);
    if (e == SSL_ERROR_WANT_WRITE) {
      auto ec = co_await d.wait(asio::socket_base::wait_write);
      if (ec) co_return ec;
      continue;
    }
    ERR_clear_error();
    co_return make_error_code(TlsError::kProtocolError);
  }
}

bool TlsTransport::established() const {
  return impl_->established;
}
const TlsConnectionInfo& TlsTransport::info() const {
  return impl_->info;
}
const std::string& TlsTransport::failureReason() const {
  return impl_->failure;
}

}  // namespace skiff::tls
