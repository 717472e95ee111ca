// ROUTE_CONFIGURATION, VIRTUAL_HOST, HTTP_ROUTE and CLUSTER patches, with istiod's name-based matching.
#include <charconv>

#include "envoy_filter/apply_internal.h"

namespace skiff::envoy_filter::internal {

using envoy::config::cluster::v3::Cluster;
using envoy::config::route::v3::Route;
using envoy::config::route::v3::RouteConfiguration;
using envoy::config::route::v3::VirtualHost;

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t pos = s.find(sep, start);
    out.push_back(s.substr(start, pos == std::string::npos ? std::string::npos : pos - start));
    if (pos == std::string::npos) return out;
    start = pos + 1;
  }
}

uint32_t toPort(const std::string& s) {
  uint32_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size() ? v : 0;
}

bool routeConfigurationMatch(const RouteConfiguration& rc, const ConfigPatch& p, PatchContext ctx,
                             uint32_t listener_port) {
  if (p.object != ConfigPatch::ObjectMatch::kRouteConfiguration) {
    return p.object == ConfigPatch::ObjectMatch::kNone;
  }
  const auto& m = p.route_configuration;
  if (!m.name.empty() && m.name != rc.name()) return false;
  if (ctx != PatchContext::kGateway) {
    // Sidecar RDS names: "<port>" (outbound) or "inbound|<port>||"; inline configs: the listener's port.
    uint32_t port = 0;
    if (rc.name().rfind("inbound|", 0) == 0) {
      auto parts = split(rc.name(), '|');
      if (parts.size() > 1) port = toPort(parts[1]);
    } else {
      port = toPort(rc.name());
    }
    if (port == 0) port = listener_port;
    return m.port_number == 0 || m.port_number == port;
  }
  // Gateway RDS names: http.<port> or https.<port>.<portName>.<gateway>.<namespace>.
  auto parts = split(rc.name(), '.');
  uint32_t port = parts.size() > 1 ? toPort(parts[1]) : 0;
  if (port == 0) port = listener_port;
  const std::string port_name = parts.size() > 2 ? parts[2] : "";
  const std::string gateway = parts.size() > 4 ? parts[4] + "/" + parts[3] : "";
  if (m.port_number != 0 && m.port_number != port) return false;
  if (!m.port_name.empty() && m.port_name != port_name) return false;
  if (!m.gateway.empty() && m.gateway != gateway) return false;
  return true;
}

bool vhostMatch(const VirtualHost& vh, const ConfigPatch& p) {
  const auto& m = p.route_configuration;
  if (!m.has_vhost) return true;
  if (!m.vhost_name.empty() && m.vhost_name != vh.name()) return false;
  if (!m.vhost_domain_name.empty() &&
      std::find(vh.domains().begin(), vh.domains().end(), m.vhost_domain_name) == vh.domains().end()) {
    return false;
  }
  return true;
}

bool routeMatch(const Route& r, const ConfigPatch& p) {
  const auto& m = p.route_configuration;
  if (!m.has_route) return true;
  if (!m.route_name.empty() && m.route_name != r.name()) return false;
  switch (m.route_action) {
    case RouteAction::kRoute:
      return r.has_route();
    case RouteAction::kRedirect:
      return r.has_redirect();
    case RouteAction::kDirectResponse:
      return r.has_direct_response();
    default:
      return true;
  }
}

void mergeTransportSocketAware(Cluster& c, const Cluster& value, bool replace_lists) {
  Cluster rest = value;
  if (value.has_transport_socket() && c.has_transport_socket() &&
      value.transport_socket().name() == c.transport_socket().name() &&
      value.transport_socket().has_typed_config() && c.transport_socket().has_typed_config()) {
    mergeAny(*c.mutable_transport_socket()->mutable_typed_config(), value.transport_socket().typed_config(),
             replace_lists);
    rest.clear_transport_socket();
  }
  mergeMessage(c, rest, replace_lists);
}

}  // namespace

PatchContext routeContext(const std::string& name, const Proxy& proxy) {
  if (proxy.gateway) return PatchContext::kGateway;
  return name.rfind("inbound|", 0) == 0 ? PatchContext::kSidecarInbound : PatchContext::kSidecarOutbound;
}

PatchContext clusterContext(const Cluster& c, const Proxy& proxy) {
  if (proxy.gateway) return PatchContext::kGateway;
  return c.name().rfind("inbound|", 0) == 0 ? PatchContext::kSidecarInbound : PatchContext::kSidecarOutbound;
}

void applyRoutePatch(RouteConfiguration& rc, const ConfigPatch& p, PatchContext ctx, uint32_t port) {
  if (!routeConfigurationMatch(rc, p, ctx, port)) return;
  const bool replace_lists = p.operation == Operation::kMergeAndReplaceList;
  const bool merge = p.operation == Operation::kMerge || replace_lists;
  switch (p.apply_to) {
    case ApplyTo::kRouteConfiguration:
      if (merge) mergeMessage(rc, *p.value, replace_lists);
      return;
    case ApplyTo::kVirtualHost: {
      const auto* value = static_cast<const VirtualHost*>(p.value.get());
      if (p.operation == Operation::kAdd) {
        rc.add_virtual_hosts()->CopyFrom(*value);
        return;
      }
      auto* vhosts = rc.mutable_virtual_hosts();
      for (int i = vhosts->size() - 1; i >= 0; --i) {
        if (!vhostMatch(vhosts->Get(i), p)) continue;
        if (p.operation == Operation::kRemove) {
          vhosts->DeleteSubrange(i, 1);
        } else if (p.operation == Operation::kReplace) {
          vhosts->Mutable(i)->CopyFrom(*value);
        } else if (merge) {
          mergeMessage(*vhosts->Mutable(i), *value, replace_lists);
        }
      }
      return;
    }
    case ApplyTo::kHttpRoute: {
      const auto* value = static_cast<const Route*>(p.value.get());
      for (auto& vh : *rc.mutable_virtual_hosts()) {
        if (!vhostMatch(vh, p)) continue;
        applyListOp(
            *vh.mutable_routes(), p.operation, p.route_configuration.has_route,
            [&](const Route& r) { return routeMatch(r, p); }, value,
            [&](Route& r) { mergeMessage(r, *value, replace_lists); }, /*insert_first_needs_match=*/true);
      }
      return;
    }
    default:
      return;
  }
}

void applyClusterPatch(Cluster& c, const ConfigPatch& p, bool& removed) {
  if (p.object == ConfigPatch::ObjectMatch::kCluster) {
    const auto& m = p.cluster;
    if (!m.name.empty()) {
      if (m.name != c.name()) return;
    } else {
      // outbound|<port>|<subset>|<fqdn> / inbound|<port>||
      auto parts = split(c.name(), '|');
      const uint32_t port = parts.size() == 4 ? toPort(parts[1]) : 0;
      const std::string subset = parts.size() == 4 ? parts[2] : "";
      const std::string service = parts.size() == 4 ? parts[3] : "";
      if (m.port_number != 0 && m.port_number != port) return;
      if (!m.service.empty() && m.service != service) return;
      if (!m.subset.empty() && m.subset != subset) return;
    }
  } else if (p.object != ConfigPatch::ObjectMatch::kNone) {
    return;
  }
  if (p.operation == Operation::kRemove) {
    removed = true;
  } else if (p.operation == Operation::kMerge || p.operation == Operation::kMergeAndReplaceList) {
    mergeTransportSocketAware(c, static_cast<const Cluster&>(*p.value),
                              p.operation == Operation::kMergeAndReplaceList);
  }
}

}  // namespace skiff::envoy_filter::internal
