// Shared helpers for the Wasm unit tests: test modules from the build tree, and a recording StreamContext.
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "skiff/http/header_map.h"
#include "wasm/plugin.h"

namespace skiff::wasm::testing {

inline std::string modulePath(const std::string& name) {
  return std::string(SKIFF_WASM_DIR) + "/" + name + ".wasm";
}

// The module's bytes, or "" (the caller skips) when the wasm toolchain was missing at build time.
inline std::string readModule(const std::string& name) {
  std::ifstream in(modulePath(name), std::ios::binary);
  if (!in) return {};
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

#define SKIFF_REQUIRE_MODULE(var, name)                             \
  const std::string var = ::skiff::wasm::testing::readModule(name); \
  if (var.empty()) GTEST_SKIP() << "wasm test module " << name << " not built (no clang-14/wasm-ld)"

class FakeStreamContext : public StreamContext {
 public:
  http::HeaderMap* headerMap(MapType type) override {
    switch (type) {
      case MapType::kRequestHeaders:
        return &request_headers;
      case MapType::kResponseHeaders:
        return have_response ? &response_headers : nullptr;
      default:
        return nullptr;
    }
  }
  http::Buffer* buffer(BufferType type) override {
    return type == BufferType::kHttpRequestBody && have_body ? &request_body : nullptr;
  }
  void sendLocalResponse(uint32_t status, std::string_view details, std::string_view body,
                         std::vector<std::pair<std::string, std::string>> headers) override {
    reply_status = status;
    reply_details = std::string(details);
    reply_body = std::string(body);
    reply_headers = std::move(headers);
  }
  WasmResult continueStream(StreamType type) override {
    continued.push_back(static_cast<uint32_t>(type));
    return WasmResult::kOk;
  }
  WasmResult closeStream(StreamType type) override {
    closed.push_back(static_cast<uint32_t>(type));
    return WasmResult::kOk;
  }
  std::optional<std::string> property(const std::vector<std::string_view>& path) override {
    if (path.size() == 2 && path[0] == "request" && path[1] == "path") return std::string("/test");
    if (path.size() == 1 && path[0] == last_set.first) return last_set.second;
    return std::nullopt;
  }
  WasmResult setProperty(std::string_view path, std::string_view value) override {
    last_set = {std::string(path), std::string(value)};
    return WasmResult::kOk;
  }

  http::HeaderMap request_headers, response_headers;
  bool have_response = false;
  http::Buffer request_body;
  bool have_body = false;
  uint32_t reply_status = 0;
  std::string reply_details, reply_body;
  std::vector<std::pair<std::string, std::string>> reply_headers;
  std::vector<uint32_t> continued, closed;
  std::pair<std::string, std::string> last_set;
};

// Copies `s` into guest memory through the module's allocator and returns its address (0, with a test
// failure, when the module could not allocate).
inline uint32_t putGuestString(PluginVm& plugin, std::string_view s) {
  auto p = plugin.vm().callByName("proxy_on_memory_allocate", {static_cast<uint32_t>(s.size() + 1)});
  const uint32_t at = p.value_or(0);
  EXPECT_NE(at, 0u) << "proxy_on_memory_allocate failed: " << plugin.vm().error();
  if (at != 0) EXPECT_TRUE(plugin.vm().write(at, s.data(), static_cast<uint32_t>(s.size())));
  return at;
}

}  // namespace skiff::wasm::testing
