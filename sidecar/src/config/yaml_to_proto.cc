// YAML/JSON text -> protobuf message, converting scalars by the target field's type.
#include "skiff/config/yaml_to_proto.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>
#include <optional>
#include <string>

#include <fmt/format.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/json_util.h>
#include <yaml-cpp/yaml.h>

#include "config/json_text.h"
#include "skiff/config/config_error.h"
#include "skiff/config/extension_registry.h"

namespace skiff::config {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumDescriptor;
using google::protobuf::FieldDescriptor;

std::string join(std::string_view path, std::string_view key) {
  if (path.empty()) return std::string(key);
  return fmt::format("{}.{}", path, key);
}

std::string where(std::string_view path) {
  return path.empty() ? "<root>" : std::string(path);
}

[[noreturn]] void fail(std::string_view path, std::string_view what) {
  throw ConfigError(fmt::format("{}: {}", where(path), what));
}

std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Null:
      return "null";
    default:
      return fmt::format("'{}'", node.Scalar());
  }
}

// Plain (unquoted) scalars may stand for booleans, numbers or null; quoted ones never do.
bool isPlain(const YAML::Node& node) {
  return node.Tag() != "!";
}

bool isNullScalar(const YAML::Node& node) {
  if (node.IsNull()) return true;
  if (!node.IsScalar() || !isPlain(node)) return false;
  const std::string& s = node.Scalar();
  return s == "null" || s == "Null" || s == "NULL" || s == "~";
}

std::optional<bool> parseBool(const std::string& s) {
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  return std::nullopt;
}

bool looksLikeJsonNumber(const std::string& s) {
  if (s.empty()) return false;
  double value = 0;
  const char* end = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(s.data() + (s[0] == '+' ? 1 : 0), end, value);
  return ec == std::errc() && ptr == end && std::isfinite(value);
}

bool isWellKnownWithSpecialJson(std::string_view full_name) {
  static const char* const kNames[] = {
      "google.protobuf.Any",         "google.protobuf.Duration",    "google.protobuf.Timestamp",
      "google.protobuf.FieldMask",   "google.protobuf.Struct",      "google.protobuf.Value",
      "google.protobuf.ListValue",   "google.protobuf.DoubleValue", "google.protobuf.FloatValue",
      "google.protobuf.Int64Value",  "google.protobuf.UInt64Value", "google.protobuf.Int32Value",
      "google.protobuf.UInt32Value", "google.protobuf.BoolValue",   "google.protobuf.StringValue",
      "google.protobuf.BytesValue"};
  for (const char* name : kNames) {
    if (full_name == name) return true;
  }
  return false;
}

bool isTypedStruct(std::string_view type_name) {
  return type_name == "udpa.type.v1.TypedStruct" || type_name == "xds.type.v3.TypedStruct";
}

std::string hintForRemoved(std::string_view message, std::string_view field) {
  if (field == "hosts") return "; use load_assignment";
  if (field == "tls_context") return "; use transport_socket";
  if (field == "config") return "; use typed_config";
  if (field == "per_filter_config") return "; use typed_per_filter_config";
  if (field == "regex" || field == "regex_match") return "; use safe_regex";
  (void)message;
  return "";
}

class Converter {
 public:
  explicit Converter(std::vector<std::string>& warnings) : warnings_(warnings) {}

  void message(const YAML::Node& node, const Descriptor* type, const std::string& path, JsonText& out) {
    const std::string& name = type->full_name();
    if (isWellKnownWithSpecialJson(name)) {
      wellKnown(node, type, path, out);
      return;
    }
    if (isNullScalar(node)) {
      out.beginObject();
      out.endObject();
      return;
    }
    if (!node.IsMap()) fail(path, fmt::format("expected a map for {}, got {}", name, describe(node)));
    out.beginObject();
    fields(node, type, path, out, /*skip_key=*/"");
    out.endObject();
  }

