// One level's request_headers_to_add/remove (or response_...) with Envoy's append_action semantics and a
// small set of %COMMAND% formatters in values, parsed once at config time.
#pragma once

#include <string>
#include <vector>

#include "google/protobuf/repeated_field.h"
#include "skiff/http/header_map.h"
#include "skiff/http/stream_info.h"

namespace envoy::config::core::v3 {
class HeaderValueOption;
}

namespace skiff::router {

// What header-value formatters may read. Either pointer may be null; missing data formats as "".
struct FormatterContext {
  const http::StreamInfo* stream_info = nullptr;
  const http::HeaderMap* request_headers = nullptr;  // for %REQ(x)%; falls back to stream_info's
};

// A header value template: literal text and %COMMAND% pieces. Supported commands:
//   DOWNSTREAM_REMOTE_ADDRESS[_WITHOUT_PORT], DOWNSTREAM_LOCAL_ADDRESS[_WITHOUT_PORT],
//   UPSTREAM_REMOTE_ADDRESS (the chosen host), UPSTREAM_CLUSTER, ROUTE_NAME, REQUESTED_SERVER_NAME,
//   PROTOCOL, REQ(name). "%%" is a literal '%'. Anything else stays literal text (Envoy would reject it).
class HeaderFormatter {
 public:
  explicit HeaderFormatter(const std::string& text);
  bool isLiteral() const { return literal_; }
  const std::string& text() const { return text_; }
  std::string format(const FormatterContext* ctx) const;

 private:
  enum class Op {
    kLiteral,
    kDownstreamRemote,
    kDownstreamRemoteNoPort,
    kDownstreamLocal,
    kDownstreamLocalNoPort,
    kUpstreamRemote,
    kUpstreamCluster,
    kRouteName,
    kRequestedServerName,
    kProtocol,
    kRequestHeader,
  };
  struct Piece {
    Op op;
    std::string arg;  // literal text or header name
  };
  std::string text_;
  bool literal_ = true;
  std::vector<Piece> pieces_;
};

class HeaderMutations {
 public:
  // Envoy's HeaderValueOption.HeaderAppendAction values.
  enum class Action {
    kAppendIfExistsOrAdd = 0,
    kAddIfAbsent = 1,
    kOverwriteIfExistsOrAdd = 2,
    kOverwriteIfExists = 3
  };
  struct Add {
    std::string name;  // lower-case
    HeaderFormatter value;
    Action action;
    bool keep_empty_value;
  };

  HeaderMutations() = default;
  // Throws std::invalid_argument naming `path` for pseudo-headers / host, as Envoy rejects them.
  static HeaderMutations fromProto(
      const google::protobuf::RepeatedPtrField<envoy::config::core::v3::HeaderValueOption>& to_add,
      const google::protobuf::RepeatedPtrField<std::string>& to_remove, const std::string& add_path,
      const std::string& remove_path);

  // Removes first, then adds, as Envoy's header parser does.
  void apply(http::HeaderMap& h, const FormatterContext* ctx = nullptr) const;
  bool empty() const { return adds_.empty() && removes_.empty(); }
  const std::vector<Add>& adds() const { return adds_; }
  const std::vector<std::string>& removes() const { return removes_; }

 private:
  std::vector<Add> adds_;
  std::vector<std::string> removes_;
};

}  // namespace skiff::router
