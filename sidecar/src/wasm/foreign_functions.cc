// Foreign functions (proxy_call_foreign_function): Envoy's names and protobuf argument messages, decoded
// with a small wire-format reader (the messages are tiny and have no .proto here).
#include "wasm/foreign_functions.h"

#include <zlib.h>

#include <algorithm>
#include <optional>

#include "wasm/plugin.h"

namespace skiff::wasm {
namespace {

// uncompress stops here: a small input must not make the host allocate without bound.
constexpr size_t kMaxUncompressed = 64u << 20;

// Reads the fields of a serialized protobuf message: varints (wire type 0) and length-delimited fields
// (wire type 2); fixed32/64 are skipped. False on a truncated or malformed message.
class WireReader {
 public:
  explicit WireReader(std::string_view data) : data_(data) {}
  struct Field {
    uint32_t number = 0;
    uint32_t wire_type = 0;
    uint64_t varint = 0;
    std::string_view bytes;
  };
  // nullopt at the end; sets bad() on malformed input.
  std::optional<Field> next() {
    if (at_ == data_.size() || bad_) return std::nullopt;
    uint64_t key = 0;
    if (!varint(&key) || (key >> 3) == 0 || (key >> 3) > 0x1FFFFFFF) return fail();
    Field f;
    f.number = static_cast<uint32_t>(key >> 3);
    f.wire_type = static_cast<uint32_t>(key & 7);
    switch (f.wire_type) {
      case 0:
        if (!varint(&f.varint)) return fail();
        return f;
      case 1:
      case 5: {
        const size_t n = f.wire_type == 1 ? 8 : 4;
        if (data_.size() - at_ < n) return fail();
        at_ += n;
        return f;
      }
      case 2: {
        uint64_t n = 0;
        if (!varint(&n) || n > data_.size() - at_) return fail();
        f.bytes = data_.substr(at_, n);
        at_ += n;
        return f;
      }
      default:
        return fail();  // groups are not used by these messages
    }
  }
  bool bad() const { return bad_; }

 private:
  bool varint(uint64_t* out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (at_ == data_.size()) return false;
      const auto b = static_cast<uint8_t>(data_[at_++]);
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) {
        *out = v;
        return true;
      }
    }
    return false;
  }
  std::optional<Field> fail() {
    bad_ = true;
    return std::nullopt;
  }

  std::string_view data_;
  size_t at_ = 0;
  bool bad_ = false;
};

WasmResult compressBytes(std::string_view args, std::string* result) {
  uLongf size = compressBound(static_cast<uLong>(args.size()));
  result->resize(size);
  if (compress(reinterpret_cast<Bytef*>(result->data()), &size, reinterpret_cast<const Bytef*>(args.data()),
               static_cast<uLong>(args.size())) != Z_OK) {
    result->clear();
    return WasmResult::kSerializationFailure;
  }
  result->resize(size);
  return WasmResult::kOk;
}

// One inflate() pass over the input into a buffer that doubles when full (up to kMaxUncompressed): the
// work is linear in the output, not restarted per doubling.
WasmResult uncompressBytes(std::string_view args, std::string* result) {
  z_stream zs{};
  if (inflateInit(&zs) != Z_OK) return WasmResult::kSerializationFailure;
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(args.data()));
  zs.avail_in = static_cast<uInt>(args.size());
  size_t produced = 0;
  result->resize(std::min(std::max<size_t>(args.size() * 2, 64), kMaxUncompressed));
  int rc = Z_OK;
  while (true) {
    if (produced == result->size()) {
      if (result->size() >= kMaxUncompressed) break;  // too large: refused
      result->resize(std::min(result->size() * 2, kMaxUncompressed));
    }
    const size_t room = std::min<size_t>(result->size() - produced, UINT32_MAX);
    zs.next_out = reinterpret_cast<Bytef*>(result->data() + produced);
    zs.avail_out = static_cast<uInt>(room);
    rc = inflate(&zs, Z_NO_FLUSH);
    produced += room - zs.avail_out;
    if (rc == Z_STREAM_END) break;
    if (rc == Z_BUF_ERROR && zs.avail_out == 0) continue;  // needs more room
    if (rc != Z_OK) break;                                 // corrupt, or the input ended early
  }
  inflateEnd(&zs);
  if (rc != Z_STREAM_END) {
    result->clear();
    return WasmResult::kSerializationFailure;
  }
  result->resize(produced);
  return WasmResult::kOk;
}

// DeclarePropertyArguments: name = 1, readonly = 2, type = 3, schema = 4, span = 5.
WasmResult declareProperty(PluginVm& plugin, std::string_view args) {
  WireReader reader(args);
  std::string name;
  DeclaredProperty decl;
  while (auto f = reader.next()) {
    const bool len = f->wire_type == 2, var = f->wire_type == 0;
    if (f->number == 1 && len) {
      name.assign(f->bytes);
    } else if (f->number == 2 && var) {
      decl.readonly = f->varint != 0;
    } else if (f->number == 3 && var) {
      if (f->varint > 3) return WasmResult::kBadArgument;
      decl.type = static_cast<uint32_t>(f->varint);
    } else if (f->number == 4 && len) {
      decl.schema.assign(f->bytes);
    } else if (f->number == 5 && var) {
      if (f->varint > 2) return WasmResult::kBadArgument;
      decl.span = static_cast<uint32_t>(f->varint);
    } else if (f->number <= 5) {
      return WasmResult::kBadArgument;  // a known field with the wrong wire type
    }
  }
  if (reader.bad() || name.empty()) return WasmResult::kBadArgument;
  return plugin.declareProperty(std::move(name), std::move(decl));
}

// SetEnvoyFilterStateArguments: path = 1, value = 2, span = 3. Envoy answers NotFound for a key without a
// registered filter-state object factory; no filter here consumes Envoy's filter-state objects, so every
// well-formed call is NotFound (claiming success would let a plugin believe e.g. envoy.tcp_proxy.cluster took
// effect, and would write around declare_property's read-only marks).
WasmResult setEnvoyFilterState(PluginVm& plugin, std::string_view args) {
  WireReader reader(args);
  std::string_view path, value;
  while (auto f = reader.next()) {
    if (f->number == 1 && f->wire_type == 2) {
      path = f->bytes;
    } else if (f->number == 2 && f->wire_type == 2) {
      value = f->bytes;
    } else if (f->number == 3 && f->wire_type == 0) {
      if (f->varint > 2) return WasmResult::kBadArgument;
    } else if (f->number <= 3) {
      return WasmResult::kBadArgument;
    }
  }
  if (reader.bad() || path.empty()) return WasmResult::kBadArgument;
  (void)plugin;
  (void)value;
  return WasmResult::kNotFound;
}

}  // namespace

WasmResult callForeignFunction(PluginVm& plugin, std::string_view name, std::string_view args,
                               std::string* result) {
  result->clear();
  if (name == "compress") return compressBytes(args, result);
  if (name == "uncompress") return uncompressBytes(args, result);
  if (name == "declare_property") return declareProperty(plugin, args);
  if (name == "set_envoy_filter_state") return setEnvoyFilterState(plugin, args);
  if (name == "clear_route_cache") {
    if (StreamContext* stream = plugin.currentStream()) stream->clearRouteCache();
    return WasmResult::kOk;
  }
  return WasmResult::kNotFound;
}

}  // namespace skiff::wasm
