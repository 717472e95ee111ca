// Lua bindings of streamInfo(), connection(), metadata() and streamInfo():dynamicMetadata(): read-mostly
// views of the stream's StreamInfo and route, checked against their run like every object (lua_objects.h).
#include <string>
#include <string_view>

#include "envoy/config/core/v3/base.pb.h"
#include "filters/http/lua/lua_filter.h"
#include "filters/http/lua/lua_objects.h"
#include "filters/http/lua/lua_proto_value.h"
#include "filters/http/lua/lua_ssl.h"
#include "skiff/router/route_table.h"

namespace skiff::filters::lua {
namespace {

http::StreamInfo& info(lua_State* L) {
  return resolve(L, 1, kStreamInfoMt).callbacks().streamInfo();
}

int infoProtocol(lua_State* L) {
  return pushString(L, info(L).protocol);
}
int infoLocal(lua_State* L) {
  return pushString(L, info(L).downstream_local_address);
}
int infoDirectRemote(lua_State* L) {
  return pushString(L, info(L).downstream_direct_remote_address);
}
int infoRemote(lua_State* L) {
  const http::StreamInfo& i = info(L);
  return pushString(L, i.downstream_remote_address.empty() ? i.downstream_direct_remote_address
                                                           : i.downstream_remote_address);
}
int infoSni(lua_State* L) {
  return pushString(L, info(L).requested_server_name);
}
int infoRouteName(lua_State* L) {
  Direction& d = resolve(L, 1, kStreamInfoMt);
  const http::StreamInfo& i = d.callbacks().streamInfo();
  if (!i.route_name.empty()) return pushString(L, i.route_name);
  const router::RouteEntry* route = d.callbacks().route();
  return pushString(L, route != nullptr ? std::string_view(route->name) : std::string_view());
}

int infoDynamicMetadata(lua_State* L) {
  Direction& d = resolve(L, 1, kStreamInfoMt);
  pushRef(L, kDynamicMetadataMt, d, kOther);
  return 1;
}

// dynamicMetadata() reads and writes StreamInfo::dynamic_metadata, the stream's filter_metadata that
// ext_authz and ext_proc use too; values convert to and from google.protobuf.Value on every call.
http::StreamInfo& metadataInfo(lua_State* L) {
  return resolve(L, 1, kDynamicMetadataMt).callbacks().streamInfo();
}

int dynamicMetadataGet(lua_State* L) {
  size_t len = 0;
  const char* ns = luaL_checklstring(L, 2, &len);
  const auto& md = metadataInfo(L).dynamic_metadata;
  if (!md) {
    lua_pushnil(L);
    return 1;
  }
  auto it = md->filter_metadata().find(std::string(ns, len));
  if (it == md->filter_metadata().end()) {
    lua_pushnil(L);
  } else {
    pushStruct(L, it->second);
  }
  return 1;
}

// set(filter_name, key, value): value may be a table, number, boolean, string or nil (removes the key).
int dynamicMetadataSet(lua_State* L) {
  size_t ns_len = 0, key_len = 0;
  const char* ns = luaL_checklstring(L, 2, &ns_len);
  const char* key = luaL_checklstring(L, 3, &key_len);
  http::StreamInfo& info = metadataInfo(L);
  const char* err = nullptr;
  {
    // Built apart so that a conversion error leaves the metadata as it was (and runs no destructor
    // across luaL_error).
    google::protobuf::Value value;
    if (lua_isnoneornil(L, 4)) {
      if (info.dynamic_metadata) {
        auto* fm = info.dynamic_metadata->mutable_filter_metadata();
        if (auto it = fm->find(std::string(ns, ns_len)); it != fm->end()) {
          it->second.mutable_fields()->erase(std::string(key, key_len));
        }
      }
    } else if ((err = toProtoValue(L, 4, value, 0)) == nullptr) {
      if (!info.dynamic_metadata) {
        info.dynamic_metadata = std::make_shared<envoy::config::core::v3::Metadata>();
      }
      auto& target = (*info.dynamic_metadata->mutable_filter_metadata())[std::string(ns, ns_len)];
      (*target.mutable_fields())[std::string(key, key_len)] = std::move(value);
    }
  }
  if (err != nullptr) return luaL_error(L, "%s", err);
  return 0;
}

// pairs(dynamicMetadata()): namespace name -> its fields as a table (a snapshot).
int dynamicMetadataPairs(lua_State* L) {
  const auto& md = metadataInfo(L).dynamic_metadata;
  lua_getglobal(L, "next");
  lua_newtable(L);
  if (md) {
    for (const auto& [ns, fields] : md->filter_metadata()) {
      lua_pushlstring(L, ns.data(), ns.size());
      pushStruct(L, fields);
      lua_rawset(L, -3);
    }
  }
  return 2;
}

int connectionSsl(lua_State* L) {
  return pushSslConnection(L, resolve(L, 1, kConnectionMt).callbacks().streamInfo());
}

int infoDownstreamSslConnection(lua_State* L) {
  return pushSslConnection(L, info(L));
}

// The route's metadata for this filter, where Envoy looks: filter_metadata[<the filter's name in the HCM
// config>], else filter_metadata["envoy.filters.http.lua"].
const google::protobuf::Struct* routeMetadata(lua_State* L) {
  Direction& d = resolve(L, 1, kMetadataMt);
  const router::RouteEntry* route = d.callbacks().route();
  if (route == nullptr || route->metadata == nullptr) return nullptr;
  const auto& by_filter = route->metadata->filter_metadata();
  auto it = by_filter.find(d.filter->config().filterName());
  if (it == by_filter.end()) it = by_filter.find(std::string(kFilterName));
  return it == by_filter.end() ? nullptr : &it->second;
}

int metadataGet(lua_State* L) {
  const google::protobuf::Struct* md = routeMetadata(L);
  const std::string key(checkView(L, 2));
  if (md == nullptr) {
    lua_pushnil(L);
    return 1;
  }
  auto it = md->fields().find(key);
  if (it == md->fields().end()) {
    lua_pushnil(L);
  } else {
    pushValue(L, it->second);
  }
  return 1;
}

// Stateless iterator over a plain table (the snapshot pairs() builds).
int tableNext(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 2);
  return lua_next(L, 1) ? 2 : 0;
}
int metadataPairs(lua_State* L) {
  const google::protobuf::Struct* md = routeMetadata(L);
  lua_pushcfunction(L, tableNext);
  if (md != nullptr) {
    pushStruct(L, *md);
  } else {
    lua_newtable(L);
  }
  lua_pushnil(L);
  return 3;
}

}  // namespace

