// Lua's crypto helpers on the stream handle: importPublicKey() and verifySignature() on OpenSSL 3 EVP.
#include "filters/http/lua/lua_crypto.h"

extern "C" {
#include <lauxlib.h>
}

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <cstring>
#include <string>
#include <string_view>

#include "skiff/http/header_map.h"

namespace skiff::filters::lua {
namespace {

std::string_view checkView(lua_State* L, int idx) {
  size_t n = 0;
  const char* s = luaL_checklstring(L, idx, &n);
  return {s, n};
}

// The key object importPublicKey() returns: the parsed key (nullptr when the DER did not parse) and the
// DER bytes that get() returns. Lua's GC frees it (__gc).
struct PublicKey {
  EVP_PKEY* key;
  size_t der_size;
  char der[1];  // der_size bytes follow
};
char g_public_key_mt;    // registry key of the key object's metatable
char g_public_key_keys;  // registry key of a weak table: DER string -> key object (for get() strings)

PublicKey* toPublicKey(lua_State* L, int idx) {
  auto* k = static_cast<PublicKey*>(lua_touserdata(L, idx));
  if (k == nullptr || !lua_getmetatable(L, idx)) return nullptr;
  lua_pushlightuserdata(L, &g_public_key_mt);
  lua_rawget(L, LUA_REGISTRYINDEX);
  const bool same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same ? k : nullptr;
}

int publicKeyGc(lua_State* L) {
  if (PublicKey* k = toPublicKey(L, 1); k != nullptr && k->key != nullptr) {
    EVP_PKEY_free(k->key);
    k->key = nullptr;
  }
  return 0;
}

// get(): the DER string, or nil when the import failed (Envoy's PublicKeyWrapper).
int publicKeyGet(lua_State* L) {
  PublicKey* k = toPublicKey(L, 1);
  if (k == nullptr) return luaL_error(L, "bad self: expected a public key (use ':' to call methods)");
  if (k->key == nullptr) return lua_pushnil(L), 1;
  lua_pushlstring(L, k->der, k->der_size);
  return 1;
}

// A (string, length) argument pair as Envoy takes them: the first `length` bytes of the string.
std::string_view checkBytes(lua_State* L, int idx) {
  const std::string_view s = checkView(L, idx);
  const lua_Number n = luaL_checknumber(L, idx + 1);
  if (!(n >= 0) || n > static_cast<lua_Number>(s.size())) {
    luaL_error(L, "bad argument #%d (length %f is outside the string's %d bytes)", idx, n,
               static_cast<int>(s.size()));
  }
  return s.substr(0, static_cast<size_t>(n));
}

const EVP_MD* hashFunction(std::string_view name) {
  std::string lower(name);
  http::toLowerInPlace(lower);
  if (lower == "sha1") return EVP_sha1();
  if (lower == "sha224") return EVP_sha224();
  if (lower == "sha256") return EVP_sha256();
  if (lower == "sha384") return EVP_sha384();
  if (lower == "sha512") return EVP_sha512();
  return nullptr;
}

int verifyResult(lua_State* L, bool ok, const std::string& error) {
  lua_pushboolean(L, ok);
  if (ok) {
    lua_pushnil(L);
  } else {
    lua_pushlstring(L, error.data(), error.size());
  }
  return 2;
}

}  // namespace

// importPublicKey(keyder, keyderLength): a DER SubjectPublicKeyInfo. A key that does not parse still
// gives an object, whose get() is nil (as Envoy does).
int importPublicKey(lua_State* L) {
  const std::string_view der = checkBytes(L, 2);
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  EVP_PKEY* key = d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size()));
  if (key == nullptr) ERR_clear_error();  // leave no error behind for this thread's TLS code
  auto* k = static_cast<PublicKey*>(lua_newuserdata(L, offsetof(PublicKey, der) + der.size() + 1));
  k->key = key;
  k->der_size = der.size();
  std::memcpy(k->der, der.data(), der.size());
  lua_pushlightuserdata(L, &g_public_key_mt);
  lua_rawget(L, LUA_REGISTRYINDEX);
  lua_setmetatable(L, -2);
  if (key != nullptr) {
    // Remember it by its DER so verifySignature() finds it from the get() string.
    lua_pushlightuserdata(L, &g_public_key_keys);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_pushlstring(L, der.data(), der.size());
    lua_pushvalue(L, -3);
    lua_rawset(L, -3);
    lua_pop(L, 1);
  }
  return 1;
}

// verifySignature(hashFunction, pubkey, signature, signatureLength, data, dataLength) -> ok, error.
// `pubkey` is the string importPublicKey(...):get() returns (Envoy's form) or the key object itself.
int verifySignature(lua_State* L) {
  const std::string_view hash = checkView(L, 2);
  EVP_PKEY* key = nullptr;
  if (PublicKey* k = toPublicKey(L, 3)) {
    key = k->key;
  } else {
    luaL_checkstring(L, 3);
    lua_pushlightuserdata(L, &g_public_key_keys);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, 3);
    lua_rawget(L, -2);
    PublicKey* found = toPublicKey(L, -1);
    if (found == nullptr) return luaL_error(L, "invalid public key");
    key = found->key;  // stays on the stack (anchored) until we return
  }
  const std::string_view signature = checkBytes(L, 4);
  const std::string_view data = checkBytes(L, 6);

  const EVP_MD* md = hashFunction(hash);
  if (md == nullptr) return verifyResult(L, false, std::string(hash) + " is not supported.");
  if (key == nullptr) return verifyResult(L, false, "Failed to initialize digest verify.");
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (ctx == nullptr || EVP_DigestVerifyInit(ctx, nullptr, md, nullptr, key) != 1) {
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return verifyResult(L, false, "Failed to initialize digest verify.");
  }
  const int rc =
      EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                       reinterpret_cast<const unsigned char*>(data.data()), data.size());
  EVP_MD_CTX_free(ctx);
  if (rc == 1) return verifyResult(L, true, {});
  ERR_clear_error();
  // OpenSSL answers a malformed signature with -1 where Envoy's BoringSSL answers 0: report 0 like Envoy.
  return verifyResult(L, false, "Failed to verify digest. Error code: 0");
}

void installCrypto(lua_State* L) {
  // The public key object and the weak DER -> key table verifySignature() looks get() strings up in.
  lua_pushlightuserdata(L, &g_public_key_mt);
  lua_newtable(L);
  lua_newtable(L);
  lua_pushcfunction(L, publicKeyGet);
  lua_setfield(L, -2, "get");
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, publicKeyGc);
  lua_setfield(L, -2, "__gc");
  lua_rawset(L, LUA_REGISTRYINDEX);
  lua_pushlightuserdata(L, &g_public_key_keys);
  lua_newtable(L);
  lua_newtable(L);
  lua_pushliteral(L, "v");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
}

}  // namespace skiff::filters::lua
