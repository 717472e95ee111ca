// The crypto part of Lua's stream handle API (Envoy's importPublicKey / verifySignature).
#pragma once

extern "C" {
#include <lua.h>
}

namespace skiff::filters::lua {

// importPublicKey(keyder, keyderLength) and verifySignature(hashFunction, pubkey, signature, signatureLength,
// data, dataLength), argument 1 being the (already checked) stream handle.
int importPublicKey(lua_State* L);
int verifySignature(lua_State* L);
// Registers the public key object's metatable and the weak DER -> key table in the registry.
void installCrypto(lua_State* L);

}  // namespace skiff::filters::lua
