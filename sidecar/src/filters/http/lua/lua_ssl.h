// The SslConnection object of Lua's stream API (Envoy's method names).
#pragma once

extern "C" {
#include <lua.h>
}

#include "skiff/http/stream_info.h"

namespace skiff::filters::lua {

// Pushes nil on a plaintext connection, else a table whose methods (peerCertificatePresented,
// uriSanPeerCertificate, sha256PeerCertificateDigest, tlsVersion, ...) return the handshake's facts, captured
// when the object is made. sessionId() is "" (not kept); oids*() are empty tables. Returns 1.
int pushSslConnection(lua_State* L, const http::StreamInfo& info);

}  // namespace skiff::filters::lua
