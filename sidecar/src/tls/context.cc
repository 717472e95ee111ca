// TlsContext: builds an SSL_CTX snapshot from a config and the current SDS secrets, swaps it on secret
// updates, and verifies peers (trust chain, Envoy SAN matching) in the SSL_CTX's verify callback.
#include "skiff/tls/context.h"

#include <openssl/x509v3.h>

#include <algorithm>
#include <stdexcept>

#include "envoy/extensions/transport_sockets/tls/v3/secret.pb.h"
#include "skiff/common/logging.h"
#include "tls/context_impl.h"

namespace skiff::tls {
namespace {

int protoVersion(TlsVersion v) {
  switch (v) {
    case TlsVersion::k1_0:
      return TLS1_VERSION;
    case TlsVersion::k1_1:
      return TLS1_1_VERSION;
    case TlsVersion::k1_2:
      return TLS1_2_VERSION;
    case TlsVersion::k1_3:
      return TLS1_3_VERSION;
    case TlsVersion::kAuto:
      break;
  }
  return 0;
}

std::vector<unsigned char> alpnWire(const std::vector<std::string>& protocols) {
  std::vector<unsigned char> out;
  for (const auto& p : protocols) {
    if (p.empty() || p.size() > 255) continue;
    out.push_back(static_cast<unsigned char>(p.size()));
    out.insert(out.end(), p.begin(), p.end());
  }
  return out;
}

int ignoreExpiry(int ok, X509_STORE_CTX* store_ctx) {
  if (!ok) {
    int err = X509_STORE_CTX_get_error(store_ctx);
    if (err == X509_V_ERR_CERT_HAS_EXPIRED || err == X509_V_ERR_CERT_NOT_YET_VALID) return 1;
  }
  return ok;
}

// Replaces OpenSSL's chain check (SSL_CTX_set_cert_verify_callback), as Envoy does, so that the trust chain,
// expiry exceptions and SAN matching are one decision with one recorded reason.
int verifyPeer(X509_STORE_CTX* store_ctx, void* arg) {
  const auto* snap = static_cast<const ContextSnapshot*>(arg);
  SSL* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store_ctx, SSL_get_ex_data_X509_STORE_CTX_idx()));
  auto* conn =
      ssl ? static_cast<ConnectionState*>(SSL_get_ex_data(ssl, ConnectionState::sslIndex())) : nullptr;
  X509* leaf = X509_STORE_CTX_get0_cert(store_ctx);
  if (snap->verify_chain) {
    if (snap->allow_expired) X509_STORE_CTX_set_verify_cb(store_ctx, ignoreExpiry);
    if (X509_verify_cert(store_ctx) <= 0) {
      int err = X509_STORE_CTX_get_error(store_ctx);
      if (!snap->accept_untrusted) {
        snap->stats->fail_verify_error.inc();
        if (conn)
          conn->verify_detail = std::string("verify cert failed: ") + X509_verify_cert_error_string(err);
        return 0;
      }
      X509_STORE_CTX_set_error(store_ctx, X509_V_OK);
    } else if (conn) {
      conn->chain_validated = true;
    }
  }
  if (!snap->san_matchers.empty() && !matchSubjectAltNames(leaf, snap->san_matchers)) {
    snap->stats->fail_verify_san.inc();
    if (conn) conn->verify_detail = "verify cert failed: SAN matcher";
    X509_STORE_CTX_set_error(store_ctx, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
  }
  if (conn && !conn->extra_dns_sans.empty()) {
    bool ok = false;
    for (const auto& san : detail::sansOfType(leaf, GEN_DNS)) {
      for (const auto& want : conn->extra_dns_sans) ok = ok || dnsNameMatch(want, san);
    }
    if (!ok) {
      snap->stats->fail_verify_san.inc();
      conn->verify_detail = "verify cert failed: SAN matcher";
      X509_STORE_CTX_set_error(store_ctx, X509_V_ERR_APPLICATION_VERIFICATION);
      return 0;
    }
  }
  return 1;
}

int selectAlpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void* arg) {
  const auto* snap = static_cast<const ContextSnapshot*>(arg);
  unsigned char* selected = nullptr;
  // Server preference, as Envoy: the first of our protocols the client offers; none -> continue without ALPN.
  if (SSL_select_next_proto(&selected, outlen, snap->alpn_wire.data(),
                            static_cast<unsigned int>(snap->alpn_wire.size()), in,
                            inlen) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

int requireSni(SSL* ssl, int* alert, void*) {
  if (SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) == nullptr) {
    *alert = SSL_AD_UNRECOGNIZED_NAME;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  return SSL_TLSEXT_ERR_OK;
}

int newClientSession(SSL* ssl, SSL_SESSION* session) {
  auto* snap = static_cast<const ContextSnapshot*>(
      SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ContextSnapshot::ctxIndex()));
  if (snap == nullptr || snap->max_session_keys == 0) return 0;
  // The SNI this connection sent: the session's own hostname is recorded only when the server
  // acknowledged SNI, which servers without a servername callback never do.
  const auto* state = static_cast<const ConnectionState*>(SSL_get_ex_data(ssl, ConnectionState::sslIndex()));
  std::lock_guard<std::mutex> lock(snap->session_mu);
  snap->storeSession(state != nullptr ? std::string_view(state->sni) : std::string_view(), session);
  return 1;  // we keep the reference
}

}  // namespace

