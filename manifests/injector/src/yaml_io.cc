// yaml_io: yaml-cpp nodes ↔ Value, with the scalar typing kubectl and the API server expect.
#include "skiff/inject/yaml_io.h"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace skiff::inject {
namespace {

bool isOneOf(std::string_view s, std::initializer_list<std::string_view> words) {
  for (auto w : words) {
    if (s == w) return true;
  }
  return false;
}

// YAML 1.2 core schema resolution of a plain scalar.
Value resolvePlain(const std::string& s) {
  if (isOneOf(s, {"", "~", "null", "Null", "NULL"})) return Value();
  if (isOneOf(s, {"true", "True", "TRUE"})) return Value(true);
  if (isOneOf(s, {"false", "False", "FALSE"})) return Value(false);
  std::string_view v = s;
  bool neg = false;
  if (!v.empty() && (v[0] == '-' || v[0] == '+')) {
    neg = v[0] == '-';
    v.remove_prefix(1);
  }
  int base = 10;
  if (v.size() > 2 && v[0] == '0' && (v[1] == 'x' || v[1] == 'o')) {
    base = v[1] == 'x' ? 16 : 8;
    v.remove_prefix(2);
  }
  if (!v.empty()) {
    int64_t i;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), i, base);
    if (ec == std::errc() && p == v.data() + v.size()) return Value(neg ? -i : i);
  }
  if (isOneOf(s, {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"})) return Value(HUGE_VAL);
  if (isOneOf(s, {"-.inf", "-.Inf", "-.INF"})) return Value(-HUGE_VAL);
  if (isOneOf(s, {".nan", ".NaN", ".NAN"})) return Value(std::nan(""));
  // [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
  size_t i = 0;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
  size_t digits = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++digits;
  }
  if (digits > 0 && i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    size_t exp = 0;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++exp;
    if (exp == 0) digits = 0;
  }
  if (digits > 0 && i == s.size()) return Value(std::strtod(s.c_str(), nullptr));
  return Value(s);
}

Value fromNode(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return Value();
    case YAML::NodeType::Scalar: {
      const std::string& tag = n.Tag();
      if (tag == "!" || tag == "tag:yaml.org,2002:str") return Value(n.Scalar());
      return resolvePlain(n.Scalar());
    }
    case YAML::NodeType::Sequence: {
      Array a;
      a.reserve(n.size());
      for (const auto& e : n) a.push_back(fromNode(e));
      return Value(std::move(a));
    }
    case YAML::NodeType::Map: {
      Object o;
      for (const auto& kv : n) {
        std::string key = kv.first.IsScalar() ? kv.first.Scalar() : YAML::Dump(kv.first);
        o.emplace_back(std::move(key), fromNode(kv.second));
      }
      return Value(std::move(o));
    }
  }
  return Value();
}

// True when a plain scalar with this text would not read back as this string under YAML 1.1 or 1.2.
bool needsQuotes(const std::string& s) {
  if (s.empty()) return true;
  if (isOneOf(s, {"~",     "null",  "Null", "NULL", "y",  "Y",    "yes",  "Yes",  "YES",
                  "n",     "N",     "no",   "No",   "NO", "true", "True", "TRUE", "false",
                  "False", "FALSE", "on",   "On",   "ON", "off",  "Off",  "OFF",  "="})) {
    return true;
  }
  size_t i = (s[0] == '-' || s[0] == '+') ? 1 : 0;
  return i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.');
}

// A block literal (`|`) reads back exactly only for text ending in one newline without odd whitespace.
bool literalSafe(const std::string& s) {
  if (s.size() < 2 || s.back() != '\n' || s[s.size() - 2] == '\n') return false;
  if (s[0] == ' ' || s[0] == '\n') return false;
  char prev = 0;
  for (char c : s) {
    if (c == '\n' && (prev == ' ' || prev == '\t')) return false;
    if (c != '\n' && (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)) return false;
    prev = c;
  }
  return true;
}

void emitString(YAML::Emitter& out, const std::string& s) {
  if (s.find('\n') != std::string::npos) {
    if (literalSafe(s)) {
      out << YAML::Literal << s;
    } else {
      out << YAML::DoubleQuoted << s;
    }
  } else if (needsQuotes(s)) {
    out << YAML::DoubleQuoted << s;
  } else {
    out << s;
  }
}

void emit(YAML::Emitter& out, const Value& v) {
  switch (v.type()) {
    case Value::Type::kNull:
      out << YAML::Null;
      break;
    case Value::Type::kBool:
      out << (v.asBool() ? "true" : "false");
      break;
    case Value::Type::kInt:
      out << std::to_string(v.asInt());
      break;
    case Value::Type::kDouble: {
      double d = v.asDouble();
      if (std::isnan(d)) {
        out << ".nan";
      } else if (std::isinf(d)) {
        out << (d > 0 ? ".inf" : "-.inf");
      } else {
        char buf[32];
        std::snprintf(buf, sizeof(buf), "%.17g", d);
        std::string text = buf;
        // Keep it a float for readers: "1" would come back as an int.
        if (text.find_first_of(".eEn") == std::string::npos) text += ".0";
        out << text;
      }
      break;
    }
    case Value::Type::kString:
      emitString(out, v.asString());
      break;
    case Value::Type::kArray:
      if (v.asArray().empty()) {
        out << YAML::Flow << YAML::BeginSeq << YAML::EndSeq;
        break;
      }
      out << YAML::BeginSeq;
      for (const auto& e : v.asArray()) emit(out, e);
      out << YAML::EndSeq;
      break;
    case Value::Type::kObject:
      if (v.asObject().empty()) {
        out << YAML::Flow << YAML::BeginMap << YAML::EndMap;
        break;
      }
      out << YAML::BeginMap;
      for (const auto& [k, e] : v.asObject()) {
        out << YAML::Key;
        emitString(out, k);
        out << YAML::Value;
        emit(out, e);
      }
      out << YAML::EndMap;
      break;
  }
}

}  // namespace

bool parseYamlStream(std::string_view text, std::vector<Value>* docs, std::string* error) {
  try {
    for (const auto& node : YAML::LoadAll(std::string(text))) docs->push_back(fromNode(node));
    return true;
  } catch (const YAML::Exception& e) {
    *error = e.what();
    return false;
  }
}

bool parseYaml(std::string_view text, Value* out, std::string* error) {
  std::vector<Value> docs;
  if (!parseYamlStream(text, &docs, error)) return false;
  if (docs.size() > 1) {
    *error = "expected one YAML document, got " + std::to_string(docs.size());
    return false;
  }
  *out = docs.empty() ? Value() : std::move(docs[0]);
  return true;
}

std::string toYaml(const Value& v) {
  YAML::Emitter out;
  out.SetIndent(2);
  out.SetSeqFormat(YAML::Block);
  emit(out, v);
  return std::string(out.c_str()) + "\n";
}

std::string toYamlStream(const std::vector<Value>& docs) {
  std::string out;
  for (size_t i = 0; i < docs.size(); ++i) {
    if (i > 0) out += "---\n";
    out += toYaml(docs[i]);
  }
  return out;
}

}  // namespace skiff::inject