 private:
  // Writes the fields of `node` (a map) into an already open JSON object.
  void fields(const YAML::Node& node, const Descriptor* type, const std::string& path, JsonText& out,
              std::string_view skip_key) {
    std::vector<std::pair<std::string, YAML::Node>> entries;
    collectEntries(node, path, entries);
    std::map<const google::protobuf::OneofDescriptor*, std::string> oneofs_seen;
    for (const auto& [key, value] : entries) {
      if (!skip_key.empty() && key == skip_key) continue;
      const std::string field_path = join(path, key);
      const FieldDescriptor* field = type->FindFieldByName(key);
      if (field == nullptr) field = type->FindFieldByCamelcaseName(key);
      if (field == nullptr) field = findByJsonName(type, key);
      if (field == nullptr) {
        if (isReservedName(type, key)) {
          fail(field_path,
               fmt::format("v2 field removed in the v3 API{}", hintForRemoved(type->full_name(), key)));
        }
        warnings_.push_back(fmt::format("{}: unknown field in {} (ignored)", field_path, type->full_name()));
        continue;
      }
      if (isNullScalar(value)) continue;  // null means "not set", as in proto3 JSON
      if (const auto* oneof = field->real_containing_oneof()) {
        auto [it, inserted] = oneofs_seen.emplace(oneof, key);
        if (!inserted) {
          fail(field_path, fmt::format("'{}' and '{}' are both set but belong to the same oneof '{}'",
                                       it->second, key, oneof->name()));
        }
      }
      out.key(field->json_name());
      // An optional HTTP filter may name a type this build lacks: keep it (as a TypedStruct) so
      // validation can drop the filter with a warning, as Envoy does.
      optional_any_ = field->name() == "typed_config" && isOptionalHttpFilter(type, entries);
      fieldValue(value, field, field_path, out);
      optional_any_ = false;
    }
  }

  // Map entries in order, with YAML merge keys ("<<") expanded.
  void collectEntries(const YAML::Node& node, const std::string& path,
                      std::vector<std::pair<std::string, YAML::Node>>& entries) {
    for (const auto& kv : node) {
      if (!kv.first.IsScalar()) fail(path, "map keys must be scalars");
      const std::string& key = kv.first.Scalar();
      if (key == "<<" && isPlain(kv.first)) {
        if (kv.second.IsMap()) {
          collectEntries(kv.second, path, entries);
        } else if (kv.second.IsSequence()) {
          for (const auto& item : kv.second) collectEntries(item, path, entries);
        }
        continue;
      }
      entries.emplace_back(key, kv.second);
    }
  }

  static const FieldDescriptor* findByJsonName(const Descriptor* type, const std::string& key) {
    for (int i = 0; i < type->field_count(); ++i) {
      if (type->field(i)->json_name() == key) return type->field(i);
    }
    return nullptr;
  }

  static bool isReservedName(const Descriptor* type, const std::string& key) {
    if (type->IsReservedName(key)) return true;
    // A lowerCamelCase spelling of a reserved snake_case name.
    for (int i = 0; i < type->reserved_name_count(); ++i) {
      std::string camel;
      bool upper = false;
      for (char c : type->reserved_name(i)) {
        if (c == '_') {
          upper = true;
        } else {
          camel += upper ? static_cast<char>(std::toupper(c)) : c;
          upper = false;
        }
      }
      if (camel == key) return true;
    }
    return false;
  }

  void fieldValue(const YAML::Node& node, const FieldDescriptor* field, const std::string& path,
                  JsonText& out) {
    if (field->is_map()) {
      if (!node.IsMap()) fail(path, fmt::format("expected a map, got {}", describe(node)));
      const FieldDescriptor* value_field = field->message_type()->map_value();
      out.beginObject();
      for (const auto& kv : node) {
        const std::string& key = kv.first.Scalar();
        out.key(key);
        const std::string entry_path = fmt::format("{}[\"{}\"]", path, key);
        if (isNullScalar(kv.second) && value_field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
          out.beginObject();
          out.endObject();
          continue;
        }
        single(kv.second, value_field, entry_path, out);
      }
      out.endObject();
      return;
    }
    if (field->is_repeated()) {
      if (!node.IsSequence()) fail(path, fmt::format("expected a list, got {}", describe(node)));
      out.beginArray();
      size_t index = 0;
      for (const auto& item : node) {
        single(item, field, fmt::format("{}[{}]", path, index++), out);
      }
      out.endArray();
      return;
    }
    single(node, field, path, out);
  }

