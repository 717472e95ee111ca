// Conversions between google.protobuf.Value and Lua values (route and dynamic metadata).
#include "filters/http/lua/lua_proto_value.h"

#include <algorithm>
#include <cstdint>
#include <string>

namespace skiff::filters::lua {
namespace {
constexpr int kMaxMetadataDepth = 32;  // also what stops a cyclic table
}  // namespace

void pushValue(lua_State* L, const google::protobuf::Value& v) {
  luaL_checkstack(L, 3, "metadata nested too deeply");
  switch (v.kind_case()) {
    case google::protobuf::Value::kNumberValue:
      lua_pushnumber(L, v.number_value());
      break;
    case google::protobuf::Value::kStringValue:
      lua_pushlstring(L, v.string_value().data(), v.string_value().size());
      break;
    case google::protobuf::Value::kBoolValue:
      lua_pushboolean(L, v.bool_value());
      break;
    case google::protobuf::Value::kStructValue:
      pushStruct(L, v.struct_value());
      break;
    case google::protobuf::Value::kListValue: {
      const auto& values = v.list_value().values();
      lua_createtable(L, values.size(), 0);
      for (int i = 0; i < values.size(); ++i) {
        pushValue(L, values[i]);
        lua_rawseti(L, -2, i + 1);
      }
      break;
    }
    default:
      lua_pushnil(L);
  }
}

void pushStruct(lua_State* L, const google::protobuf::Struct& s) {
  lua_createtable(L, 0, s.fields_size());
  for (const auto& [key, value] : s.fields()) {
    lua_pushlstring(L, key.data(), key.size());
    pushValue(L, value);
    lua_rawset(L, -3);
  }
}

const char* toProtoValue(lua_State* L, int idx, google::protobuf::Value& out, int depth) {
  switch (lua_type(L, idx)) {
    case LUA_TNIL:
      out.set_null_value(google::protobuf::NULL_VALUE);
      return nullptr;
    case LUA_TBOOLEAN:
      out.set_bool_value(lua_toboolean(L, idx) != 0);
      return nullptr;
    case LUA_TNUMBER:
      out.set_number_value(lua_tonumber(L, idx));
      return nullptr;
    case LUA_TSTRING: {
      size_t len = 0;
      const char* str = lua_tolstring(L, idx, &len);
      out.set_string_value(str, len);
      return nullptr;
    }
    case LUA_TTABLE:
      break;
    default:
      return "unsupported dynamic metadata value type";
  }
  if (depth >= kMaxMetadataDepth) return "dynamic metadata table nested too deeply (or cyclic)";
  luaL_checkstack(L, 4, "dynamic metadata nested too deeply");
  idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
  size_t count = 0, numeric = 0;
  double max_key = 0;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    ++count;
    if (lua_type(L, -2) == LUA_TNUMBER) {
      const double k = lua_tonumber(L, -2);
      if (!(k >= 1 && k <= 1e9 && k == static_cast<double>(static_cast<int64_t>(k)))) {
        lua_pop(L, 2);
        return "dynamic metadata table keys must be strings (or 1..n for a list)";
      }
      ++numeric;
      max_key = std::max(max_key, k);
    } else if (lua_type(L, -2) != LUA_TSTRING) {
      lua_pop(L, 2);
      return "dynamic metadata table keys must be strings (or 1..n for a list)";
    }
    lua_pop(L, 1);
  }
  if (count > 0 && numeric == count && max_key == static_cast<double>(count)) {
    auto* list = out.mutable_list_value();
    for (size_t i = 1; i <= count; ++i) {
      lua_rawgeti(L, idx, static_cast<int>(i));
      const char* err = toProtoValue(L, -1, *list->add_values(), depth + 1);
      lua_pop(L, 1);
      if (err != nullptr) return err;
    }
    return nullptr;
  }
  if (numeric > 0) return "dynamic metadata table keys must be strings (or 1..n for a list)";
  auto* fields = out.mutable_struct_value()->mutable_fields();
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    size_t len = 0;
    const char* key = lua_tolstring(L, -2, &len);  // a string already: no key conversion under lua_next
    const char* err = toProtoValue(L, -1, (*fields)[std::string(key, len)], depth + 1);
    lua_pop(L, 1);
    if (err != nullptr) {
      lua_pop(L, 1);
      return err;
    }
  }
  return nullptr;
}

}  // namespace skiff::filters::lua
