// Value: the ordered document tree, JSON parsing and printing.
#include "skiff/inject/value.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>

#include "skiff/common/json.h"

namespace skiff::inject {

Value::Value(const Value& other) {
  *this = other;
}

Value& Value::operator=(const Value& other) {
  if (this == &other) return *this;
  switch (other.type()) {
    case Type::kArray:
      data_ = std::make_shared<Array>(other.asArray());
      break;
    case Type::kObject:
      data_ = std::make_shared<Object>(other.asObject());
      break;
    default:
      data_ = other.data_;
  }
  return *this;
}

const Value* Value::find(std::string_view key) const {
  if (!isObject()) return nullptr;
  for (const auto& [k, v] : asObject()) {
    if (k == key) return &v;
  }
  return nullptr;
}

Value* Value::find(std::string_view key) {
  return const_cast<Value*>(static_cast<const Value*>(this)->find(key));
}

Value& Value::operator[](std::string_view key) {
  if (isNull()) *this = object();
  if (Value* v = find(key)) return *v;
  asObject().emplace_back(std::string(key), Value());
  return asObject().back().second;
}

bool Value::erase(std::string_view key) {
  if (!isObject()) return false;
  auto& o = asObject();
  for (auto it = o.begin(); it != o.end(); ++it) {
    if (it->first == key) {
      o.erase(it);
      return true;
    }
  }
  return false;
}

const Value* Value::at(std::initializer_list<std::string_view> path) const {
  const Value* v = this;
  for (auto key : path) {
    v = v->find(key);
    if (v == nullptr) return nullptr;
  }
  return v;
}

Value* Value::at(std::initializer_list<std::string_view> path) {
  return const_cast<Value*>(static_cast<const Value*>(this)->at(path));
}

std::string Value::getString(std::string_view key, std::string_view fallback) const {
  const Value* v = find(key);
  return v != nullptr && v->isString() ? v->asString() : std::string(fallback);
}

size_t Value::size() const {
  if (isArray()) return asArray().size();
  if (isObject()) return asObject().size();
  return 0;
}

bool Value::operator==(const Value& other) const {
  if (isNumber() && other.isNumber()) {
    if (isInt() && other.isInt()) return asInt() == other.asInt();
    return asDouble() == other.asDouble();
  }
  if (type() != other.type()) return false;
  switch (type()) {
    case Type::kNull:
      return true;
    case Type::kBool:
      return asBool() == other.asBool();
    case Type::kString:
      return asString() == other.asString();
    case Type::kArray:
      return asArray() == other.asArray();
    case Type::kObject: {
      // Key order does not matter for equality.
      if (size() != other.size()) return false;
      for (const auto& [k, v] : asObject()) {
        const Value* o = other.find(k);
        if (o == nullptr || *o != v) return false;
      }
      return true;
    }
    default:
      return false;
  }
}

namespace {

class JsonParser {
 public:
  explicit JsonParser(std::string_view text) : s_(text) {}

  bool parse(Value* out, std::string* error) {
    skipSpace();
    if (!parseValue(out, 0)) {
      *error = error_ + " at offset " + std::to_string(pos_);
      return false;
    }
    skipSpace();
    if (pos_ != s_.size()) {
      *error = "trailing characters at offset " + std::to_string(pos_);
      return false;
    }
    return true;
  }

 private:
  static constexpr int kMaxDepth = 200;

  bool fail(const char* msg) {
    error_ = msg;
    return false;
  }
  void skipSpace() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) {
      ++pos_;
    }
  }
  bool literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  bool parseValue(Value* out, int depth) {
    if (depth > kMaxDepth) return fail("nesting too deep");
    if (pos_ >= s_.size()) return fail("unexpected end of input");
    char c = s_[pos_];
    if (c == '{') return parseObject(out, depth);
    if (c == '[') return parseArray(out, depth);
    if (c == '"') {
      std::string str;
      if (!parseString(&str)) return false;
      *out = Value(std::move(str));
      return true;
    }
    if (literal("true")) return (*out = Value(true)), true;
    if (literal("false")) return (*out = Value(false)), true;
    if (literal("null")) return (*out = Value()), true;
    return parseNumber(out);
  }

