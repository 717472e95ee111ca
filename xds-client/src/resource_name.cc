// Reads field 1 (the resource name) straight from the wire format.

#include "resource_name.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>

namespace skiff::xds {

std::optional<std::string> resourceNameOf(std::string_view bytes) {
  using google::protobuf::internal::WireFormatLite;
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()),
                                            static_cast<int>(bytes.size()));
  while (true) {
    const uint32_t tag = in.ReadTag();
    if (tag == 0) return std::nullopt;
    if (WireFormatLite::GetTagFieldNumber(tag) == 1 &&
        WireFormatLite::GetTagWireType(tag) == WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
      std::string value;
      if (!WireFormatLite::ReadString(&in, &value)) return std::nullopt;
      return value;  // the first occurrence: later bytes are the subscriber's to validate
    }
    if (!WireFormatLite::SkipField(&in, tag)) return std::nullopt;
  }
}

}  // namespace skiff::xds
