// json_patch: diffing two documents into RFC 6902 operations, and applying such operations.
#include "skiff/inject/json_patch.h"

#include <charconv>

namespace skiff::inject {
namespace {

Value op(const char* name, const std::string& path, const Value* value) {
  Value o = Value::object();
  o.set("op", name);
  o.set("path", path);
  if (value != nullptr) o.set("value", *value);
  return o;
}

void diff(const Value& from, const Value& to, const std::string& path, Array& ops) {
  if (from == to) return;
  if (from.isObject() && to.isObject()) {
    for (const auto& [k, v] : from.asObject()) {
      if (to.find(k) == nullptr) ops.push_back(op("remove", path + "/" + jsonPointerEscape(k), nullptr));
    }
    for (const auto& [k, v] : to.asObject()) {
      const Value* old = from.find(k);
      std::string p = path + "/" + jsonPointerEscape(k);
      if (old == nullptr) {
        ops.push_back(op("add", p, &v));
      } else {
        diff(*old, v, p, ops);
      }
    }
    return;
  }
  if (from.isArray() && to.isArray() && to.size() >= from.size()) {
    const Array& a = from.asArray();
    const Array& b = to.asArray();
    bool prefix = true;
    for (size_t i = 0; i < a.size() && prefix; ++i) prefix = a[i] == b[i];
    if (prefix) {
      for (size_t i = a.size(); i < b.size(); ++i)
        ops.push_back(op("add", path + "/" + std::to_string(i), &b[i]));
      return;
    }
    if (a.size() == b.size()) {
      for (size_t i = 0; i < a.size(); ++i) diff(a[i], b[i], path + "/" + std::to_string(i), ops);
      return;
    }
  }
  ops.push_back(op("replace", path, &to));
}

bool unescape(std::string_view token, std::string* out) {
  out->clear();
  for (size_t i = 0; i < token.size(); ++i) {
    if (token[i] != '~') {
      out->push_back(token[i]);
      continue;
    }
    if (i + 1 >= token.size() || (token[i + 1] != '0' && token[i + 1] != '1')) return false;
    out->push_back(token[i + 1] == '0' ? '~' : '/');
    ++i;
  }
  return true;
}

}  // namespace

Value jsonPatchDiff(const Value& from, const Value& to) {
  Array ops;
  diff(from, to, "", ops);
  return Value(std::move(ops));
}

bool applyJsonPatch(const Value& patch, Value* doc, std::string* error) {
  if (!patch.isArray()) {
    *error = "patch is not a list";
    return false;
  }
  Value result = *doc;
  for (const auto& o : patch.asArray()) {
    std::string name = o.getString("op");
    std::string path = o.getString("path");
    const Value* value = o.find("value");
    if (path.empty() || path[0] != '/') {
      *error = "bad path '" + path + "'";
      return false;
    }
    // Walk to the parent.
    std::vector<std::string> tokens;
    for (size_t start = 1;;) {
      size_t slash = path.find('/', start);
      std::string tok;
      if (!unescape(std::string_view(path).substr(
                        start, slash == std::string::npos ? std::string::npos : slash - start),
                    &tok)) {
        *error = "bad escape in '" + path + "'";
        return false;
      }
      tokens.push_back(tok);
      if (slash == std::string::npos) break;
      start = slash + 1;
    }
    Value* parent = &result;
    for (size_t i = 0; i + 1 < tokens.size(); ++i) {
      Value* next = nullptr;
      if (parent->isObject()) {
        next = parent->find(tokens[i]);
      } else if (parent->isArray()) {
        size_t idx;
        auto [p, ec] = std::from_chars(tokens[i].data(), tokens[i].data() + tokens[i].size(), idx);
        if (ec == std::errc() && idx < parent->asArray().size()) next = &parent->asArray()[idx];
      }
      if (next == nullptr) {
        *error = "path '" + path + "' does not exist";
        return false;
      }
      parent = next;
    }
    const std::string& last = tokens.back();
    if ((name == "add" || name == "replace") && value == nullptr) {
      *error = name + " without a value";
      return false;
    }
    if (parent->isObject()) {
      bool exists = parent->find(last) != nullptr;
      if (name == "add") {
        parent->set(last, *value);
      } else if (name == "replace" && exists) {
        parent->set(last, *value);
      } else if (name == "remove" && exists) {
        parent->erase(last);
      } else {
        *error = "cannot " + name + " '" + path + "'";
        return false;
      }
    } else if (parent->isArray()) {
      Array& a = parent->asArray();
      size_t idx = a.size();
      if (last != "-") {
        auto [p, ec] = std::from_chars(last.data(), last.data() + last.size(), idx);
        if (ec != std::errc() || p != last.data() + last.size()) idx = a.size() + 1;
      }
      if (name == "add" && idx <= a.size()) {
        a.insert(a.begin() + static_cast<long>(idx), *value);
      } else if (name == "replace" && idx < a.size()) {
        a[idx] = *value;
      } else if (name == "remove" && idx < a.size()) {
        a.erase(a.begin() + static_cast<long>(idx));
      } else {
        *error = "cannot " + name + " '" + path + "'";
        return false;
      }
    } else if (path == "/" + last && tokens.size() == 1 && !parent->isObject()) {
      *error = "cannot " + name + " '" + path + "'";
      return false;
    } else {
      *error = "parent of '" + path + "' is not a container";
      return false;
    }
  }
  *doc = std::move(result);
  return true;
}

}  // namespace skiff::inject
