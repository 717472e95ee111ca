// HTTP/1.1 serializers: heads, chunks and trailers appended to a std::string.
//
// Header names go out lower-case, as Envoy writes them by default. Pseudo-headers other than the ones mapped
// to the start line and Host are skipped. A header whose name or value holds CR, LF or NUL is dropped: a
// filter (Lua, WASM) must not be able to split the message.
#pragma once

#include <string>
#include <string_view>

#include "skiff/http/header_map.h"

namespace skiff::http1 {

// "<:method> <:path> HTTP/1.1", then "host: <:authority>" first, then the regular headers. A "host" entry is
// skipped when ":authority" exists. CONNECT without ":path" uses ":authority" as the request-target.
void writeRequestHead(const skiff::http::HeaderMap& h, std::string& out);

// "HTTP/1.<version_minor> <:status> <reason>": the standard reason phrase for the code unless `reason` is
// given. A missing or malformed ":status" is written as 500.
void writeResponseHead(const skiff::http::HeaderMap& h, std::string& out, int version_minor = 1,
                       std::string_view reason = {});

// One chunk; nothing for empty data (an empty chunk would end the body).
void writeChunk(std::string_view data, std::string& out);
// "0\r\n", the trailers (may be null), and the final CRLF.
void writeLastChunk(const skiff::http::HeaderMap* trailers, std::string& out);

// The standard reason phrase, or "" for a code without one.
std::string_view reasonPhrase(int code);

}  // namespace skiff::http1
