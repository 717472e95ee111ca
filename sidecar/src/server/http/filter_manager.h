// Runs one stream's HTTP filters in both directions, with pause/resume and buffering.
//
// Decoder filters run in configuration order, encoder filters in reverse. Each direction keeps, per
// filter, whether the headers went past it and the body it holds (kStopAndBuffer). A new chunk always
// enters at the first filter; a stopped filter still sees new chunks (Envoy's semantics), and when it
// continues, the headers it held, then its held body, then the trailers move on.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "skiff/http/filter.h"

namespace skiff::server {

// What the connection manager does at the ends of the chain.
class FilterManagerSink {
 public:
  virtual ~FilterManagerSink() = default;
  // The response left the last encoder filter; write it downstream.
  virtual void writeHeaders(http::HeaderMap& headers, bool end_stream) = 0;
  virtual void writeData(http::Buffer& data, bool end_stream) = 0;
  virtual void writeTrailers(http::HeaderMap& trailers) = 0;
};

class FilterManager : public http::FilterChainBuilder {
 public:
  FilterManager(http::StreamCallbacks& stream, FilterManagerSink& sink, uint32_t buffer_limit);
  ~FilterManager() override;

  // FilterChainBuilder
  void addDecoderFilter(std::unique_ptr<http::StreamDecoderFilter> filter) override;
  void addEncoderFilter(std::unique_ptr<http::StreamEncoderFilter> filter) override;
  void addStreamFilter(std::unique_ptr<http::StreamFilter> filter) override;

  // Request path, from the codec.
  void decodeHeaders(std::unique_ptr<http::HeaderMap> headers, bool end_stream);
  void decodeData(http::Buffer& data, bool end_stream);
  void decodeTrailers(std::unique_ptr<http::HeaderMap> trailers);

  // Response path, from the terminal filter or a local reply.
  void encodeHeaders(std::unique_ptr<http::HeaderMap> headers, bool end_stream);
  void encodeData(http::Buffer& data, bool end_stream);
  void encodeTrailers(std::unique_ptr<http::HeaderMap> trailers);

  http::HeaderMap* requestHeaders() { return request_headers_.get(); }
  http::HeaderMap* responseHeaders() { return response_headers_.get(); }
  const http::HeaderMap* responseTrailers() const { return response_trailers_.get(); }
  bool responseStarted() const { return response_started_; }
  bool responseComplete() const { return response_complete_; }
  // Set by the stream when it is torn down: no filter callback may run after this.
  void destroyFilters();

  // Hooks for the stream's callbacks objects.
  void setBackpressureHooks(std::function<bool()> backed_up,
                            std::function<void(std::function<void()>)> on_writable,
                            std::function<void(bool)> pause_reading) {
    backed_up_ = std::move(backed_up);
    on_writable_ = std::move(on_writable);
    pause_reading_ = std::move(pause_reading);
  }

 private:
  struct DecoderEntry;
  struct EncoderEntry;

  void runDecoders(size_t from, http::Buffer* data, bool data_end);
  void continueDecoding(size_t index);
  void runEncoders(size_t from, http::Buffer* data, bool data_end);
  void continueEncoding(size_t index);
  bool overLimit(size_t held) const { return held > buffer_limit_; }

  http::StreamCallbacks& stream_;
  FilterManagerSink& sink_;
  uint32_t buffer_limit_;
  std::vector<std::unique_ptr<DecoderEntry>> decoders_;
  std::vector<std::unique_ptr<EncoderEntry>> encoders_;  // in run order (reverse of configuration)
  std::vector<std::unique_ptr<http::StreamFilter>> owned_dual_filters_;

  std::unique_ptr<http::HeaderMap> request_headers_;
  std::unique_ptr<http::HeaderMap> request_trailers_;
  bool request_end_ = false;  // the downstream request is complete (end_stream seen)

  std::unique_ptr<http::HeaderMap> response_headers_;
  std::unique_ptr<http::HeaderMap> response_trailers_;
  bool response_end_ = false;
  bool response_started_ = false;   // headers reached the sink
  bool response_complete_ = false;  // end_stream reached the sink
  bool destroyed_ = false;

  std::function<bool()> backed_up_;
  std::function<void(std::function<void()>)> on_writable_;
  std::function<void(bool)> pause_reading_;

  friend struct DecoderEntry;
  friend struct EncoderEntry;
};

}  // namespace skiff::server
