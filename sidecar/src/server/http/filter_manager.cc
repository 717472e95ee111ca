// FilterManager: per-stream iteration over decoder and encoder filters, with pause, resume and buffering.
#include "server/http/filter_manager.h"

namespace skiff::server {

using http::Buffer;
using http::DataStatus;
using http::HeaderMap;
using http::HeadersStatus;
using http::TrailersStatus;

// Forwards the stream-wide callbacks; concrete entries add their direction's methods.
#define SKIFF_FORWARD_STREAM_CALLBACKS                                                  \
  http::StreamInfo& streamInfo() override {                                             \
    return fm.stream_.streamInfo();                                                     \
  }                                                                                     \
  const router::RouteEntry* route() override {                                          \
    return fm.stream_.route();                                                          \
  }                                                                                     \
  void clearRouteCache() override {                                                     \
    fm.stream_.clearRouteCache();                                                       \
  }                                                                                     \
  asio::io_context& dispatcher() override {                                             \
    return fm.stream_.dispatcher();                                                     \
  }                                                                                     \
  upstream::ThreadLocalClusterManager& clusterManager() override {                      \
    return fm.stream_.clusterManager();                                                 \
  }                                                                                     \
  upstream::ConnPoolMap& connPools() override {                                         \
    return fm.stream_.connPools();                                                      \
  }                                                                                     \
  uint64_t streamId() const override {                                                  \
    return fm.stream_.streamId();                                                       \
  }                                                                                     \
  void sendLocalReply(uint32_t status, std::string_view body, std::string_view details, \
                      const std::function<void(HeaderMap&)>& modify) override {         \
    fm.stream_.sendLocalReply(status, body, details, modify);                           \
  }                                                                                     \
  void resetStream() override {                                                         \
    fm.stream_.resetStream();                                                           \
  }

struct FilterManager::DecoderEntry : public http::DecoderFilterCallbacks {
  DecoderEntry(FilterManager& m, http::StreamDecoderFilter* f, size_t i) : fm(m), filter(f), index(i) {}
  SKIFF_FORWARD_STREAM_CALLBACKS

  void continueDecoding() override { fm.continueDecoding(index); }
  HeaderMap& requestHeaders() override { return *fm.request_headers_; }
  Buffer* decodingBuffer() override { return held.empty() ? nullptr : &held; }
  void encodeHeaders(std::unique_ptr<HeaderMap> headers, bool end_stream) override {
    fm.encodeHeaders(std::move(headers), end_stream);
  }
  void encodeData(Buffer& data, bool end_stream) override { fm.encodeData(data, end_stream); }
  void encodeTrailers(std::unique_ptr<HeaderMap> trailers) override {
    fm.encodeTrailers(std::move(trailers));
  }
  bool downstreamBackedUp() const override { return fm.backed_up_ && fm.backed_up_(); }
  void onDownstreamWritable(std::function<void()> cb) override {
    if (fm.on_writable_) fm.on_writable_(std::move(cb));
  }
  uint32_t bufferLimit() const override { return fm.buffer_limit_; }
  void pauseDownstreamReading(bool paused) override {
    if (fm.pause_reading_) fm.pause_reading_(paused);
  }

  FilterManager& fm;
  http::StreamDecoderFilter* filter;
  size_t index;
  bool headers_passed = false;  // headers went on past this filter
  bool stopped = false;         // iteration is held at this filter
  Buffer held;                  // body this filter buffered
  std::unique_ptr<http::StreamDecoderFilter> owned;
};

struct FilterManager::EncoderEntry : public http::EncoderFilterCallbacks {
  EncoderEntry(FilterManager& m, http::StreamEncoderFilter* f) : fm(m), filter(f) {}
  SKIFF_FORWARD_STREAM_CALLBACKS

  void continueEncoding() override { fm.continueEncoding(index); }
  HeaderMap& responseHeaders() override { return *fm.response_headers_; }
  Buffer* encodingBuffer() override { return held.empty() ? nullptr : &held; }

