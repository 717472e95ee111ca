#pragma once
// google.protobuf.Value <-> Lua values, for route metadata and dynamic metadata.

#include <google/protobuf/struct.pb.h>
#include <lua.hpp>

namespace skiff::filters::lua {

// Pushes a Struct/Value as Envoy's Lua API shows them: null → nil, lists → arrays from 1, structs → tables.
void pushStruct(lua_State* L, const google::protobuf::Struct& s);
void pushValue(lua_State* L, const google::protobuf::Value& v);

// The Lua value at `idx` as a Value: a table with keys 1..n is a ListValue, one with string keys a Struct.
// Returns an error message (static text) for what metadata cannot hold, else nullptr.
const char* toProtoValue(lua_State* L, int idx, google::protobuf::Value& out, int depth = 0);

}  // namespace skiff::filters::lua