  void single(const YAML::Node& node, const FieldDescriptor* field, const std::string& path, JsonText& out) {
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      message(node, field->message_type(), path, out);
      return;
    }
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_ENUM) {
      enumValue(node, field->enum_type(), path, out);
      return;
    }
    scalar(node, field->cpp_type(), field->type() == FieldDescriptor::TYPE_BYTES, path, out);
  }

  void enumValue(const YAML::Node& node, const EnumDescriptor* type, const std::string& path, JsonText& out) {
    if (type->full_name() == "google.protobuf.NullValue") {
      out.null();
      return;
    }
    if (!node.IsScalar())
      fail(path, fmt::format("expected a value of enum {}, got {}", type->full_name(), describe(node)));
    const std::string& s = node.Scalar();
    int number = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), number);
    if (ec == std::errc() && ptr == s.data() + s.size()) {
      out.rawNumber(s);
      return;
    }
    if (type->FindValueByName(s) == nullptr) {
      std::string allowed;
      for (int i = 0; i < type->value_count() && i < 12; ++i) {
        if (!allowed.empty()) allowed += ", ";
        allowed += type->value(i)->name();
      }
      if (type->value_count() > 12) allowed += ", ...";
      fail(path, fmt::format("unknown value '{}' for enum {} (expected one of: {})", s, type->full_name(),
                             allowed));
    }
    out.string(s);
  }

  void scalar(const YAML::Node& node, FieldDescriptor::CppType type, bool bytes, const std::string& path,
              JsonText& out) {
    if (!node.IsScalar()) fail(path, fmt::format("expected a scalar, got {}", describe(node)));
    const std::string& s = node.Scalar();
    switch (type) {
      case FieldDescriptor::CPPTYPE_BOOL: {
        auto value = parseBool(s);
        if (!value && isPlain(node)) {
          if (s == "yes" || s == "Yes" || s == "on" || s == "On") value = true;
          if (s == "no" || s == "No" || s == "off" || s == "Off") value = false;
        }
        if (!value) fail(path, fmt::format("expected a boolean, got '{}'", s));
        out.boolean(*value);
        return;
      }
      case FieldDescriptor::CPPTYPE_INT32:
        integer<int32_t>(s, path, out, false);
        return;
      case FieldDescriptor::CPPTYPE_UINT32:
        integer<uint32_t>(s, path, out, false);
        return;
      case FieldDescriptor::CPPTYPE_INT64:
        integer<int64_t>(s, path, out, true);
        return;
      case FieldDescriptor::CPPTYPE_UINT64:
        integer<uint64_t>(s, path, out, true);
        return;
      case FieldDescriptor::CPPTYPE_FLOAT:
      case FieldDescriptor::CPPTYPE_DOUBLE:
        floating(s, path, out);
        return;
      case FieldDescriptor::CPPTYPE_STRING:
        (void)bytes;  // bytes are base64 text in JSON; passed through as written
        out.string(s);
        return;
      default:
        fail(path, "unsupported field type");
    }
  }

  template <class Int>
  void integer(const std::string& s, const std::string& path, JsonText& out, bool quote) {
    Int value{};
    const char* begin = s.data() + (!s.empty() && s[0] == '+' ? 1 : 0);
    auto [ptr, ec] = std::from_chars(begin, s.data() + s.size(), value);
    if (ec == std::errc::result_out_of_range) fail(path, fmt::format("integer '{}' is out of range", s));
    if (ec != std::errc() || ptr != s.data() + s.size() || s.empty()) {
      fail(path, fmt::format("expected an integer, got '{}'", s));
    }
    if (quote) {
      out.string(fmt::format("{}", value));
    } else {
      out.rawNumber(fmt::format("{}", value));
    }
  }

  void floating(const std::string& s, const std::string& path, JsonText& out) {
    if (s == ".inf" || s == ".Inf" || s == "+.inf" || s == "Infinity") return out.string("Infinity");
    if (s == "-.inf" || s == "-.Inf" || s == "-Infinity") return out.string("-Infinity");
    if (s == ".nan" || s == ".NaN" || s == "NaN") return out.string("NaN");
    if (!looksLikeJsonNumber(s)) fail(path, fmt::format("expected a number, got '{}'", s));
    double value = 0;
    std::from_chars(s.data() + (s[0] == '+' ? 1 : 0), s.data() + s.size(), value);
    out.rawNumber(fmt::format("{}", value));
  }

  void wellKnown(const YAML::Node& node, const Descriptor* type, const std::string& path, JsonText& out) {
    const std::string& name = type->full_name();
    if (name == "google.protobuf.Any") return any(node, path, out);
    if (name == "google.protobuf.Struct") {
      if (isNullScalar(node)) {
        out.beginObject();
        out.endObject();
        return;
      }
      if (!node.IsMap()) fail(path, fmt::format("expected a map, got {}", describe(node)));
      return freeJson(node, path, out);
    }
    if (name == "google.protobuf.Value") return freeJson(node, path, out);
    if (name == "google.protobuf.ListValue") {
      if (!node.IsSequence()) fail(path, fmt::format("expected a list, got {}", describe(node)));
      return freeJson(node, path, out);
    }
    // Wrappers: the plain value (a {value: x} map is accepted too).
    const YAML::Node& inner = node.IsMap() && node["value"] ? node["value"] : node;
    if (name == "google.protobuf.Duration") return duration(inner, path, out);
    if (name == "google.protobuf.Timestamp" || name == "google.protobuf.FieldMask") {
      if (!inner.IsScalar()) fail(path, fmt::format("expected a string, got {}", describe(inner)));
      return out.string(inner.Scalar());
    }
    const FieldDescriptor* value_field = type->FindFieldByName("value");
    single(inner, value_field, path, out);
  }

  void duration(const YAML::Node& node, const std::string& path, JsonText& out) {
    if (!node.IsScalar())
      fail(path, fmt::format("expected a duration such as \"5s\", got {}", describe(node)));
    const std::string& s = node.Scalar();
    // [-]digits[.digits]s, at most 9 fractional digits.
    size_t i = 0;
    if (i < s.size() && s[i] == '-') ++i;
    size_t digits = 0, fraction = 0;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++digits;
    if (i < s.size() && s[i] == '.') {
      ++i;
      while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++fraction;
    }
    const bool ok = (digits > 0 || fraction > 0) && fraction <= 9 && i + 1 == s.size() && s[i] == 's';
    if (!ok) {
      fail(path,
           fmt::format(
               "invalid duration '{}' (expected seconds with an 's' suffix, e.g. \"5s\" or \"0.25s\")", s));
    }
    out.string(s);
  }

  void any(const YAML::Node& node, const std::string& path, JsonText& out) {
    if (!node.IsMap()) fail(path, fmt::format("expected a map with \"@type\", got {}", describe(node)));
    const YAML::Node type_node = node["@type"];
    if (!type_node || !type_node.IsScalar()) fail(path, "Any without \"@type\"");
    const std::string& type_url = type_node.Scalar();
    std::string_view type_name = typeNameOfUrl(type_url);
    if (isTypedStruct(type_name)) {
      const YAML::Node inner_url = node["type_url"] ? node["type_url"] : node["typeUrl"];
      if (!inner_url || !inner_url.IsScalar()) fail(join(path, "type_url"), "TypedStruct without type_url");
      const YAML::Node value = node["value"];
      YAML::Node fields_node = value && value.IsMap() ? value : YAML::Node(YAML::NodeType::Map);
      return anyOf(fields_node, inner_url.Scalar(), join(path, "value"), out, "");
    }
    anyOf(node, type_url, path, out, "@type");
  }

  // An Any whose payload fields are the map `node` (minus `skip_key`).
  void anyOf(const YAML::Node& node, const std::string& type_url, const std::string& path, JsonText& out,
             std::string_view skip_key) {
    const std::string type_name(typeNameOfUrl(type_url));
    const Descriptor* type =
        google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(type_name);
    if (type == nullptr && optional_any_) {
      optional_any_ = false;
      out.beginObject();
      out.key("@type");
      out.string("type.googleapis.com/udpa.type.v1.TypedStruct");
      out.key("typeUrl");
      out.string(type_url);
      out.key("value");
      out.beginObject();
      std::vector<std::pair<std::string, YAML::Node>> entries;
      collectEntries(node, path, entries);
      for (const auto& [key, value] : entries) {
        if (key == skip_key) continue;
        out.key(key);
        freeJson(value, join(path, key), out);
      }
      out.endObject();
      out.endObject();
      return;
    }
    optional_any_ = false;
    if (type == nullptr) {
      fail(path, fmt::format("unknown type '{}' (not compiled into this proxy)", type_url));
    }
    // Keep the URL's prefix but make sure there is one (JSON needs "<prefix>/<name>").
    const std::string url =
        type_url.find('/') == std::string::npos ? "type.googleapis.com/" + type_url : type_url;
    out.beginObject();
    out.key("@type");
    out.string(url);
    if (isWellKnownWithSpecialJson(type->full_name())) {
      const YAML::Node value = node["value"];
      if (value && !isNullScalar(value)) {
        out.key("value");
        message(value, type, join(path, "value"), out);
      }
    } else {
      fields(node, type, path, out, skip_key);
    }
    out.endObject();
  }

  // Free-form JSON (Struct/Value): plain scalars become bools, numbers or null.
  void freeJson(const YAML::Node& node, const std::string& path, JsonText& out) {
    switch (node.Type()) {
      case YAML::NodeType::Map: {
        std::vector<std::pair<std::string, YAML::Node>> entries;
        collectEntries(node, path, entries);
        out.beginObject();
        for (const auto& [key, value] : entries) {
          out.key(key);
          freeJson(value, join(path, key), out);
        }
        out.endObject();
        return;
      }
      case YAML::NodeType::Sequence: {
        out.beginArray();
        size_t index = 0;
        for (const auto& item : node) freeJson(item, fmt::format("{}[{}]", path, index++), out);
        out.endArray();
        return;
      }
      case YAML::NodeType::Scalar: {
        const std::string& s = node.Scalar();
        if (isPlain(node)) {
          if (isNullScalar(node)) return out.null();
          if (auto b = parseBool(s)) return out.boolean(*b);
          if (looksLikeJsonNumber(s) && s.find_first_not_of("+-0123456789.eE") == std::string::npos) {
            double value = 0;
            std::from_chars(s.data() + (s[0] == '+' ? 1 : 0), s.data() + s.size(), value);
            return out.rawNumber(fmt::format("{}", value));
          }
        }
        return out.string(s);
      }
      default:
        return out.null();
    }
  }

  static bool isOptionalHttpFilter(const Descriptor* type,
                                   const std::vector<std::pair<std::string, YAML::Node>>& entries) {
    if (type->full_name() != "envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter") {
      return false;
    }
    for (const auto& [key, value] : entries) {
      if ((key == "is_optional" || key == "isOptional") && value.IsScalar() &&
          parseBool(value.Scalar()).value_or(false)) {
        return true;
      }
    }
    return false;
  }

  std::vector<std::string>& warnings_;
  bool optional_any_ = false;  // the Any being converted belongs to an optional HTTP filter
};

std::string yamlErrorText(const YAML::Exception& e) {
  if (e.mark.is_null()) return e.msg;
  return fmt::format("line {}, column {}: {}", e.mark.line + 1, e.mark.column + 1, e.msg);
}

}  // namespace

void loadMessageYaml(std::string_view text, google::protobuf::Message& message,
                     std::vector<std::string>& warnings, std::string_view root_path) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    throw ConfigError(fmt::format("{}: invalid YAML: {}", where(root_path), yamlErrorText(e)));
  }
  JsonText json;
  Converter converter(warnings);
  const std::string path(root_path);
  try {
    converter.message(root, message.GetDescriptor(), path, json);
  } catch (const YAML::Exception& e) {
    throw ConfigError(fmt::format("{}: invalid YAML: {}", where(root_path), yamlErrorText(e)));
  }
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  message.Clear();
  auto status = google::protobuf::util::JsonStringToMessage(json.str(), &message, options);
  if (!status.ok()) {
    throw ConfigError(fmt::format("{}: {}", where(root_path), std::string(status.message())));
  }
}

}  // namespace skiff::config
