// The SslConnection object Lua scripts get from connection():ssl() and
// streamInfo():downstreamSslConnection().
#include "filters/http/lua/lua_ssl.h"

#include <cstdio>
#include <string>
#include <vector>

#include "skiff/tls/transport.h"

namespace skiff::filters::lua {
namespace {

int sslReturnUpvalue(lua_State* L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  return 1;
}

}  // namespace

int pushSslConnection(lua_State* L, const http::StreamInfo& info) {
  const tls::TlsConnectionInfo* t = info.connection ? info.connection->tls.get() : nullptr;
  if (t == nullptr) {
    lua_pushnil(L);
    return 1;
  }
  lua_createtable(L, 0, 20);
  auto method = [L](const char* name) {
    lua_pushcclosure(L, sslReturnUpvalue, 1);
    lua_setfield(L, -2, name);
  };
  auto text = [&](const char* name, const std::string& value) {
    lua_pushlstring(L, value.data(), value.size());
    method(name);
  };
  auto list = [&](const char* name, const std::vector<std::string>& values) {
    lua_createtable(L, static_cast<int>(values.size()), 0);
    for (size_t i = 0; i < values.size(); ++i) {
      lua_pushlstring(L, values[i].data(), values[i].size());
      lua_rawseti(L, -2, static_cast<int>(i + 1));
    }
    method(name);
  };
  lua_pushboolean(L, t->peer_certificate_presented);
  method("peerCertificatePresented");
  lua_pushboolean(L, t->peer_certificate_validated && !t->session_reused);
  method("peerCertificateValidated");
  list("uriSanLocalCertificate", t->uri_san_local);
  list("uriSanPeerCertificate", t->uri_san_peer);
  list("dnsSansLocalCertificate", t->dns_san_local);
  list("dnsSansPeerCertificate", t->dns_san_peer);
  list("oidsPeerCertificate", {});
  list("oidsLocalCertificate", {});
  text("sha256PeerCertificateDigest", t->sha256_peer_digest);
  text("serialNumberPeerCertificate", t->serial_peer);
  text("issuerPeerCertificate", t->issuer_peer);
  text("subjectPeerCertificate", t->subject_peer);
  text("subjectLocalCertificate", t->subject_local);
  text("urlEncodedPemEncodedPeerCertificate", tls::urlEncodedPemPeerCertificate(*t));
  text("urlEncodedPemEncodedPeerCertificateChain", tls::urlEncodedPemPeerCertificateChain(*t));
  lua_pushnumber(L, static_cast<double>(t->valid_from_peer));
  method("validFromPeerCertificate");
  lua_pushnumber(L, static_cast<double>(t->expiration_peer));
  method("expirationPeerCertificate");
  text("sessionId", "");
  char id[8];
  std::snprintf(id, sizeof(id), "0x%04x", static_cast<unsigned>(t->cipher_id));
  text("ciphersuiteId", id);
  text("ciphersuiteString", t->cipher);
  text("tlsVersion", t->tls_version);
  return 1;
}

}  // namespace skiff::filters::lua
