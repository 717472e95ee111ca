// Per-object patch functions shared by the Applier; each throws PatchError on failure.
#pragma once

#include <map>
#include <string>

#include <google/protobuf/repeated_ptr_field.h>

#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/core/v3/extension.pb.h"
#include "envoy/config/route/v3/route.pb.h"
#include "envoy_filter/internal.h"

namespace skiff::envoy_filter::internal {

PatchContext listenerContext(const envoy::config::listener::v3::Listener& l, const Proxy& proxy);
PatchContext routeContext(const std::string& route_config_name, const Proxy& proxy);
PatchContext clusterContext(const envoy::config::cluster::v3::Cluster& c, const Proxy& proxy);
uint32_t listenerPort(const envoy::config::listener::v3::Listener& l);

// Listener-class patches (LISTENER MERGE/REMOVE sets `removed`).
void applyListenerPatch(envoy::config::listener::v3::Listener& l, const ConfigPatch& p, const Proxy& proxy,
                        bool& removed);
// Route-class patches on the route configs inlined in the listener's HCMs.
void applyInlineRoutes(envoy::config::listener::v3::Listener& l, const ConfigPatch& p, const Proxy& proxy);
// HTTP filters with config_discovery naming an EXTENSION_CONFIG get its typed_config.
void inlineExtensionConfigs(envoy::config::listener::v3::Listener& l,
                            const std::map<std::string, envoy::config::core::v3::TypedExtensionConfig>& ecds);
// ROUTE_CONFIGURATION / VIRTUAL_HOST / HTTP_ROUTE; `port` is the listener's when known (inline), else 0.
void applyRoutePatch(envoy::config::route::v3::RouteConfiguration& rc, const ConfigPatch& p, PatchContext ctx,
                     uint32_t port);
// CLUSTER MERGE/REMOVE.
void applyClusterPatch(envoy::config::cluster::v3::Cluster& c, const ConfigPatch& p, bool& removed);

// The list operations istiod supports on filters and routes. `has_anchor`: the match names an element;
// without one INSERT_BEFORE prepends, INSERT_AFTER appends, and MERGE/REMOVE apply to every element.
template <class T, class Match, class Merge>
void applyListOp(google::protobuf::RepeatedPtrField<T>& list, Operation op, bool has_anchor, Match match,
                 const T* value, Merge merge, bool insert_first_needs_match = false) {
  auto first = [&]() -> int {
    for (int i = 0; i < list.size(); ++i) {
      if (match(list.Get(i))) return i;
    }
    return -1;
  };
  auto insertAt = [&](int pos) {
    list.Add()->CopyFrom(*value);
    for (int i = list.size() - 1; i > pos; --i) list.SwapElements(i, i - 1);
  };
  switch (op) {
    case Operation::kAdd:
      list.Add()->CopyFrom(*value);
      return;
    case Operation::kInsertFirst:
      if (insert_first_needs_match && has_anchor && first() < 0) return;
      insertAt(0);
      return;
    case Operation::kInsertBefore: {
      if (!has_anchor) return insertAt(0);
      if (int i = first(); i >= 0) insertAt(i);
      return;
    }
    case Operation::kInsertAfter: {
      if (!has_anchor) {
        list.Add()->CopyFrom(*value);
        return;
      }
      if (int i = first(); i >= 0) insertAt(i + 1);
      return;
    }
    case Operation::kReplace: {
      if (!has_anchor) return;
      if (int i = first(); i >= 0) list.Mutable(i)->CopyFrom(*value);
      return;
    }
    case Operation::kRemove:
      for (int i = list.size() - 1; i >= 0; --i) {
        if (!has_anchor || match(list.Get(i))) list.DeleteSubrange(i, 1);
      }
      return;
    case Operation::kMerge:
    case Operation::kMergeAndReplaceList:
      for (int i = 0; i < list.size(); ++i) {
        if (!has_anchor || match(list.Get(i))) merge(*list.Mutable(i));
      }
      return;
    default:
      return;
  }
}

}  // namespace skiff::envoy_filter::internal