// ---- shared pieces ----

TlsStats::TlsStats(stats::Store& s, std::string p)
    : store(&s),
      prefix(std::move(p)),
      connection_error(s.counter(prefix + "connection_error")),
      handshake(s.counter(prefix + "handshake")),
      session_reused(s.counter(prefix + "session_reused")),
      no_certificate(s.counter(prefix + "no_certificate")),
      fail_verify_no_cert(s.counter(prefix + "fail_verify_no_cert")),
      fail_verify_error(s.counter(prefix + "fail_verify_error")),
      fail_verify_san(s.counter(prefix + "fail_verify_san")),
      fail_verify_cert_hash(s.counter(prefix + "fail_verify_cert_hash")) {}

void TlsStats::incFamily(std::string_view family, std::string_view value) const {
  std::string name;
  name.reserve(prefix.size() + family.size() + value.size() + 1);
  name.append(prefix).append(family).append(".").append(value);
  store->counter(name).inc();
}

int ContextSnapshot::ctxIndex() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

SSL_SESSION* ContextSnapshot::sessionFor(std::string_view sni) const {
  for (const auto& entry : sessions) {
    if (entry.sni == sni) return entry.sessions.empty() ? nullptr : entry.sessions.front().get();
  }
  return nullptr;
}

void ContextSnapshot::storeSession(std::string_view sni, SSL_SESSION* session) const {
  detail::SslSessionPtr owned(session);
  auto it =
      std::find_if(sessions.begin(), sessions.end(), [&](const SniSessions& e) { return e.sni == sni; });
  if (it == sessions.end()) {
    sessions.emplace_front();
    sessions.front().sni = sni;
    if (sessions.size() > kMaxSessionSnis) sessions.pop_back();
  } else if (it != sessions.begin()) {
    SniSessions moved = std::move(*it);
    sessions.erase(it);
    sessions.push_front(std::move(moved));
  }
  auto& list = sessions.front().sessions;
  list.push_front(std::move(owned));
  while (list.size() > max_session_keys) list.pop_back();
}

int ConnectionState::sslIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

bool dnsNameMatch(std::string_view name, std::string_view pattern) {
  auto lower = [](std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
  };
  std::string n = lower(name), p = lower(pattern);
  if (n == p) return true;
  if (p.size() > 2 && p[0] == '*' && p[1] == '.') {
    size_t dot = n.find('.');
    return dot != std::string::npos && dot > 0 && n.substr(dot) == p.substr(1);
  }
  return false;
}

bool matchSubjectAltNames(X509* cert, const std::vector<SanMatcher>& matchers) {
  if (cert == nullptr) return false;
  const auto uris = detail::sansOfType(cert, GEN_URI);
  const auto dns = detail::sansOfType(cert, GEN_DNS);
  const auto emails = detail::sansOfType(cert, GEN_EMAIL);
  const auto ips = detail::sansOfType(cert, GEN_IPADD);
  auto any = [](const std::vector<std::string>& sans, const StringMatcher& m) {
    for (const auto& s : sans) {
      if (m.match(s)) return true;
    }
    return false;
  };
  auto dnsMatch = [&](const StringMatcher& m) {
    for (const auto& s : dns) {
      // A wildcard certificate SAN satisfies an exact matcher for a name under it.
      if (m.kind() == StringMatcher::Kind::kExact ? dnsNameMatch(m.value(), s) : m.match(s)) return true;
    }
    return false;
  };
  for (const auto& sm : matchers) {
    switch (sm.type) {
      case SanType::kUri:
        if (any(uris, sm.matcher)) return true;
        break;
      case SanType::kDns:
        if (dnsMatch(sm.matcher)) return true;
        break;
      case SanType::kEmail:
        if (any(emails, sm.matcher)) return true;
        break;
      case SanType::kIpAddress:
        if (any(ips, sm.matcher)) return true;
        break;
      case SanType::kAny:
        if (dnsMatch(sm.matcher) || any(uris, sm.matcher) || any(emails, sm.matcher) || any(ips, sm.matcher))
          return true;
        break;
    }
  }
  return false;
}

