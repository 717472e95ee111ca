// LISTENER, LISTENER_FILTER, FILTER_CHAIN, NETWORK_FILTER and HTTP_FILTER patches on one listener.
#include <fmt/format.h>
#include <google/protobuf/util/message_differencer.h>

#include "envoy_filter/apply_internal.h"

namespace skiff::envoy_filter::internal {

using envoy::config::listener::v3::Filter;
using envoy::config::listener::v3::FilterChain;
using envoy::config::listener::v3::Listener;
using HttpFilter = envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter;

PatchContext listenerContext(const Listener& l, const Proxy& proxy) {
  if (proxy.gateway) return PatchContext::kGateway;
  if (l.name() == "virtualInbound" || l.traffic_direction() == envoy::config::core::v3::INBOUND) {
    return PatchContext::kSidecarInbound;
  }
  return PatchContext::kSidecarOutbound;
}

uint32_t listenerPort(const Listener& l) {
  return l.address().has_socket_address() ? l.address().socket_address().port_value() : 0;
}

namespace {

bool isVirtual(const Listener& l) {
  return l.name() == "virtualInbound" || l.name() == "virtualOutbound";
}

bool listenerMatch(const Listener& l, const ConfigPatch& p) {
  if (p.object != ConfigPatch::ObjectMatch::kListener) return p.object == ConfigPatch::ObjectMatch::kNone;
  const auto& m = p.listener;
  if (!m.name.empty() && m.name != l.name()) return false;
  // Virtual listeners carry the service port in their filter chains (checked there).
  if (m.port_number != 0 && !isVirtual(l) && listenerPort(l) != m.port_number) return false;
  return true;
}

bool filterChainMatch(const Listener& l, const FilterChain& fc, const ConfigPatch& p) {
  if (p.object != ConfigPatch::ObjectMatch::kListener) return true;
  const auto& fcm = fc.filter_chain_match();
  if (isVirtual(l) && p.listener.port_number != 0) {
    if (!fcm.has_destination_port() || fcm.destination_port().value() != p.listener.port_number) return false;
  }
  if (!p.listener.has_filter_chain) return true;
  const auto& m = p.listener.filter_chain;
  if (!m.name.empty() && m.name != fc.name()) return false;
  if (!m.sni.empty() &&
      std::find(fcm.server_names().begin(), fcm.server_names().end(), m.sni) == fcm.server_names().end()) {
    return false;
  }
  if (!m.transport_protocol.empty() && fcm.transport_protocol() != m.transport_protocol) return false;
  if (!m.application_protocols.empty()) {
    size_t start = 0;
    while (start <= m.application_protocols.size()) {
      size_t comma = m.application_protocols.find(',', start);
      if (comma == std::string::npos) comma = m.application_protocols.size();
      const std::string proto = m.application_protocols.substr(start, comma - start);
      if (std::find(fcm.application_protocols().begin(), fcm.application_protocols().end(), proto) ==
          fcm.application_protocols().end()) {
        return false;
      }
      start = comma + 1;
    }
  }
  if (m.destination_port != 0 &&
      (!fcm.has_destination_port() || fcm.destination_port().value() != m.destination_port)) {
    return false;
  }
  // A filter match selects the chains that have such a filter.
  if (!m.filter_name.empty() && std::none_of(fc.filters().begin(), fc.filters().end(), [&](const Filter& f) {
        return nameMatches(m.filter_name, f.name()) ||
               (canonicalName(m.filter_name) == "envoy.filters.network.http_connection_manager" && isHcm(f));
      })) {
    return false;
  }
  return true;
}

// Filter (network or HTTP) MERGE as istiod: the value may rename the filter; its typed_config is merged
// into the filter's unpacked typed_config. A filter without typed_config is left alone.
template <class F>
void mergeFilter(F& filter, const F& value, bool replace_lists) {
  if (!filter.has_typed_config()) return;
  if (value.has_typed_config()) {
    mergeAny(*filter.mutable_typed_config(), value.typed_config(), replace_lists);
  }
  if (!value.name().empty()) filter.set_name(canonicalName(value.name()));
}

std::vector<FilterChain*> matchingChains(Listener& l, const ConfigPatch& p) {
  std::vector<FilterChain*> out;
  for (auto& fc : *l.mutable_filter_chains()) {
    if (filterChainMatch(l, fc, p)) out.push_back(&fc);
  }
  if (l.has_default_filter_chain() && filterChainMatch(l, l.default_filter_chain(), p)) {
    out.push_back(l.mutable_default_filter_chain());
  }
  return out;
}

void mergeFilterChain(FilterChain& fc, const FilterChain& value, bool replace_lists) {
  FilterChain rest = value;
  // Same transport socket name: deep-merge its typed_config (istiod's special case).
  if (value.has_transport_socket() && fc.has_transport_socket() &&
      value.transport_socket().name() == fc.transport_socket().name() &&
      value.transport_socket().has_typed_config() && fc.transport_socket().has_typed_config()) {
    mergeAny(*fc.mutable_transport_socket()->mutable_typed_config(), value.transport_socket().typed_config(),
             replace_lists);
    rest.clear_transport_socket();
  }
  mergeMessage(fc, rest, replace_lists);
}

}  // namespace

void applyListenerPatch(Listener& l, const ConfigPatch& p, const Proxy& proxy, bool& removed) {
  if (!listenerMatch(l, p)) return;
  const bool replace_lists = p.operation == Operation::kMergeAndReplaceList;
  const bool merge = p.operation == Operation::kMerge || replace_lists;
  switch (p.apply_to) {
    case ApplyTo::kListener:
      if (merge) {
        mergeMessage(l, *p.value, replace_lists);
      } else if (p.operation == Operation::kRemove) {
        removed = true;
      }
      return;
    case ApplyTo::kListenerFilter: {
      const auto* value = static_cast<const envoy::config::listener::v3::ListenerFilter*>(p.value.get());
      const std::string& anchor = p.listener.listener_filter;
      applyListOp(
          *l.mutable_listener_filters(), p.operation, !anchor.empty(),
          [&](const auto& f) { return nameMatches(anchor, f.name()); }, value,
          [&](auto& f) { mergeMessage(f, *value, replace_lists); });
      return;
    }
    case ApplyTo::kFilterChain: {
      const auto* value = static_cast<const FilterChain*>(p.value.get());
      if (p.operation == Operation::kAdd) {
        l.add_filter_chains()->CopyFrom(*value);
        return;
      }
      if (p.operation == Operation::kRemove) {
        auto* chains = l.mutable_filter_chains();
        for (int i = chains->size() - 1; i >= 0; --i) {
          if (filterChainMatch(l, chains->Get(i), p)) chains->DeleteSubrange(i, 1);
        }
        if (l.has_default_filter_chain() && filterChainMatch(l, l.default_filter_chain(), p)) {
          l.clear_default_filter_chain();
        }
        return;
      }
      if (merge) {
        for (FilterChain* fc : matchingChains(l, p)) mergeFilterChain(*fc, *value, replace_lists);
      }
      return;
    }
    case ApplyTo::kNetworkFilter: {
      const auto* value = static_cast<const Filter*>(p.value.get());
      const std::string& anchor = p.listener.filter_chain.filter_name;
      for (FilterChain* fc : matchingChains(l, p)) {
        applyListOp(
            *fc->mutable_filters(), p.operation, !anchor.empty(),
            [&](const Filter& f) { return nameMatches(anchor, f.name()); }, value,
            [&](Filter& f) { mergeFilter(f, *value, replace_lists); });
      }
      return;
    }
    case ApplyTo::kHttpFilter: {
      const auto* value = static_cast<const HttpFilter*>(p.value.get());
      const std::string& filter_name = p.listener.filter_chain.filter_name;
      const std::string& anchor = p.listener.filter_chain.sub_filter_name;
      for (FilterChain* fc : matchingChains(l, p)) {
        for (Filter& f : *fc->mutable_filters()) {
          if (!isHcm(f) || (!filter_name.empty() && !nameMatches(filter_name, f.name()))) continue;
          Hcm hcm;
          if (!f.has_typed_config() || !f.typed_config().UnpackTo(&hcm)) {
            throw PatchError{fmt::format(
                "listener '{}': filter '{}': the HttpConnectionManager does not decode", l.name(), f.name())};
          }
          applyListOp(
              *hcm.mutable_http_filters(), p.operation, !anchor.empty(),
              [&](const HttpFilter& h) { return nameMatches(anchor, h.name()); }, value,
              [&](HttpFilter& h) { mergeFilter(h, *value, replace_lists); });
          f.mutable_typed_config()->PackFrom(hcm);
        }
      }
      return;
    }
    default:
      return;
  }
}

void applyInlineRoutes(Listener& l, const ConfigPatch& p, const Proxy& proxy) {
  const PatchContext ctx = listenerContext(l, proxy);
  auto visit = [&](FilterChain& fc) {
    for (Filter& f : *fc.mutable_filters()) {
      if (!isHcm(f) || !f.has_typed_config()) continue;
      Hcm hcm;
      if (!f.typed_config().UnpackTo(&hcm) || !hcm.has_route_config()) continue;
      uint32_t port = listenerPort(l);
      if (isVirtual(l) && fc.filter_chain_match().has_destination_port()) {
        port = fc.filter_chain_match().destination_port().value();
      }
      const auto before = hcm.route_config();
      applyRoutePatch(*hcm.mutable_route_config(), p, ctx, port);
      if (!google::protobuf::util::MessageDifferencer::Equals(before, hcm.route_config())) {
        f.mutable_typed_config()->PackFrom(hcm);
      }
    }
  };
  for (auto& fc : *l.mutable_filter_chains()) visit(fc);
  if (l.has_default_filter_chain()) visit(*l.mutable_default_filter_chain());
}

void inlineExtensionConfigs(
    Listener& l, const std::map<std::string, envoy::config::core::v3::TypedExtensionConfig>& ecds) {
  if (ecds.empty()) return;
  auto visit = [&](FilterChain& fc) {
    for (Filter& f : *fc.mutable_filters()) {
      if (!isHcm(f) || !f.has_typed_config()) continue;
      Hcm hcm;
      if (!f.typed_config().UnpackTo(&hcm)) continue;
      bool changed = false;
      for (HttpFilter& h : *hcm.mutable_http_filters()) {
        if (!h.has_config_discovery()) continue;
        auto it = ecds.find(h.name());
        if (it == ecds.end() || !it->second.has_typed_config()) continue;
        *h.mutable_typed_config() = it->second.typed_config();  // clears config_discovery (oneof)
        changed = true;
      }
      if (changed) f.mutable_typed_config()->PackFrom(hcm);
    }
  };
  for (auto& fc : *l.mutable_filter_chains()) visit(fc);
  if (l.has_default_filter_chain()) visit(*l.mutable_default_filter_chain());
}

}  // namespace skiff::envoy_filter::internal
