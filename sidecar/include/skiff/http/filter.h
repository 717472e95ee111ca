// The HTTP filter interface: one shape for native, Lua, WASM and ext_proc filters.
//
// Vocabulary: "decode" is the request path (downstream → upstream), "encode" the response path. A filter
// sees headers, then zero or more data chunks, then optional trailers; `end_stream` marks the last call of
// a direction. Filters run on their connection's worker thread only; callbacks must be invoked there too.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "skiff/http/header_map.h"
#include "skiff/http/stream_info.h"

namespace asio {
class io_context;
}
namespace skiff::router {
struct RouteEntry;
}
namespace skiff::upstream {
class ThreadLocalClusterManager;
class ConnPoolMap;
}  // namespace skiff::upstream

namespace skiff::http {

// Body bytes. A plain string keeps the interface simple for script filters; the codecs move buffers
// through the chain instead of copying them.
using Buffer = std::string;

enum class HeadersStatus {
  kContinue,  // pass to the next filter
  kStop,      // hold the headers; the filter calls continueDecoding()/continueEncoding() or answers locally
};

enum class DataStatus {
  kContinue,          // pass this chunk on
  kStopAndBuffer,     // keep this chunk in the stream's buffer (up to the buffer limit, then 413/500)
  kStopAndWatermark,  // keep it, and stop reading from the peer while the buffer is over the limit
};

enum class TrailersStatus { kContinue, kStop };

class StreamCallbacks {
 public:
  virtual ~StreamCallbacks() = default;
  virtual StreamInfo& streamInfo() = 0;
  // The route chosen for the request headers, or nullptr (no route). Cached until clearRouteCache().
  virtual const router::RouteEntry* route() = 0;
  virtual void clearRouteCache() = 0;
  // A filter changed request header `name` (`version_before`: the headers' version() before the change).
  // Envoy clears the route cache on such a change; the filter manager skips that when the route cannot
  // depend on it (no route matcher reads `name` and the headers were otherwise unchanged since the route
  // was chosen). Default: clearRouteCache().
  virtual void requestHeaderChanged(std::string_view name, uint64_t version_before) { clearRouteCache(); }
  virtual asio::io_context& dispatcher() = 0;
  virtual upstream::ThreadLocalClusterManager& clusterManager() = 0;
  virtual upstream::ConnPoolMap& connPools() = 0;
  virtual uint64_t streamId() const = 0;
  // Answers the request locally (any filter, either direction before response headers went out): runs
  // the encoder filters with a generated response. `details` goes to %RESPONSE_CODE_DETAILS%.
  virtual void sendLocalReply(uint32_t status, std::string_view body, std::string_view details,
                              const std::function<void(HeaderMap&)>& modify_headers = nullptr) = 0;
  // Aborts the stream (closes the downstream connection for HTTP/1, RST_STREAM for HTTP/2).
  virtual void resetStream() = 0;
};

class DecoderFilterCallbacks : public virtual StreamCallbacks {
 public:
  // Resumes decoding after a filter returned kStop/kStopAndBuffer: the held headers, buffered body and
  // trailers continue to the next filter.
  virtual void continueDecoding() = 0;
  virtual HeaderMap& requestHeaders() = 0;
  // Body buffered by this filter's kStopAndBuffer returns so far (nullptr if none).
  virtual Buffer* decodingBuffer() = 0;
  // The same buffer, created empty if this filter holds none: a filter holding the headers may add a body
  // where there was none (ext_proc CONTINUE_AND_REPLACE); the headers then go on without end_stream.
  // nullptr where unsupported.
  virtual Buffer* addDecodingBuffer() { return decodingBuffer(); }
  // Sends `data` on to the filters after this one as this filter's own body chunk (ext_proc's full-duplex
  // body): headers this filter held go on first; `end_stream` ends the stream for the later filters
  // (request trailers then follow). `data` is consumed. No-op where unsupported.
  virtual void injectDecodedData(Buffer& data, bool end_stream) {}
  // Used by terminal filters (the router) to produce the response; it enters the encoder filters.
  virtual void encodeHeaders(std::unique_ptr<HeaderMap> headers, bool end_stream) = 0;
  virtual void encodeData(Buffer& data, bool end_stream) = 0;
  virtual void encodeTrailers(std::unique_ptr<HeaderMap> trailers) = 0;
  // Flow control of the response path: true while the downstream side cannot take more data; the
  // terminal filter then stops reading from upstream until onDownstreamWritable fires.
  virtual bool downstreamBackedUp() const = 0;
  virtual void onDownstreamWritable(std::function<void()> cb) = 0;
  virtual uint32_t bufferLimit() const = 0;
  // Flow control of the request path: a terminal filter whose upstream cannot keep up pauses reading
  // from the downstream connection, and resumes it once drained.
  virtual void pauseDownstreamReading(bool paused) = 0;
};

class EncoderFilterCallbacks : public virtual StreamCallbacks {
 public:
  virtual void continueEncoding() = 0;
  virtual HeaderMap& responseHeaders() = 0;
  virtual Buffer* encodingBuffer() = 0;
  // As addDecodingBuffer, for the response.
  virtual Buffer* addEncodingBuffer() { return encodingBuffer(); }
  virtual void injectEncodedData(Buffer& data, bool end_stream) {}
};

class StreamDecoderFilter {
 public:
  virtual ~StreamDecoderFilter() = default;
  virtual void setDecoderFilterCallbacks(DecoderFilterCallbacks& callbacks) = 0;
  virtual HeadersStatus decodeHeaders(HeaderMap& headers, bool end_stream) = 0;
  virtual DataStatus decodeData(Buffer& data, bool end_stream) { return DataStatus::kContinue; }
  virtual TrailersStatus decodeTrailers(HeaderMap& trailers) { return TrailersStatus::kContinue; }
  // The downstream side has gone away or the stream was reset; release async work (timers, upstream
  // requests).
  virtual void onDestroy() {}
};

class StreamEncoderFilter {
 public:
  virtual ~StreamEncoderFilter() = default;
  virtual void setEncoderFilterCallbacks(EncoderFilterCallbacks& callbacks) = 0;
  virtual HeadersStatus encodeHeaders(HeaderMap& headers, bool end_stream) = 0;
  virtual DataStatus encodeData(Buffer& data, bool end_stream) { return DataStatus::kContinue; }
  virtual TrailersStatus encodeTrailers(HeaderMap& trailers) { return TrailersStatus::kContinue; }
  virtual void onDestroy() {}
};

// A filter on both paths.
class StreamFilter : public StreamDecoderFilter, public StreamEncoderFilter {
 public:
  void onDestroy() override {}
};

using StreamDecoderFilterPtr = std::unique_ptr<StreamDecoderFilter>;
using StreamEncoderFilterPtr = std::unique_ptr<StreamEncoderFilter>;

// Builds filters for each new stream. Created once per config (validated proto, stats resolved), shared
// by all workers, so it must be immutable or thread-safe; per-worker state is the factory's own business.
class FilterChainBuilder {
 public:
  virtual ~FilterChainBuilder() = default;
  virtual void addDecoderFilter(std::unique_ptr<StreamDecoderFilter> filter) = 0;
  virtual void addEncoderFilter(std::unique_ptr<StreamEncoderFilter> filter) = 0;
  // One object on both paths; the chain owns it.
  virtual void addStreamFilter(std::unique_ptr<StreamFilter> filter) = 0;
};

class FilterFactory {
 public:
  virtual ~FilterFactory() = default;
  virtual void createFilters(FilterChainBuilder& builder) const = 0;
  // False for header-only filters, so chains of them never walk body chunks.
  virtual bool wantsBody() const { return true; }
};

using FilterFactorySharedPtr = std::shared_ptr<const FilterFactory>;

}  // namespace skiff::http
