// Runs one stream's HTTP filters in both directions, with pause/resume and buffering.
//
// Decoder filters run in configuration order, encoder filters in reverse. Each direction keeps, per
// filter, whether the headers went past it and the body it holds (kStopAndBuffer). A new chunk always
// enters at the first filter; a stopped filter still sees new chunks (Envoy's semantics), and when it
// continues, the headers it held, then its held body, then the trailers move on.
//
// The per-filter entries (the callbacks objects the filters hold) come from a per-thread free list and the
// usual chain fits the in-place pointer arrays, so setting up a chain allocates nothing beyond the filters.
#pragma once

#include <cstddef>
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

  // The filters' route calls (the stream's cached route). The stream's route cache must be filled and
  // cleared only through these, so that the manager knows when the cached route matches the headers.
  const router::RouteEntry* route();
  void clearRouteCache();
  // Envoy's clear-on-change, skipped when the cached route provably cannot change: it was chosen from
  // the headers as they were just before this change (version_before) and no route reads `name`.
  void requestHeaderChanged(std::string_view name, uint64_t version_before);

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

  // Entries in the order added, owned. The first kInlineEntries pointers live in place, so a usual
  // chain needs no vector; the entries themselves come from a per-thread free list (see the .cc).
  // Members are defined in the .cc, where T is complete.
  static constexpr uint32_t kInlineEntries = 3;
  template <class T>
  class EntryList {
   public:
    EntryList() = default;
    EntryList(const EntryList&) = delete;
    EntryList& operator=(const EntryList&) = delete;
    ~EntryList();
    void push(T* entry);
    T& operator[](size_t i) { return *(i < kInlineEntries ? inline_[i] : spill_[i - kInlineEntries]); }
    size_t size() const { return size_; }

   private:
    T* inline_[kInlineEntries] = {};
    T** spill_ = nullptr;  // entries past kInlineEntries
    uint32_t size_ = 0;
    uint32_t spill_capacity_ = 0;
  };

  void runDecoders(size_t from, http::Buffer* data, bool data_end);
  void injectDecoded(DecoderEntry& e, http::Buffer& data, bool end_stream);
  void injectEncoded(EncoderEntry& e, http::Buffer& data, bool end_stream);
  void continueDecoding(size_t index);
  void runEncoders(size_t from, http::Buffer* data, bool data_end);
  void continueEncoding(size_t index);
  void raiseDecoderWatermark(DecoderEntry& e);
  void lowerDecoderWatermark(DecoderEntry& e);
  void raiseEncoderWatermark(EncoderEntry& e);
  void lowerEncoderWatermark(EncoderEntry& e);
  void runWatermarkWaiters();
  // Encoders run in reverse configuration order; entries are stored in configuration order.
  EncoderEntry& encoderAt(size_t run_index) { return encoders_[encoders_.size() - 1 - run_index]; }
  bool overLimit(size_t held) const { return held > buffer_limit_; }

  http::StreamCallbacks& stream_;
  FilterManagerSink& sink_;
  uint32_t buffer_limit_;
  EntryList<DecoderEntry> decoders_;
  EntryList<EncoderEntry> encoders_;  // in configuration order (see encoderAt)

  std::unique_ptr<http::HeaderMap> request_headers_;
  std::unique_ptr<http::HeaderMap> request_trailers_;
  bool request_end_ = false;  // the downstream request is complete (end_stream seen)

  std::unique_ptr<http::HeaderMap> response_headers_;
  std::unique_ptr<http::HeaderMap> response_trailers_;
  bool response_end_ = false;
  bool response_started_ = false;   // headers reached the sink
  bool response_complete_ = false;  // end_stream reached the sink
  bool destroyed_ = false;
  bool route_pending_ = true;  // the next route() computes the route from the current headers
  bool route_fresh_ = false;   // the cached route was chosen from request headers at route_version_
  uint64_t route_version_ = 0;

  // Encoder filters holding more than the buffer limit after kStopAndWatermark: while any does, the
  // terminal filter sees the downstream as backed up (and stops reading upstream) until that filter lets
  // its body go; the terminal's writable callbacks wait here.
  uint32_t encoder_watermarks_ = 0;
  // Decoder filters holding more than the buffer limit after kStopAndWatermark: downstream reading is
  // paused while any does.
  uint32_t decoder_watermarks_ = 0;
  std::vector<std::function<void()>> watermark_waiters_;

  std::function<bool()> backed_up_;
  std::function<void(std::function<void()>)> on_writable_;
  std::function<void(bool)> pause_reading_;

  friend struct DecoderEntry;
  friend struct EncoderEntry;
};

}  // namespace skiff::server
