// Header add/remove lists with Envoy's append_action semantics and the small %COMMAND% formatter set.
#include "skiff/router/header_mutations.h"

#include <optional>
#include <stdexcept>

#include "envoy/config/core/v3/base.pb.h"

namespace skiff::router {

namespace {

// Strips ":port" from "host:port" / "[v6]:port".
std::string_view withoutPort(std::string_view addr) {
  if (!addr.empty() && addr.front() == '[') {
    const size_t close = addr.find(']');
    return close == std::string_view::npos ? addr : addr.substr(1, close - 1);
  }
  const size_t colon = addr.rfind(':');
  if (colon == std::string_view::npos || addr.find(':') != colon) return addr;  // none, or bare IPv6
  return addr.substr(0, colon);
}

}  // namespace

HeaderFormatter::HeaderFormatter(const std::string& text) : text_(text) {
  if (text.find('%') == std::string::npos) return;
  std::string literal;
  auto flush = [&] {
    if (!literal.empty()) pieces_.push_back({Op::kLiteral, std::move(literal)});
    literal.clear();
  };
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] != '%') {
      literal += text[i++];
      continue;
    }
    if (i + 1 < text.size() && text[i + 1] == '%') {
      literal += '%';
      i += 2;
      continue;
    }
    const size_t end = text.find('%', i + 1);
    if (end == std::string::npos) {
      literal.append(text, i, std::string::npos);
      break;
    }
    const std::string cmd = text.substr(i + 1, end - i - 1);
    std::optional<Piece> piece;
    if (cmd == "DOWNSTREAM_REMOTE_ADDRESS")
      piece = Piece{Op::kDownstreamRemote, {}};
    else if (cmd == "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT")
      piece = Piece{Op::kDownstreamRemoteNoPort, {}};
    else if (cmd == "DOWNSTREAM_LOCAL_ADDRESS")
      piece = Piece{Op::kDownstreamLocal, {}};
    else if (cmd == "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT")
      piece = Piece{Op::kDownstreamLocalNoPort, {}};
    else if (cmd == "UPSTREAM_REMOTE_ADDRESS")
      piece = Piece{Op::kUpstreamRemote, {}};
    else if (cmd == "UPSTREAM_CLUSTER")
      piece = Piece{Op::kUpstreamCluster, {}};
    else if (cmd == "ROUTE_NAME")
      piece = Piece{Op::kRouteName, {}};
    else if (cmd == "REQUESTED_SERVER_NAME")
      piece = Piece{Op::kRequestedServerName, {}};
    else if (cmd == "PROTOCOL")
      piece = Piece{Op::kProtocol, {}};
    else if (cmd.size() > 5 && cmd.compare(0, 4, "REQ(") == 0 && cmd.back() == ')') {
      std::string name = cmd.substr(4, cmd.size() - 5);
      http::toLowerInPlace(name);
      piece = Piece{Op::kRequestHeader, std::move(name)};
    }
    if (!piece) {  // unknown command: keep the text and continue after it
      literal.append(text, i, end - i + 1);
      i = end + 1;
      continue;
    }
    flush();
    pieces_.push_back(std::move(*piece));
    literal_ = false;
    i = end + 1;
  }
  flush();
}

std::string HeaderFormatter::format(const FormatterContext* ctx) const {
  if (literal_) return text_;
  const http::StreamInfo* si = ctx ? ctx->stream_info : nullptr;
  const http::HeaderMap* req = ctx ? ctx->request_headers : nullptr;
  if (req == nullptr && si != nullptr) req = si->request_headers;
  std::string out;
  for (const Piece& p : pieces_) {
    switch (p.op) {
      case Op::kLiteral:
        out += p.arg;
        break;
      case Op::kDownstreamRemote:
        if (si) out += si->downstream_remote_address;
        break;
      case Op::kDownstreamRemoteNoPort:
        if (si) out += withoutPort(si->downstream_remote_address);
        break;
      case Op::kDownstreamLocal:
        if (si) out += si->downstream_local_address;
        break;
      case Op::kDownstreamLocalNoPort:
        if (si) out += withoutPort(si->downstream_local_address);
        break;
      case Op::kUpstreamRemote:
        if (si) out += si->upstream_host;
        break;
      case Op::kUpstreamCluster:
        if (si) out += si->upstream_cluster;
        break;
      case Op::kRouteName:
        if (si) out += si->route_name;
        break;
      case Op::kRequestedServerName:
        if (si) out += si->requested_server_name;
        break;
      case Op::kProtocol:
        if (si) out += si->protocol;
        break;
      case Op::kRequestHeader:
        if (req) {
          if (const std::string* v = req->get(p.arg)) out += *v;
        }
        break;
    }
  }
  return out;
}

HeaderMutations HeaderMutations::fromProto(
    const google::protobuf::RepeatedPtrField<envoy::config::core::v3::HeaderValueOption>& to_add,
    const google::protobuf::RepeatedPtrField<std::string>& to_remove, const std::string& add_path,
    const std::string& remove_path) {
  HeaderMutations m;
  for (int i = 0; i < to_add.size(); ++i) {
    const auto& opt = to_add[i];
    const std::string path = add_path + "[" + std::to_string(i) + "]";
    std::string name = opt.header().key();
    http::toLowerInPlace(name);
    if (name.empty()) throw std::invalid_argument(path + ".header.key: must not be empty");
    if (name[0] == ':' || name == "host") {
      throw std::invalid_argument(path + ".header.key: ':'-prefixed or host headers may not be modified");
    }
    Action action = static_cast<Action>(opt.append_action());
    if (opt.has_append()) {  // the deprecated bool wins when set
      action = opt.append().value() ? Action::kAppendIfExistsOrAdd : Action::kOverwriteIfExistsOrAdd;
    }
    const std::string& value = opt.header().value().empty() ? opt.header().raw_value() : opt.header().value();
    m.adds_.push_back(Add{std::move(name), HeaderFormatter(value), action, opt.keep_empty_value()});
  }
  for (int i = 0; i < to_remove.size(); ++i) {
    std::string name = to_remove[i];
    http::toLowerInPlace(name);
    if (name.empty() || name[0] == ':' || name == "host") {
      throw std::invalid_argument(remove_path + "[" + std::to_string(i) +
                                  "]: ':'-prefixed or host headers may not be removed");
    }
    m.removes_.push_back(std::move(name));
  }
  return m;
}

void HeaderMutations::apply(http::HeaderMap& h, const FormatterContext* ctx) const {
  for (const std::string& name : removes_) h.remove(name);
  for (const Add& add : adds_) {
    std::string value = add.value.format(ctx);
    if (value.empty() && !add.keep_empty_value) continue;
    switch (add.action) {
      case Action::kAppendIfExistsOrAdd:
        h.add(add.name, value);
        break;
      case Action::kAddIfAbsent:
        h.setIfAbsent(add.name, value);
        break;
      case Action::kOverwriteIfExistsOrAdd:
        h.set(add.name, value);
        break;
      case Action::kOverwriteIfExists:
        if (h.get(add.name) != nullptr) h.set(add.name, value);
        break;
    }
  }
}

}  // namespace skiff::router