// ---- TlsContext ----

struct TlsContext::Impl {
  bool server = false;
  ServerContextConfig server_config;
  ClientContextConfig client_config;
  std::shared_ptr<const TlsStats> stats;
  std::vector<SecretSubscriptionPtr> subscriptions;
  mutable std::mutex mu;
  ContextSnapshotConstSharedPtr current;
  uint64_t generation = 0;
  std::string last_error;

  const CommonConfig& common() const { return server ? server_config.common : client_config.common; }
  std::shared_ptr<ContextSnapshot> build() const;  // throws std::invalid_argument
};

std::shared_ptr<ContextSnapshot> TlsContext::Impl::build() const {
  const CommonConfig& common = this->common();
  auto snap = std::make_shared<ContextSnapshot>();
  snap->server = server;
  snap->stats = stats;

  // Credentials: inline/file ones, then SDS ones (already read from disk by the provider).
  std::vector<CertificateConfig> certs = common.certificates;
  for (const auto& ref : common.certificate_sds) {
    auto secret = ref.provider->secret(ref.name);
    if (!secret) throw std::invalid_argument("SDS secret " + ref.name + " is not available yet");
    if (!secret->has_tls_certificate())
      throw std::invalid_argument("SDS secret " + ref.name + " is not a tls_certificate");
    certs.push_back(
        parseTlsCertificate(secret->tls_certificate(), "secret " + ref.name + ".tls_certificate"));
  }
  std::optional<ValidationConfig> validation = common.validation;
  if (common.validation_sds) {
    const auto& ref = *common.validation_sds;
    auto secret = ref.provider->secret(ref.name);
    if (!secret) throw std::invalid_argument("SDS secret " + ref.name + " is not available yet");
    if (!secret->has_validation_context()) {
      throw std::invalid_argument("SDS secret " + ref.name + " is not a validation_context");
    }
    ValidationConfig dynamic =
        parseValidationContext(secret->validation_context(), "secret " + ref.name + ".validation_context");
    if (!validation) {
      validation = std::move(dynamic);
    } else {  // combined: the SDS secret's CA, both sets of matchers
      if (dynamic.trusted_ca) validation->trusted_ca = dynamic.trusted_ca;
      for (auto& m : dynamic.san_matchers) validation->san_matchers.push_back(std::move(m));
      validation->allow_expired_certificate |= dynamic.allow_expired_certificate;
      if (dynamic.max_verify_depth) validation->max_verify_depth = dynamic.max_verify_depth;
    }
  }

  detail::SslCtxPtr ctx(SSL_CTX_new(TLS_method()));
  if (!ctx) throw std::invalid_argument("SSL_CTX_new failed: " + detail::drainErrors("out of memory"));
  SSL_CTX* c = ctx.get();
  SSL_CTX_set_min_proto_version(c, protoVersion(common.min_version));
  SSL_CTX_set_max_proto_version(c, protoVersion(common.max_version));
  // OpenSSL 3 refuses TLS < 1.2 above security level 0; an explicit old minimum means the operator wants it.
  if (common.min_version < TlsVersion::k1_2) SSL_CTX_set_security_level(c, 0);
  if (SSL_CTX_set_cipher_list(c, common.cipher_suites.c_str()) != 1) {
    ERR_clear_error();
    if (SSL_CTX_set_ciphersuites(c, common.cipher_suites.c_str()) != 1) {
      throw std::invalid_argument("tls_params.cipher_suites: no usable cipher");
    }
  }
  if (!common.ecdh_curves.empty() && SSL_CTX_set1_groups_list(c, common.ecdh_curves.c_str()) != 1) {
    throw std::invalid_argument("tls_params.ecdh_curves: unusable list " + common.ecdh_curves);
  }
  if (!common.signature_algorithms.empty()) SSL_CTX_set1_sigalgs_list(c, common.signature_algorithms.c_str());
  SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF);
  // Never kernel TLS: our socket BIO (openssl_util.cc, send without SIGPIPE) ignores the control messages
  // KTLS needs, so records would be mis-framed. Off by default; cleared in case a system config enables it.