  bool parseObject(Value* out, int depth) {
    ++pos_;
    Object obj;
    skipSpace();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      *out = Value(std::move(obj));
      return true;
    }
    while (true) {
      skipSpace();
      if (pos_ >= s_.size() || s_[pos_] != '"') return fail("expected a string key");
      std::string key;
      if (!parseString(&key)) return false;
      skipSpace();
      if (pos_ >= s_.size() || s_[pos_] != ':') return fail("expected ':'");
      ++pos_;
      skipSpace();
      Value v;
      if (!parseValue(&v, depth + 1)) return false;
      obj.emplace_back(std::move(key), std::move(v));
      skipSpace();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == '}') {
        ++pos_;
        *out = Value(std::move(obj));
        return true;
      }
      return fail("expected ',' or '}'");
    }
  }

  bool parseArray(Value* out, int depth) {
    ++pos_;
    Array arr;
    skipSpace();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      *out = Value(std::move(arr));
      return true;
    }
    while (true) {
      skipSpace();
      Value v;
      if (!parseValue(&v, depth + 1)) return false;
      arr.push_back(std::move(v));
      skipSpace();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == ']') {
        ++pos_;
        *out = Value(std::move(arr));
        return true;
      }
      return fail("expected ',' or ']'");
    }
  }

  bool hex4(uint32_t* cp) {
    if (pos_ + 4 > s_.size()) return fail("short \\u escape");
    *cp = 0;
    for (int i = 0; i < 4; ++i) {
      char h = s_[pos_++];
      *cp <<= 4;
      if (h >= '0' && h <= '9') {
        *cp |= h - '0';
      } else if (h >= 'a' && h <= 'f') {
        *cp |= h - 'a' + 10;
      } else if (h >= 'A' && h <= 'F') {
        *cp |= h - 'A' + 10;
      } else {
        return fail("bad \\u escape");
      }
    }
    return true;
  }

  static void appendUtf8(uint32_t cp, std::string* out) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  bool parseString(std::string* out) {
    ++pos_;  // opening quote
    while (pos_ < s_.size()) {
      char c = s_[pos_++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return fail("control character in string");
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (pos_ >= s_.size()) break;
      char e = s_[pos_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out->push_back(e);
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'n':
          out->push_back('\n');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'u': {
          uint32_t cp;
          if (!hex4(&cp)) return false;
          if (cp >= 0xD800 && cp < 0xDC00) {
            uint32_t low;
            if (!literal("\\u") || !hex4(&low) || low < 0xDC00 || low > 0xDFFF) {
              return fail("bad surrogate pair");
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          appendUtf8(cp, out);
          break;
        }
        default:
          return fail("bad escape");
      }
    }
    return fail("unterminated string");
  }

  bool parseNumber(Value* out) {
    size_t start = pos_;
    if (pos_ < s_.size() && s_[pos_] == '-') ++pos_;
    bool is_float = false;
    while (pos_ < s_.size()) {
      char c = s_[pos_];
      if (c >= '0' && c <= '9') {
        ++pos_;
      } else if (c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
        is_float = true;
        ++pos_;
      } else {
        break;
      }
    }
    std::string_view num = s_.substr(start, pos_ - start);
    if (num.empty() || num == "-") return fail("unexpected character");
    if (!is_float) {
      int64_t i;
      auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), i);
      if (ec == std::errc() && p == num.data() + num.size()) {
        *out = Value(i);
        return true;
      }
    }
    std::string copy(num);
    char* end = nullptr;
    double d = std::strtod(copy.c_str(), &end);
    if (end != copy.c_str() + copy.size()) return fail("bad number");
    *out = Value(d);
    return true;
  }

  std::string_view s_;
  size_t pos_ = 0;
  std::string error_;
};

void appendEscaped(std::string_view in, std::string& out) {
  out.push_back('"');
  skiff::appendJsonEscaped(in, out);
  out.push_back('"');
}

void write(const Value& v, std::string& out) {
  switch (v.type()) {
    case Value::Type::kNull:
      out += "null";
      break;
    case Value::Type::kBool:
      out += v.asBool() ? "true" : "false";
      break;
    case Value::Type::kInt:
      out += std::to_string(v.asInt());
      break;
    case Value::Type::kDouble: {
      double d = v.asDouble();
      if (!std::isfinite(d)) {
        out += "null";
        break;
      }
      char buf[32];
      std::snprintf(buf, sizeof(buf), "%.17g", d);
      out += buf;
      break;
    }
    case Value::Type::kString:
      appendEscaped(v.asString(), out);
      break;
    case Value::Type::kArray: {
      out.push_back('[');
      bool first = true;
      for (const auto& e : v.asArray()) {
        if (!first) out.push_back(',');
        first = false;
        write(e, out);
      }
      out.push_back(']');
      break;
    }
    case Value::Type::kObject: {
      out.push_back('{');
      bool first = true;
      for (const auto& [k, e] : v.asObject()) {
        if (!first) out.push_back(',');
        first = false;
        appendEscaped(k, out);
        out.push_back(':');
        write(e, out);
      }
      out.push_back('}');
      break;
    }
  }
}

}  // namespace

bool parseJson(std::string_view text, Value* out, std::string* error) {
  return JsonParser(text).parse(out, error);
}

std::string toJson(const Value& v) {
  std::string out;
  write(v, out);
  return out;
}

std::string jsonPointerEscape(std::string_view token) {
  std::string out;
  for (char c : token) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace skiff::inject