  FilterManager& fm;
  http::StreamEncoderFilter* filter;
  size_t index = 0;
  bool headers_passed = false;
  bool stopped = false;
  Buffer held;
  std::unique_ptr<http::StreamEncoderFilter> owned;
};

#undef SKIFF_FORWARD_STREAM_CALLBACKS

FilterManager::FilterManager(http::StreamCallbacks& stream, FilterManagerSink& sink, uint32_t buffer_limit)
    : stream_(stream), sink_(sink), buffer_limit_(buffer_limit) {}

FilterManager::~FilterManager() {
  destroyFilters();
}

void FilterManager::destroyFilters() {
  if (destroyed_) return;
  destroyed_ = true;
  for (auto& d : decoders_) d->filter->onDestroy();
  for (auto& e : encoders_) {
    // A dual filter already heard onDestroy through its decoder side.
    bool dual = false;
    for (auto& f : owned_dual_filters_) dual |= static_cast<http::StreamEncoderFilter*>(f.get()) == e->filter;
    if (!dual) e->filter->onDestroy();
  }
}

void FilterManager::addDecoderFilter(std::unique_ptr<http::StreamDecoderFilter> filter) {
  auto entry = std::make_unique<DecoderEntry>(*this, filter.get(), decoders_.size());
  filter->setDecoderFilterCallbacks(*entry);
  entry->owned = std::move(filter);
  decoders_.push_back(std::move(entry));
}

void FilterManager::addEncoderFilter(std::unique_ptr<http::StreamEncoderFilter> filter) {
  auto entry = std::make_unique<EncoderEntry>(*this, filter.get());
  filter->setEncoderFilterCallbacks(*entry);
  entry->owned = std::move(filter);
  // Encoders run in reverse configuration order.
  encoders_.insert(encoders_.begin(), std::move(entry));
  for (size_t i = 0; i < encoders_.size(); ++i) encoders_[i]->index = i;
}

void FilterManager::addStreamFilter(std::unique_ptr<http::StreamFilter> filter) {
  auto* f = filter.get();
  auto dec = std::make_unique<DecoderEntry>(*this, f, decoders_.size());
  f->setDecoderFilterCallbacks(*dec);
  decoders_.push_back(std::move(dec));
  auto enc = std::make_unique<EncoderEntry>(*this, f);
  f->setEncoderFilterCallbacks(*enc);
  encoders_.insert(encoders_.begin(), std::move(enc));
  for (size_t i = 0; i < encoders_.size(); ++i) encoders_[i]->index = i;
  owned_dual_filters_.push_back(std::move(filter));
}

// ---- request path ----

void FilterManager::decodeHeaders(std::unique_ptr<HeaderMap> headers, bool end_stream) {
  request_headers_ = std::move(headers);
  request_end_ = end_stream;
  runDecoders(0, nullptr, end_stream);
}

void FilterManager::decodeData(Buffer& data, bool end_stream) {
  request_end_ = end_stream;
  runDecoders(0, &data, end_stream);
}

void FilterManager::decodeTrailers(std::unique_ptr<HeaderMap> trailers) {
  request_trailers_ = std::move(trailers);
  request_end_ = true;
  runDecoders(0, nullptr, true);
}

// Moves what is available through decoders [from, n): headers that have not passed a filter yet, then
// `data` (a chunk entering at `from`), then trailers once everything before them has passed.
void FilterManager::runDecoders(size_t from, Buffer* data, bool data_end) {
  Buffer carried;
  for (size_t i = from; i < decoders_.size() && !destroyed_; ++i) {
    DecoderEntry& e = *decoders_[i];
    if (!e.headers_passed && !e.stopped) {
      const bool headers_end = request_end_ && data == nullptr && !request_trailers_;
      e.stopped = e.filter->decodeHeaders(*request_headers_, headers_end) == HeadersStatus::kStop;
      if (destroyed_) return;
      e.headers_passed = !e.stopped;
    }
    if (data != nullptr) {
      const DataStatus s = e.filter->decodeData(*data, data_end && !request_trailers_);
      if (destroyed_) return;
      if (s != DataStatus::kContinue) {
        e.held.append(*data);
        data->clear();
        e.stopped = true;
        if (overLimit(e.held.size())) {
          stream_.sendLocalReply(413, "Payload Too Large", "request_payload_too_large");
        } else if (s == DataStatus::kStopAndWatermark && pause_reading_) {
          pause_reading_(true);
        }
        return;
      }
      if (!e.held.empty()) {
        e.held.append(*data);
        carried.swap(e.held);
        e.held.clear();
        data = &carried;
      }
      // Continuing on data releases headers held by this filter too (Envoy's semantics).
      e.stopped = false;
      e.headers_passed = true;
    }
    if (request_trailers_ && request_end_) {
      if (e.filter->decodeTrailers(*request_trailers_) == TrailersStatus::kStop) {
        e.stopped = true;
        return;
      }
      if (destroyed_) return;
      if (e.stopped) {
        // Trailers released a filter that held headers or body: everything it held moves on.
        continueDecoding(i);
        return;
      }
    } else if (e.stopped) {
      return;  // held until continueDecoding()
    }
  }
}

void FilterManager::continueDecoding(size_t index) {
  if (destroyed_) return;
  DecoderEntry& e = *decoders_[index];
  if (!e.stopped) return;
  e.stopped = false;
  e.headers_passed = true;
  if (pause_reading_) pause_reading_(false);
  Buffer body;
  body.swap(e.held);
  if (index + 1 >= decoders_.size()) return;
  // An end-of-stream the held filter swallowed must still reach the next filters, as an empty last chunk.
  const bool send_data =
      !body.empty() || (request_end_ && !request_trailers_ && decoders_[index + 1]->headers_passed);
  runDecoders(index + 1, send_data ? &body : nullptr, request_end_);
}

// ---- response path ----

void FilterManager::encodeHeaders(std::unique_ptr<HeaderMap> headers, bool end_stream) {
  if (destroyed_ || response_started_) return;
  response_headers_ = std::move(headers);
  response_end_ = end_stream;
  stream_.streamInfo().response_headers = response_headers_.get();
  runEncoders(0, nullptr, end_stream);
}

void FilterManager::encodeData(Buffer& data, bool end_stream) {
  if (destroyed_ || response_complete_) return;
  response_end_ = end_stream;
  runEncoders(0, &data, end_stream);
}

void FilterManager::encodeTrailers(std::unique_ptr<HeaderMap> trailers) {
  if (destroyed_ || response_complete_) return;
  response_trailers_ = std::move(trailers);
  stream_.streamInfo().response_trailers = response_trailers_.get();
  response_end_ = true;
  runEncoders(0, nullptr, true);
}

void FilterManager::runEncoders(size_t from, Buffer* data, bool data_end) {
  Buffer carried;
  for (size_t i = from; i < encoders_.size() && !destroyed_; ++i) {
    EncoderEntry& e = *encoders_[i];
    if (!e.headers_passed && !e.stopped) {
      const bool headers_end = response_end_ && data == nullptr && !response_trailers_;
      e.stopped = e.filter->encodeHeaders(*response_headers_, headers_end) == HeadersStatus::kStop;
      if (destroyed_) return;
      e.headers_passed = !e.stopped;
    }
    if (data != nullptr) {
      const DataStatus s = e.filter->encodeData(*data, data_end && !response_trailers_);
      if (destroyed_) return;
      if (s != DataStatus::kContinue) {
        e.held.append(*data);
        data->clear();
        e.stopped = true;
        if (overLimit(e.held.size())) stream_.resetStream();
        return;
      }
      if (!e.held.empty()) {
        e.held.append(*data);
        carried.swap(e.held);
        e.held.clear();
        data = &carried;
      }
      e.stopped = false;
      e.headers_passed = true;
    }
    if (response_trailers_ && response_end_) {
      if (e.filter->encodeTrailers(*response_trailers_) == TrailersStatus::kStop) {
        e.stopped = true;
        return;
      }
      if (destroyed_) return;
      if (e.stopped) {
        continueEncoding(i);
        return;
      }
    } else if (e.stopped) {
      return;
    }
  }
  if (destroyed_) return;
  // Past the last encoder filter: to the codec.
  if (!response_started_) {
    response_started_ = true;
    const bool headers_end = response_end_ && data == nullptr && !response_trailers_;
    sink_.writeHeaders(*response_headers_, headers_end);
    if (headers_end) {
      response_complete_ = true;
      return;
    }
  }
  if (data != nullptr && !response_complete_) {
    const bool end = data_end && !response_trailers_;
    sink_.writeData(*data, end);
    if (end) response_complete_ = true;
  }
  if (response_trailers_ && response_end_ && !response_complete_) {
    response_complete_ = true;
    sink_.writeTrailers(*response_trailers_);
  }
}

void FilterManager::continueEncoding(size_t index) {
  if (destroyed_) return;
  EncoderEntry& e = *encoders_[index];
  if (!e.stopped) return;
  e.stopped = false;
  e.headers_passed = true;
  Buffer body;
  body.swap(e.held);
  const bool next_has_headers =
      index + 1 < encoders_.size() ? encoders_[index + 1]->headers_passed : response_started_;
  const bool send_data = !body.empty() || (response_end_ && !response_trailers_ && next_has_headers);
  runEncoders(index + 1, send_data ? &body : nullptr, response_end_);
}

}  // namespace skiff::server
