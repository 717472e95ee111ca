// Proxy-Wasm ABI constants (WasmResult, map/buffer/stream types, callback statuses) with the spec's values.
#pragma once

#include <cstdint>

namespace skiff::wasm {

enum class WasmResult : uint32_t {
  kOk = 0,
  kNotFound = 1,
  kBadArgument = 2,
  kSerializationFailure = 3,
  kParseFailure = 4,
  kBadExpression = 5,
  kInvalidMemoryAccess = 6,
  kEmpty = 7,
  kCasMismatch = 8,
  kResultMismatch = 9,
  kInternalFailure = 10,
  kBrokenConnection = 11,
  kUnimplemented = 12,
};

enum class AbiVersion { kUnknown, k0_1_0, k0_2_0, k0_2_1 };

enum class MapType : uint32_t {
  kRequestHeaders = 0,
  kRequestTrailers = 1,
  kResponseHeaders = 2,
  kResponseTrailers = 3,
  kGrpcInitialMetadata = 4,
  kGrpcTrailingMetadata = 5,
  kHttpCallResponseHeaders = 6,
  kHttpCallResponseTrailers = 7,
};
inline constexpr uint32_t kMaxMapType = 7;

enum class BufferType : uint32_t {
  kHttpRequestBody = 0,
  kHttpResponseBody = 1,
  kDownstreamData = 2,
  kUpstreamData = 3,
  kHttpCallResponseBody = 4,
  kGrpcReceiveBuffer = 5,
  kVmConfiguration = 6,
  kPluginConfiguration = 7,
  kCallData = 8,
};
inline constexpr uint32_t kMaxBufferType = 8;

enum class StreamType : uint32_t { kRequest = 0, kResponse = 1, kDownstream = 2, kUpstream = 3 };
inline constexpr uint32_t kMaxStreamType = 3;

enum class MetricType : uint32_t { kCounter = 0, kGauge = 1, kHistogram = 2 };

// proxy_log levels: trace 0 .. critical 5.
inline constexpr uint32_t kMaxLogLevel = 5;

// WASI errno values used by the host.
namespace wasi {
inline constexpr uint32_t kSuccess = 0;
inline constexpr uint32_t kBadF = 8;
inline constexpr uint32_t kFault = 21;
inline constexpr uint32_t kInval = 28;
inline constexpr uint32_t kNoEnt = 44;
inline constexpr uint32_t kNoSys = 52;
inline constexpr uint32_t kNotSup = 58;
}  // namespace wasi

}  // namespace skiff::wasm