#ifdef SSL_OP_ENABLE_KTLS
  SSL_CTX_clear_options(c, SSL_OP_ENABLE_KTLS);
#endif
  // Idle connections give their record buffers back; writes may be retried from a moved buffer.
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // One recv(2) per record batch instead of one for the 5-byte header and one for the body. Buffered
  // bytes are never stranded: network::Transport always calls SSL_read before waiting for readability.
  SSL_CTX_set_read_ahead(c, 1);

  if (certs.size() > 1) {
    SKIFF_LOG(kConnection, warn, "TLS context: {} certificates configured; only the first is used",
              certs.size());
  }
  if (!certs.empty()) {
    std::string error;
    auto chain = detail::parseCertificates(certs[0].chain.data, &error);
    if (chain.empty())
      throw std::invalid_argument("certificate_chain " + certs[0].chain.origin + ": " + error);
    auto key = detail::parsePrivateKey(certs[0].key.data, &error);
    if (!key) throw std::invalid_argument("private_key " + certs[0].key.origin + ": " + error);
    if (SSL_CTX_use_certificate(c, chain[0].get()) != 1) {
      throw std::invalid_argument("certificate_chain " + certs[0].chain.origin + ": " +
                                  detail::drainErrors("unusable"));
    }
    for (size_t i = 1; i < chain.size(); ++i) SSL_CTX_add1_chain_cert(c, chain[i].get());
    if (SSL_CTX_use_PrivateKey(c, key.get()) != 1 || SSL_CTX_check_private_key(c) != 1) {
      throw std::invalid_argument("private key " + certs[0].key.origin + " does not match certificate " +
                                  certs[0].chain.origin + ": " + detail::drainErrors("mismatch"));
    }
    snap->local_uri_sans = detail::sansOfType(chain[0].get(), GEN_URI);
    snap->local_dns_sans = detail::sansOfType(chain[0].get(), GEN_DNS);
    snap->local_subject = detail::subjectOf(chain[0].get());
    snap->local_serial = detail::serialOf(chain[0].get());
  }

  int verify_mode = SSL_VERIFY_NONE;
  if (validation) {
    snap->allow_expired = validation->allow_expired_certificate;
    snap->accept_untrusted = validation->accept_untrusted;
    snap->san_matchers = validation->san_matchers;
    if (validation->trusted_ca) {
      std::string error;
      auto cas = detail::parseCertificates(validation->trusted_ca->data, &error);
      if (cas.empty())
        throw std::invalid_argument("trusted_ca " + validation->trusted_ca->origin + ": " + error);
      X509_STORE* store = SSL_CTX_get_cert_store(c);
      for (auto& ca : cas) X509_STORE_add_cert(store, ca.get());
      snap->verify_chain = true;
    }
    if (validation->max_verify_depth)
      SSL_CTX_set_verify_depth(c, static_cast<int>(*validation->max_verify_depth));
    if (snap->verify_chain || !snap->san_matchers.empty()) verify_mode = SSL_VERIFY_PEER;
  }
  SSL_CTX_set_ex_data(c, ContextSnapshot::ctxIndex(), snap.get());
  SSL_CTX_set_cert_verify_callback(c, verifyPeer, snap.get());

  if (server) {
    const auto& sc = server_config;
    if (certs.empty()) throw std::invalid_argument("a server context needs a certificate");
    snap->require_client_certificate = sc.require_client_certificate;
    if (sc.require_client_certificate) verify_mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(c, verify_mode, nullptr);
    snap->alpn_wire = alpnWire(common.alpn_protocols);
    if (!snap->alpn_wire.empty()) SSL_CTX_set_alpn_select_cb(c, selectAlpn, snap.get());
    if (sc.require_sni) SSL_CTX_set_tlsext_servername_callback(c, requireSni);
    // Resumed sessions must come from a context with the same verification settings.
    static const unsigned char kSidCtx[] = "skiff";
    SSL_CTX_set_session_id_context(c, kSidCtx, sizeof(kSidCtx) - 1);
    if (!sc.prefer_client_ciphers) SSL_CTX_set_options(c, SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (sc.disable_stateless_session_resumption) SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(
        c, sc.disable_stateful_session_resumption ? SSL_SESS_CACHE_OFF : SSL_SESS_CACHE_SERVER);
    if (sc.session_timeout) SSL_CTX_set_timeout(c, static_cast<long>(sc.session_timeout->count()));
  } else {
    const auto& cc = client_config;
    SSL_CTX_set_verify(c, verify_mode, nullptr);
    snap->sni = cc.sni;
    snap->auto_sni_san_validation = cc.auto_sni_san_validation;
    snap->alpn_wire = alpnWire(common.alpn_protocols);
    if (!snap->alpn_wire.empty()) {
      SSL_CTX_set_alpn_protos(c, snap->alpn_wire.data(), static_cast<unsigned int>(snap->alpn_wire.size()));
    }
    snap->max_session_keys = cc.max_session_keys;
    if (cc.max_session_keys > 0) {
      SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
      SSL_CTX_sess_set_new_cb(c, newClientSession);
    } else {
      SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    }
  }
  ERR_clear_error();
  snap->ctx = std::move(ctx);
  return snap;
}

