// A JSON/YAML document tree with ordered object keys: what manifests and AdmissionReviews are read into.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace skiff::inject {

class Value;
using Array = std::vector<Value>;
// Objects keep insertion order (Kubernetes YAML reads better that way); lookups are linear, objects are
// small.
using Object = std::vector<std::pair<std::string, Value>>;

class Value {
 public:
  enum class Type { kNull, kBool, kInt, kDouble, kString, kArray, kObject };

  Value() = default;
  Value(std::nullptr_t) {}
  Value(bool b) : data_(b) {}
  Value(int i) : data_(static_cast<int64_t>(i)) {}
  Value(int64_t i) : data_(i) {}
  Value(double d) : data_(d) {}
  Value(const char* s) : data_(std::string(s)) {}
  Value(std::string s) : data_(std::move(s)) {}
  Value(std::string_view s) : data_(std::string(s)) {}
  Value(Array a) : data_(std::make_shared<Array>(std::move(a))) {}
  Value(Object o) : data_(std::make_shared<Object>(std::move(o))) {}
  Value(const Value& other);
  Value& operator=(const Value& other);
  Value(Value&&) = default;
  Value& operator=(Value&&) = default;

  static Value object() { return Value(Object{}); }
  static Value array() { return Value(Array{}); }

  Type type() const { return static_cast<Type>(data_.index()); }
  bool isNull() const { return type() == Type::kNull; }
  bool isBool() const { return type() == Type::kBool; }
  bool isInt() const { return type() == Type::kInt; }
  bool isNumber() const { return type() == Type::kInt || type() == Type::kDouble; }
  bool isString() const { return type() == Type::kString; }
  bool isArray() const { return type() == Type::kArray; }
  bool isObject() const { return type() == Type::kObject; }

  bool asBool() const { return std::get<bool>(data_); }
  int64_t asInt() const { return std::get<int64_t>(data_); }
  double asDouble() const { return isInt() ? static_cast<double>(asInt()) : std::get<double>(data_); }
  const std::string& asString() const { return std::get<std::string>(data_); }
  const Array& asArray() const { return *std::get<std::shared_ptr<Array>>(data_); }
  Array& asArray() { return *std::get<std::shared_ptr<Array>>(data_); }
  const Object& asObject() const { return *std::get<std::shared_ptr<Object>>(data_); }
  Object& asObject() { return *std::get<std::shared_ptr<Object>>(data_); }

  // Object access. find() returns nullptr when absent or when this is not an object.
  const Value* find(std::string_view key) const;
  Value* find(std::string_view key);
  // Inserts (at the end) when absent; turns a null into an object first.
  Value& operator[](std::string_view key);
  void set(std::string_view key, Value v) { (*this)[key] = std::move(v); }
  bool erase(std::string_view key);
  // Follows a path of object keys; nullptr when any step is missing.
  const Value* at(std::initializer_list<std::string_view> path) const;
  Value* at(std::initializer_list<std::string_view> path);
  // The string at `key`, or `fallback` when absent or not a string.
  std::string getString(std::string_view key, std::string_view fallback = "") const;

  void push(Value v) { asArray().push_back(std::move(v)); }
  size_t size() const;

  bool operator==(const Value& other) const;
  bool operator!=(const Value& other) const { return !(*this == other); }

 private:
  // shared_ptr keeps Value small; copies deep-copy (see the copy constructor), so values never alias.
  std::variant<std::monostate, bool, int64_t, double, std::string, std::shared_ptr<Array>,
               std::shared_ptr<Object>>
      data_;
};

// JSON text. parseJson fills `error` (with the byte offset) and returns false on bad input.
bool parseJson(std::string_view text, Value* out, std::string* error);
std::string toJson(const Value& v);
// Escapes for a JSON Pointer token (RFC 6901: ~ → ~0, / → ~1).
std::string jsonPointerEscape(std::string_view token);

}  // namespace skiff::inject
