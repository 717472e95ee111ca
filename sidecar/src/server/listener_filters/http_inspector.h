// envoy.filters.listener.http_inspector: tells plaintext HTTP/1.x and h2c (prior knowledge) from other
// bytes by peeking at the request line, for application_protocols matching.
#pragma once

#include <string_view>

#include "server/listener_filters/listener_filter.h"

namespace skiff::server {

// How far the inspector looks for the end of the request line.
constexpr size_t kMaxHttpInspectBytes = 8 * 1024;

enum class HttpDetection { kNeedMore, kHttp10, kHttp11, kH2c, kNotHttp };

// Classifies the first bytes of a plaintext connection.
HttpDetection detectHttp(std::string_view data, bool end_stream);

class HttpInspector : public ListenerFilter {
 public:
  explicit HttpInspector(stats::Store& store);
  ListenerFilterStatus onAccept(int fd, network::ConnectionInfo& info) const override;
  ListenerFilterStatus onData(std::string_view data, bool end_stream,
                              network::ConnectionInfo& info) const override;
  size_t maxReadBytes() const override { return kMaxHttpInspectBytes; }

 private:
  stats::Counter http10_found_, http11_found_, http2_found_, http_not_found_;
};

}  // namespace skiff::server
