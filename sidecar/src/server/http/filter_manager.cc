// FilterManager: per-stream iteration over decoder and encoder filters, with pause, resume and buffering.
#include "server/http/filter_manager.h"

#include <algorithm>
#include <new>
#include <utility>

#include "skiff/router/route_table.h"

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
    return fm.route();                                                                  \
  }                                                                                     \
  void clearRouteCache() override {                                                     \
    fm.clearRouteCache();                                                               \
  }                                                                                     \
  void requestHeaderChanged(std::string_view name, uint64_t version_before) override {  \
    fm.requestHeaderChanged(name, version_before);                                      \
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
  Buffer* addDecodingBuffer() override { return &held; }
  void injectDecodedData(Buffer& data, bool end_stream) override {
    fm.injectDecoded(*this, data, end_stream);
  }
  void encodeHeaders(std::unique_ptr<HeaderMap> headers, bool end_stream) override {
    fm.encodeHeaders(std::move(headers), end_stream);
  }
  void encodeData(Buffer& data, bool end_stream) override { fm.encodeData(data, end_stream); }
  void encodeTrailers(std::unique_ptr<HeaderMap> trailers) override {
    fm.encodeTrailers(std::move(trailers));
  }
  bool downstreamBackedUp() const override {
    return fm.encoder_watermarks_ > 0 || (fm.backed_up_ && fm.backed_up_());
  }
  void onDownstreamWritable(std::function<void()> cb) override {
    if (fm.encoder_watermarks_ > 0) {
      fm.watermark_waiters_.push_back(std::move(cb));
    } else if (fm.on_writable_) {
      fm.on_writable_(std::move(cb));
    }
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
  bool watermarked = false;     // holds more than the buffer limit after kStopAndWatermark
  Buffer held;                  // body this filter buffered
  std::unique_ptr<http::StreamDecoderFilter> owned;
  std::unique_ptr<http::StreamFilter> owned_dual;  // a stream filter: both entries point at it
};

struct FilterManager::EncoderEntry : public http::EncoderFilterCallbacks {
  EncoderEntry(FilterManager& m, http::StreamEncoderFilter* f, size_t p, bool d)
      : fm(m), filter(f), position(p), dual(d) {}
  SKIFF_FORWARD_STREAM_CALLBACKS

  void continueEncoding() override { fm.continueEncoding(index()); }
  // Position in run order; it shifts as later-configured encoders are added in front of it.
  size_t index() const { return fm.encoders_.size() - 1 - position; }
  HeaderMap& responseHeaders() override { return *fm.response_headers_; }
  Buffer* encodingBuffer() override { return held.empty() ? nullptr : &held; }
  Buffer* addEncodingBuffer() override { return &held; }
  void injectEncodedData(Buffer& data, bool end_stream) override {
    fm.injectEncoded(*this, data, end_stream);
  }

  FilterManager& fm;
  http::StreamEncoderFilter* filter;
  size_t position;  // in configuration order
  bool dual;        // a stream filter, which hears onDestroy through its decoder side
  bool headers_passed = false;
  bool stopped = false;
  bool watermarked = false;  // holds more than the buffer limit after kStopAndWatermark
  Buffer held;
  std::unique_ptr<http::StreamEncoderFilter> owned;
};

#undef SKIFF_FORWARD_STREAM_CALLBACKS

// ---- entry storage ----

namespace {

// A per-thread free list of one entry type's blocks: a worker reuses the entries of finished streams, so
// setting up a stream's chain does not reach malloc once the worker has warmed up. Bounded, so a burst of
// concurrent streams does not pin its memory.
template <class T>
class EntryPool {
 public:
  static void* take() {
    List& l = list();
    if (l.head == nullptr) return ::operator new(sizeof(T));
    Node* n = l.head;
    l.head = n->next;
    --l.count;
    return n;
  }
  static void give(void* p) {
    List& l = list();
    if (l.count >= kMaxFree) {
      ::operator delete(p);
      return;
    }
    l.head = ::new (p) Node{l.head};
    ++l.count;
  }

 private:
#if defined(__SANITIZE_ADDRESS__)
  static constexpr size_t kMaxFree = 0;  // ASan sees every entry's use after free
#else
  static constexpr size_t kMaxFree = 512;
#endif
  struct Node {
    Node* next;
  };
  struct List {
    ~List() {
      while (head != nullptr) {
        Node* n = head;
        head = n->next;
        ::operator delete(n);
      }
    }
    Node* head = nullptr;
    size_t count = 0;
  };
  static List& list() {
    thread_local List l;
    return l;
  }
};

template <class T, class... Args>
T* newEntry(Args&&... args) {
  return ::new (EntryPool<T>::take()) T(std::forward<Args>(args)...);
}

template <class T>
void deleteEntry(T* entry) {
  entry->~T();
  EntryPool<T>::give(entry);
}

}  // namespace

template <class T>
void FilterManager::EntryList<T>::push(T* entry) {
  if (size_ < kInlineEntries) {
    inline_[size_++] = entry;
    return;
  }
  const uint32_t spilled = size_ - kInlineEntries;
  if (spilled == spill_capacity_) {
    const uint32_t capacity = spill_capacity_ == 0 ? 4 : spill_capacity_ * 2;
    T** grown = new T*[capacity];
    std::copy(spill_, spill_ + spilled, grown);
    delete[] spill_;
    spill_ = grown;
    spill_capacity_ = capacity;
  }
  spill_[spilled] = entry;
  ++size_;
}

template <class T>
FilterManager::EntryList<T>::~EntryList() {
  // In the order added, as the vectors of owners this replaces did.
  for (size_t i = 0; i < size_; ++i) deleteEntry(&(*this)[i]);
  delete[] spill_;
}

FilterManager::FilterManager(http::StreamCallbacks& stream, FilterManagerSink& sink, uint32_t buffer_limit)
    : stream_(stream), sink_(sink), buffer_limit_(buffer_limit) {}

FilterManager::~FilterManager() {
  destroyFilters();
  // Stream filters go first, while both of their entries still exist.
  for (size_t i = 0; i < decoders_.size(); ++i) decoders_[i].owned_dual.reset();
}

void FilterManager::destroyFilters() {
  if (destroyed_) return;
  destroyed_ = true;
  for (size_t i = 0; i < decoders_.size(); ++i) decoders_[i].filter->onDestroy();
  // In run order; a stream filter already heard onDestroy through its decoder side.
  for (size_t i = 0; i < encoders_.size(); ++i) {
    EncoderEntry& e = encoderAt(i);
    if (!e.dual) e.filter->onDestroy();
  }
}

void FilterManager::addDecoderFilter(std::unique_ptr<http::StreamDecoderFilter> filter) {
  DecoderEntry& entry = *newEntry<DecoderEntry>(*this, filter.get(), decoders_.size());
  decoders_.push(&entry);
  filter->setDecoderFilterCallbacks(entry);
  entry.owned = std::move(filter);
}

void FilterManager::addEncoderFilter(std::unique_ptr<http::StreamEncoderFilter> filter) {
  EncoderEntry& entry = *newEntry<EncoderEntry>(*this, filter.get(), encoders_.size(), false);
  encoders_.push(&entry);
  filter->setEncoderFilterCallbacks(entry);
  entry.owned = std::move(filter);
}

void FilterManager::addStreamFilter(std::unique_ptr<http::StreamFilter> filter) {
  http::StreamFilter* f = filter.get();
  DecoderEntry& dec = *newEntry<DecoderEntry>(*this, f, decoders_.size());
  decoders_.push(&dec);
  f->setDecoderFilterCallbacks(dec);
  EncoderEntry& enc = *newEntry<EncoderEntry>(*this, f, encoders_.size(), true);
  encoders_.push(&enc);
  f->setEncoderFilterCallbacks(enc);
  dec.owned_dual = std::move(filter);
}

// ---- route cache ----
// The stream caches the route until clearRouteCache(); only these calls fill or clear it. The manager
// tracks when the cached route is known to reflect the request headers: the first route() after a clear
// (or the first ever) computes it from the headers of that moment.

const router::RouteEntry* FilterManager::route() {
  const router::RouteEntry* r = stream_.route();
  if (route_pending_) {
    route_pending_ = false;
    route_fresh_ = request_headers_ != nullptr;
    if (route_fresh_) route_version_ = request_headers_->version();
  }
  return r;
}

void FilterManager::clearRouteCache() {
  stream_.clearRouteCache();
  route_pending_ = true;
  route_fresh_ = false;
}

void FilterManager::requestHeaderChanged(std::string_view name, uint64_t version_before) {
  // Skipping the clear is only safe when the route was chosen from exactly the headers this change
  // started from (no other filter changed them without clearing) and the table never reads `name`.
  if (route_fresh_ && request_headers_ != nullptr && version_before == route_version_) {
    const router::RouteEntry* r = stream_.route();  // cached: fresh means not cleared since
    if (r != nullptr && !r->dependsOnHeader(name)) {
      route_version_ = request_headers_->version();
      return;
    }
  }
  clearRouteCache();
}

// ---- request path ----

void FilterManager::decodeHeaders(std::unique_ptr<HeaderMap> headers, bool end_stream) {
  route_fresh_ = false;  // a new header object: versions of the old one say nothing about it
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
    DecoderEntry& e = decoders_[i];
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
          // As on the response side: a watermarking filter over the limit pauses the downstream (until it
          // lets its body go); a buffering one gets 413.
          if (s == DataStatus::kStopAndWatermark) {
            raiseDecoderWatermark(e);
          } else {
            stream_.sendLocalReply(413, "Payload Too Large", "request_payload_too_large");
          }
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
      lowerDecoderWatermark(e);
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
  DecoderEntry& e = decoders_[index];
  if (!e.stopped) return;
  e.stopped = false;
  e.headers_passed = true;
  lowerDecoderWatermark(e);
  if (pause_reading_) pause_reading_(false);
  Buffer body;
  body.swap(e.held);
  if (index + 1 >= decoders_.size()) return;
  // An end-of-stream the held filter swallowed must still reach the next filters, as an empty last chunk.
  const bool send_data =
      !body.empty() || (request_end_ && !request_trailers_ && decoders_[index + 1].headers_passed);
  runDecoders(index + 1, send_data ? &body : nullptr, request_end_);
}

// A filter's own body chunks (ext_proc full duplex): whatever it held (headers) goes on, and `end_stream`
// is the end of the stream as the later filters see it (request trailers follow the last chunk).
void FilterManager::injectDecoded(DecoderEntry& e, Buffer& data, bool end_stream) {
  if (destroyed_ || e.index + 1 >= decoders_.size()) return;
  e.stopped = false;
  e.headers_passed = true;
  lowerDecoderWatermark(e);
  const bool downstream_end = request_end_;
  request_end_ = end_stream;
  runDecoders(e.index + 1, data.empty() && !end_stream ? nullptr : &data, end_stream);
  if (!destroyed_) request_end_ = downstream_end;
}

void FilterManager::injectEncoded(EncoderEntry& e, Buffer& data, bool end_stream) {
  if (destroyed_ || response_complete_) return;
  e.stopped = false;
  e.headers_passed = true;
  lowerEncoderWatermark(e);
  const bool upstream_end = response_end_;
  response_end_ = end_stream;
  runEncoders(e.index() + 1, data.empty() && !end_stream ? nullptr : &data, end_stream);
  if (!destroyed_) response_end_ = upstream_end;
  runWatermarkWaiters();
}

// ---- response path ----

void FilterManager::encodeHeaders(std::unique_ptr<HeaderMap> headers, bool end_stream) {
  if (destroyed_ || response_started_) return;
  response_headers_ = std::move(headers);
  response_end_ = end_stream;
  stream_.streamInfo().response_headers = response_headers_.get();
  runEncoders(0, nullptr, end_stream);
  runWatermarkWaiters();
}

void FilterManager::encodeData(Buffer& data, bool end_stream) {
  if (destroyed_ || response_complete_) return;
  response_end_ = end_stream;
  runEncoders(0, &data, end_stream);
  runWatermarkWaiters();
}

void FilterManager::encodeTrailers(std::unique_ptr<HeaderMap> trailers) {
  if (destroyed_ || response_complete_) return;
  response_trailers_ = std::move(trailers);
  stream_.streamInfo().response_trailers = response_trailers_.get();
  response_end_ = true;
  runEncoders(0, nullptr, true);
  runWatermarkWaiters();
}

void FilterManager::runEncoders(size_t from, Buffer* data, bool data_end) {
  Buffer carried;
  for (size_t i = from; i < encoders_.size() && !destroyed_; ++i) {
    EncoderEntry& e = encoderAt(i);
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
        if (overLimit(e.held.size())) {
          // Envoy: a watermarking filter over the limit pushes back on the upstream (the terminal filter
          // stops reading it until this filter lets its body go); a buffering one loses the stream.
          if (s == DataStatus::kStopAndWatermark) {
            raiseEncoderWatermark(e);
          } else {
            stream_.resetStream();
          }
        }
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
      lowerEncoderWatermark(e);
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
  EncoderEntry& e = encoderAt(index);
  if (!e.stopped) return;
  e.stopped = false;
  e.headers_passed = true;
  lowerEncoderWatermark(e);
  Buffer body;
  body.swap(e.held);
  const bool next_has_headers =
      index + 1 < encoders_.size() ? encoderAt(index + 1).headers_passed : response_started_;
  const bool send_data = !body.empty() || (response_end_ && !response_trailers_ && next_has_headers);
  // The held body goes on before any waiter runs: a waiter may feed more body in at once, which must
  // not land behind the body this filter held.
  runEncoders(index + 1, send_data ? &body : nullptr, response_end_);
  runWatermarkWaiters();
}

void FilterManager::raiseDecoderWatermark(DecoderEntry& e) {
  if (e.watermarked) return;
  e.watermarked = true;
  if (decoder_watermarks_++ == 0 && pause_reading_) pause_reading_(true);
}

void FilterManager::lowerDecoderWatermark(DecoderEntry& e) {
  if (!e.watermarked) return;
  e.watermarked = false;
  if (--decoder_watermarks_ == 0 && pause_reading_) pause_reading_(false);
}

void FilterManager::raiseEncoderWatermark(EncoderEntry& e) {
  if (e.watermarked) return;
  e.watermarked = true;
  ++encoder_watermarks_;
}

void FilterManager::lowerEncoderWatermark(EncoderEntry& e) {
  if (!e.watermarked) return;
  e.watermarked = false;
  --encoder_watermarks_;
}

// Once no encoder filter holds the response over its watermark, whoever waits for room (the router, to
// read upstream again) goes on, or keeps waiting if the downstream itself is backed up. Runs after the
// released body went on; a waiter that raises a watermark again sends the rest back to wait.
void FilterManager::runWatermarkWaiters() {
  if (watermark_waiters_.empty() || encoder_watermarks_ > 0 || destroyed_) return;
  auto waiters = std::move(watermark_waiters_);
  watermark_waiters_.clear();
  for (auto& cb : waiters) {
    if (destroyed_) return;
    if (encoder_watermarks_ > 0) {
      watermark_waiters_.push_back(std::move(cb));
    } else if (backed_up_ && backed_up_() && on_writable_) {
      on_writable_(std::move(cb));
    } else {
      cb();
    }
  }
}

}  // namespace skiff::server
