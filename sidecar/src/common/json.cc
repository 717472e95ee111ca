// JSON string escaping (RFC 8259): quotes, backslashes and control characters.
#include "skiff/common/json.h"

namespace skiff {

void appendJsonEscaped(std::string_view in, std::string& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (unsigned char c : in) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 0xf];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
}

}  // namespace skiff
