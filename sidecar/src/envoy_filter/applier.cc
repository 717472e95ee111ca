// Applier: selects the EnvoyFilters of this proxy and applies them one at a time, all-or-nothing each.
#include "skiff/envoy_filter/applier.h"

#include <algorithm>

#include <fmt/format.h>
#include <google/protobuf/util/message_differencer.h>

#include "envoy_filter/apply_internal.h"
#include "skiff/config/config_error.h"

namespace skiff::envoy_filter {

using namespace internal;  // NOLINT: this file is the glue of the internals

namespace {

int level(ApplyTo a) {
  switch (a) {
    case ApplyTo::kListener:
      return 0;
    case ApplyTo::kListenerFilter:
      return 1;
    case ApplyTo::kFilterChain:
      return 2;
    case ApplyTo::kNetworkFilter:
      return 3;
    case ApplyTo::kHttpFilter:
      return 4;
    case ApplyTo::kRouteConfiguration:
      return 5;
    case ApplyTo::kVirtualHost:
      return 6;
    case ApplyTo::kHttpRoute:
      return 7;
    default:
      return 8;
  }
}

bool isListenerClass(ApplyTo a) {
  return level(a) <= 4;
}
bool isRouteClass(ApplyTo a) {
  return level(a) >= 5 && level(a) <= 7;
}

// Istio applies patches by object level (listener, filter chain, network filter, HTTP filter).
std::vector<const ConfigPatch*> ordered(const EnvoyFilter& f) {
  std::vector<const ConfigPatch*> out;
  for (const auto& p : f.patches) out.push_back(&p);
  std::stable_sort(out.begin(), out.end(), [](const ConfigPatch* a, const ConfigPatch* b) {
    return level(a->apply_to) < level(b->apply_to);
  });
  return out;
}

// Applies each filter to a copy of `object`; keeps the copy only if every patch of that filter succeeded.
template <class Msg, class Fn>
ApplyReport applyEach(const std::vector<EnvoyFilter>& filters, Msg& object, Fn fn) {
  ApplyReport report;
  for (const EnvoyFilter& f : filters) {
    Msg copy = object;
    bool removed = false;
    try {
      for (const ConfigPatch* p : ordered(f)) {
        try {
          fn(copy, *p, removed);
        } catch (const PatchError& e) {
          throw PatchError{fmt::format("{}: {}", p->path, e.message)};
        } catch (const std::exception& e) {
          throw PatchError{fmt::format("{}: {}", p->path, e.what())};
        }
        if (removed) break;
      }
    } catch (const PatchError& e) {
      report.failed.emplace_back(f.key(), e.message);
      continue;
    }
    if (removed) {
      report.removed = true;
      report.applied.push_back(f.key());
      return report;
    }
    if (!google::protobuf::util::MessageDifferencer::Equals(copy, object)) {
      object = std::move(copy);
      report.applied.push_back(f.key());
    }
  }
  return report;
}

bool runs(const ConfigPatch& p, PatchContext ctx, const Proxy& proxy) {
  return contextMatches(p.context, ctx) && proxyMatches(p, proxy);
}

}  // namespace

Applier::Applier(std::vector<EnvoyFilter> filters, Proxy proxy) : proxy_(std::move(proxy)) {
  sortForApplication(filters);
  for (auto& f : filters) {
    std::string why;
    if (f.has_target_refs) {
      why = "targetRefs select gateways or services, not this proxy";
    } else if (!f.namespace_.empty() && !proxy_.namespace_.empty() && f.namespace_ != proxy_.namespace_ &&
               f.namespace_ != "istio-system") {
      why = fmt::format("namespace '{}' is not the proxy's ('{}')", f.namespace_, proxy_.namespace_);
    } else {
      for (const auto& [k, v] : f.workload_labels) {
        auto it = proxy_.labels.find(k);
        if (it == proxy_.labels.end() || it->second != v) {
          why = fmt::format("workloadSelector label {}={} does not match the proxy's labels", k, v);
          break;
        }
      }
    }
    if (!why.empty()) {
      not_selected_.emplace_back(f.key(), why);
      continue;
    }
    for (const auto& p : f.patches) {
      if (p.apply_to == ApplyTo::kExtensionConfig && p.operation == Operation::kAdd && p.value &&
          proxyMatches(p, proxy_)) {
        const auto& ext = static_cast<const envoy::config::core::v3::TypedExtensionConfig&>(*p.value);
        extension_configs_[ext.name()] = ext;
      }
    }
    selected_.push_back(std::move(f));
  }
}

ApplyReport Applier::patchListener(envoy::config::listener::v3::Listener& listener) const {
  const PatchContext ctx = listenerContext(listener, proxy_);
  ApplyReport report = applyEach(selected_, listener, [&](auto& l, const ConfigPatch& p, bool& removed) {
    if (!runs(p, ctx, proxy_)) return;
    if (isListenerClass(p.apply_to)) {
      applyListenerPatch(l, p, proxy_, removed);
    } else if (isRouteClass(p.apply_to)) {
      applyInlineRoutes(l, p, proxy_);
    }
  });
  if (!report.removed) inlineExtensionConfigs(listener, extension_configs_);
  return report;
}

ApplyReport Applier::patchRouteConfigurationIn(envoy::config::route::v3::RouteConfiguration& config,
                                               PatchContext ctx, uint32_t listener_port) const {
  return applyEach(selected_, config, [&](auto& rc, const ConfigPatch& p, bool&) {
    if (runs(p, ctx, proxy_) && isRouteClass(p.apply_to)) applyRoutePatch(rc, p, ctx, listener_port);
  });
}

ApplyReport Applier::patchRouteConfiguration(envoy::config::route::v3::RouteConfiguration& config) const {
  return patchRouteConfigurationIn(config, routeContext(config.name(), proxy_), 0);
}

ApplyReport Applier::patchCluster(envoy::config::cluster::v3::Cluster& cluster) const {
  const PatchContext ctx = clusterContext(cluster, proxy_);
  return applyEach(selected_, cluster, [&](auto& c, const ConfigPatch& p, bool& removed) {
    if (runs(p, ctx, proxy_) && p.apply_to == ApplyTo::kCluster && p.operation != Operation::kAdd) {
      applyClusterPatch(c, p, removed);
    }
  });
}

std::vector<envoy::config::listener::v3::Listener> Applier::addedListeners(ApplyReport* report) const {
  std::vector<envoy::config::listener::v3::Listener> out;
  const PatchContext ctx = proxy_.gateway ? PatchContext::kGateway : PatchContext::kSidecarOutbound;
  for (const auto& f : selected_) {
    for (const auto& p : f.patches) {
      if (p.apply_to != ApplyTo::kListener || p.operation != Operation::kAdd || !runs(p, ctx, proxy_))
        continue;
      out.push_back(static_cast<const envoy::config::listener::v3::Listener&>(*p.value));
      if (report) report->applied.push_back(f.key());
    }
  }
  return out;
}

std::vector<envoy::config::cluster::v3::Cluster> Applier::addedClusters(ApplyReport* report) const {
  std::vector<envoy::config::cluster::v3::Cluster> out;
  for (const auto& f : selected_) {
    for (const auto& p : f.patches) {
      if (p.apply_to != ApplyTo::kCluster || p.operation != Operation::kAdd || !proxyMatches(p, proxy_))
        continue;
      const bool ok = proxy_.gateway
                          ? (p.context == PatchContext::kAny || p.context == PatchContext::kGateway)
                          : (p.context != PatchContext::kGateway && p.context != PatchContext::kWaypoint);
      if (!ok) continue;
      const auto& c = static_cast<const envoy::config::cluster::v3::Cluster&>(*p.value);
      if (std::any_of(out.begin(), out.end(), [&](const auto& o) { return o.name() == c.name(); })) {
        if (report)
          report->failed.emplace_back(f.key(), p.path + ": cluster '" + c.name() + "' is added twice");
        continue;
      }
      out.push_back(c);
      if (report) report->applied.push_back(f.key());
    }
  }
  return out;
}

ApplyReport Applier::patchBootstrap(envoy::config::bootstrap::v3::Bootstrap& bootstrap) const {
  ApplyReport report = applyEach(selected_, bootstrap, [&](auto& b, const ConfigPatch& p, bool&) {
    if (p.apply_to == ApplyTo::kBootstrap && proxyMatches(p, proxy_) &&
        (p.operation == Operation::kMerge || p.operation == Operation::kMergeAndReplaceList)) {
      mergeMessage(b, *p.value, p.operation == Operation::kMergeAndReplaceList);
    }
  });
  auto* sr = bootstrap.mutable_static_resources();
  auto* listeners = sr->mutable_listeners();
  for (int i = listeners->size() - 1; i >= 0; --i) {
    ApplyReport r = patchListener(*listeners->Mutable(i));
    if (r.removed) listeners->DeleteSubrange(i, 1);
    r.removed = false;
    report.append(r);
  }
  auto* clusters = sr->mutable_clusters();
  for (int i = clusters->size() - 1; i >= 0; --i) {
    ApplyReport r = patchCluster(*clusters->Mutable(i));
    if (r.removed) clusters->DeleteSubrange(i, 1);
    r.removed = false;
    report.append(r);
  }
  ApplyReport added;
  for (auto& l : addedListeners(&added)) {
    if (std::none_of(listeners->begin(), listeners->end(),
                     [&](const auto& o) { return o.name() == l.name(); })) {
      *listeners->Add() = std::move(l);
    }
  }
  for (auto& c : addedClusters(&added)) {
    if (std::none_of(clusters->begin(), clusters->end(),
                     [&](const auto& o) { return o.name() == c.name(); })) {
      *clusters->Add() = std::move(c);
    } else {
      added.failed.emplace_back("", "CLUSTER ADD: static cluster '" + c.name() + "' already exists");
    }
  }
  report.append(added);
  return report;
}

}  // namespace skiff::envoy_filter
