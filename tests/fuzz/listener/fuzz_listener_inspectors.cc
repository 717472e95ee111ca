// libFuzzer target: the listener inspectors' parsers (TLS ClientHello, HTTP request line / h2c preface)
// read attacker-controlled bytes before any filter chain is chosen; they must never read out of bounds.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "server/listener_filters/http_inspector.h"
#include "server/listener_filters/tls_inspector.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  // Every prefix length a peek could have returned, with a small and the real ceiling.
  for (size_t max : {size_t{64}, skiff::server::kMaxClientHelloBytes}) {
    const auto hello = skiff::server::parseClientHello(input, max);
    if (hello.result == skiff::server::ClientHello::Result::kTls && hello.bytes > size) __builtin_trap();
  }
  skiff::server::detectHttp(input, false);
  skiff::server::detectHttp(input, true);
  return 0;
}