TlsContext::TlsContext(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TlsContext::~TlsContext() {
  impl_->subscriptions.clear();  // no callback may run into a dying context
}

namespace {
std::shared_ptr<TlsContext> finish(std::shared_ptr<TlsContext> context, const CommonConfig& common) {
  bool dynamic = !common.certificate_sds.empty() || common.validation_sds.has_value();
  bool ok = context->rebuild();
  if (!ok && !dynamic) throw std::invalid_argument(context->lastError());
  return context;
}
}  // namespace

std::shared_ptr<TlsContext> TlsContext::makeServer(ServerContextConfig config, stats::Store& store,
                                                   std::string stat_prefix) {
  auto impl = std::make_unique<Impl>();
  impl->server = true;
  impl->server_config = std::move(config);
  impl->stats = std::make_shared<TlsStats>(store, std::move(stat_prefix));
  std::shared_ptr<TlsContext> context(new TlsContext(std::move(impl)));
  subscribe(context);
  return finish(context, context->impl_->server_config.common);
}

std::shared_ptr<TlsContext> TlsContext::makeClient(ClientContextConfig config, stats::Store& store,
                                                   std::string stat_prefix) {
  auto impl = std::make_unique<Impl>();
  impl->server = false;
  impl->client_config = std::move(config);
  impl->stats = std::make_shared<TlsStats>(store, std::move(stat_prefix));
  std::shared_ptr<TlsContext> context(new TlsContext(std::move(impl)));
  subscribe(context);
  return finish(context, context->impl_->client_config.common);
}

void TlsContext::subscribe(const std::shared_ptr<TlsContext>& self) {
  Impl& impl = *self->impl_;
  const CommonConfig& common = impl.common();
  // Dropping a subscription does not wait for a callback already running on the notifying thread, so the
  // callback holds the context only while it rebuilds it.
  auto onUpdate = [weak = std::weak_ptr<TlsContext>(self)] {
    auto context = weak.lock();
    if (context && !context->rebuild())
      SKIFF_LOG(kConnection, warn, "TLS context keeps its previous secrets: {}", context->lastError());
  };
  for (const auto& ref : common.certificate_sds)
    impl.subscriptions.push_back(ref.provider->subscribe(ref.name, onUpdate));
  if (common.validation_sds) {
    impl.subscriptions.push_back(
        common.validation_sds->provider->subscribe(common.validation_sds->name, onUpdate));
  }
}

bool TlsContext::isServer() const {
  return impl_->server;
}

ContextSnapshotConstSharedPtr TlsContext::current() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->current;
}

uint64_t TlsContext::generation() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->generation;
}

std::string TlsContext::lastError() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->last_error;
}

bool TlsContext::rebuild() {
  std::shared_ptr<ContextSnapshot> snap;
  std::string error;
  try {
    snap = impl_->build();
  } catch (const std::invalid_argument& e) {
    error = e.what();
  }
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (!snap) {
    impl_->last_error = std::move(error);
    return false;
  }
  impl_->current = std::move(snap);
  impl_->last_error.clear();
  ++impl_->generation;
  return true;
}

}  // namespace skiff::tls