void installStreamInfoApi(lua_State* L) {
  const luaL_Reg info[] = {
      {"protocol", infoProtocol},
      {"downstreamLocalAddress", infoLocal},
      {"downstreamDirectLocalAddress", infoLocal},
      {"downstreamRemoteAddress", infoRemote},
      {"downstreamDirectRemoteAddress", infoDirectRemote},
      {"requestedServerName", infoSni},
      {"routeName", infoRouteName},
      {"dynamicMetadata", infoDynamicMetadata},
      {"downstreamSslConnection", infoDownstreamSslConnection},
      {nullptr, nullptr},
  };
  newMetatable(L, kStreamInfoMt, info);
  const luaL_Reg connection[] = {{"ssl", connectionSsl}, {nullptr, nullptr}};
  newMetatable(L, kConnectionMt, connection);
  const luaL_Reg metadata[] = {{"get", metadataGet}, {nullptr, nullptr}};
  newMetatable(L, kMetadataMt, metadata, metadataPairs);
  const luaL_Reg dynamic_metadata[] = {
      {"get", dynamicMetadataGet}, {"set", dynamicMetadataSet}, {nullptr, nullptr}};
  newMetatable(L, kDynamicMetadataMt, dynamic_metadata, dynamicMetadataPairs);
}

}  // namespace skiff::filters::lua
