// EnvoyFilter manifests: YAML documents -> EnvoyFilter, validated as istiod's webhook does.
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <re2/re2.h>

#include "envoy/config/bootstrap/v3/bootstrap.pb.h"
#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/core/v3/extension.pb.h"
#include "envoy/config/route/v3/route.pb.h"
#include "envoy_filter/internal.h"
#include "skiff/api/api_types.h"
#include "skiff/config/config_error.h"

namespace skiff::envoy_filter {

using config::ConfigError;

std::string_view applyToName(ApplyTo a) {
  static const char* const kNames[] = {
      "INVALID",      "LISTENER",   "FILTER_CHAIN", "NETWORK_FILTER",   "HTTP_FILTER", "ROUTE_CONFIGURATION",
      "VIRTUAL_HOST", "HTTP_ROUTE", "CLUSTER",      "EXTENSION_CONFIG", "BOOTSTRAP",   "LISTENER_FILTER"};
  return kNames[static_cast<int>(a)];
}

std::string_view operationName(Operation o) {
  static const char* const kNames[] = {"INVALID",      "MERGE",         "ADD",
                                       "REMOVE",       "INSERT_BEFORE", "INSERT_AFTER",
                                       "INSERT_FIRST", "REPLACE",       "MERGE_AND_REPLACE_LIST"};
  return kNames[static_cast<int>(o)];
}

std::string_view contextName(PatchContext c) {
  static const char* const kNames[] = {"ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY", "WAYPOINT"};
  return kNames[static_cast<int>(c)];
}

namespace {

// Throws with the file / object / field prefix.
struct Where {
  const std::string& source;
  std::string object;
  [[noreturn]] void fail(const std::string& path, const std::string& what) const {
    throw ConfigError(fmt::format("{}: EnvoyFilter '{}': {}: {}", source, object, path, what));
  }
};

std::string scalar(const YAML::Node& node, const std::string& path, const Where& w) {
  if (!node || node.IsNull()) return "";
  if (!node.IsScalar()) w.fail(path, "expected a string");
  return node.Scalar();
}

uint32_t port(const YAML::Node& node, const std::string& path, const Where& w) {
  if (!node || node.IsNull()) return 0;
  const std::string s = scalar(node, path, w);
  uint32_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) w.fail(path, "expected a port number, got '" + s + "'");
  return v;
}

template <class E, size_t N>
E enumValue(const YAML::Node& node, const std::string& path, const Where& w, const char* const (&names)[N],
            E fallback) {
  if (!node || node.IsNull()) return fallback;
  const std::string s = scalar(node, path, w);
  for (size_t i = 0; i < N; ++i) {
    if (s == names[i]) return static_cast<E>(i);
  }
  std::string list;
  for (size_t i = 0; i < N; ++i) list += (i ? ", " : "") + std::string(names[i]);
  w.fail(path, fmt::format("unknown value '{}' (expected one of {})", s, list));
}

void checkKeys(const YAML::Node& node, const std::string& path, const Where& w,
               std::initializer_list<const char*> known) {
  if (!node) return;
  if (!node.IsMap()) w.fail(path, "expected a map");
  for (const auto& kv : node) {
    const std::string key = kv.first.Scalar();
    if (std::find_if(known.begin(), known.end(), [&](const char* k) { return key == k; }) == known.end()) {
      w.fail(path + "." + key, "unknown field");
    }
  }
}

std::unique_ptr<google::protobuf::Message> messageFor(ApplyTo a) {
  switch (a) {
    case ApplyTo::kListener:
      return std::make_unique<envoy::config::listener::v3::Listener>();
    case ApplyTo::kFilterChain:
      return std::make_unique<envoy::config::listener::v3::FilterChain>();
    case ApplyTo::kNetworkFilter:
      return std::make_unique<envoy::config::listener::v3::Filter>();
    case ApplyTo::kHttpFilter:
      return std::make_unique<envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter>();
    case ApplyTo::kRouteConfiguration:
      return std::make_unique<envoy::config::route::v3::RouteConfiguration>();
    case ApplyTo::kVirtualHost:
      return std::make_unique<envoy::config::route::v3::VirtualHost>();
    case ApplyTo::kHttpRoute:
      return std::make_unique<envoy::config::route::v3::Route>();
    case ApplyTo::kCluster:
      return std::make_unique<envoy::config::cluster::v3::Cluster>();
    case ApplyTo::kExtensionConfig:
      return std::make_unique<envoy::config::core::v3::TypedExtensionConfig>();
    case ApplyTo::kBootstrap:
      return std::make_unique<envoy::config::bootstrap::v3::Bootstrap>();
    case ApplyTo::kListenerFilter:
      return std::make_unique<envoy::config::listener::v3::ListenerFilter>();
    case ApplyTo::kInvalid:
      break;
  }
  return nullptr;
}

bool isListenerClass(ApplyTo a) {
  return a == ApplyTo::kListener || a == ApplyTo::kFilterChain || a == ApplyTo::kNetworkFilter ||
         a == ApplyTo::kHttpFilter || a == ApplyTo::kListenerFilter;
}
bool isRouteClass(ApplyTo a) {
  return a == ApplyTo::kRouteConfiguration || a == ApplyTo::kVirtualHost || a == ApplyTo::kHttpRoute;
}

void parseListenerMatch(const YAML::Node& n, const std::string& path, const Where& w, ListenerMatch& m) {
  checkKeys(n, path, w,
            {"portNumber", "port_number", "portName", "port_name", "filterChain", "filter_chain", "name",
             "listenerFilter", "listener_filter"});
  m.port_number = port(n["portNumber"] ? n["portNumber"] : n["port_number"], path + ".portNumber", w);
  m.name = scalar(n["name"], path + ".name", w);
  m.listener_filter =
      scalar(n["listenerFilter"] ? n["listenerFilter"] : n["listener_filter"], path + ".listenerFilter", w);
  const YAML::Node fc = n["filterChain"] ? n["filterChain"] : n["filter_chain"];
  if (!fc || fc.IsNull()) return;
  const std::string fpath = path + ".filterChain";
  checkKeys(fc, fpath, w,
            {"name", "sni", "transportProtocol", "transport_protocol", "applicationProtocols",
             "application_protocols", "destinationPort", "destination_port", "filter"});
  m.has_filter_chain = true;
  auto& c = m.filter_chain;
  c.name = scalar(fc["name"], fpath + ".name", w);
  c.sni = scalar(fc["sni"], fpath + ".sni", w);
  c.transport_protocol = scalar(fc["transportProtocol"] ? fc["transportProtocol"] : fc["transport_protocol"],
                                fpath + ".transportProtocol", w);
  c.application_protocols =
      scalar(fc["applicationProtocols"] ? fc["applicationProtocols"] : fc["application_protocols"],
             fpath + ".applicationProtocols", w);
  c.destination_port = port(fc["destinationPort"] ? fc["destinationPort"] : fc["destination_port"],
                            fpath + ".destinationPort", w);
  const YAML::Node f = fc["filter"];
  if (f && !f.IsNull()) {
    checkKeys(f, fpath + ".filter", w, {"name", "subFilter", "sub_filter"});
    c.filter_name = scalar(f["name"], fpath + ".filter.name", w);
    const YAML::Node sub = f["subFilter"] ? f["subFilter"] : f["sub_filter"];
    if (sub && !sub.IsNull()) {
      checkKeys(sub, fpath + ".filter.subFilter", w, {"name"});
      c.sub_filter_name = scalar(sub["name"], fpath + ".filter.subFilter.name", w);
    }
    if (c.filter_name.empty())
      w.fail(fpath + ".filter.name", "filter name is required when matching a filter");
  }
}

void parseRouteMatch(const YAML::Node& n, const std::string& path, const Where& w,
                     RouteConfigurationMatch& m) {
  checkKeys(n, path, w, {"portNumber", "port_number", "portName", "port_name", "gateway", "vhost", "name"});
  m.port_number = port(n["portNumber"] ? n["portNumber"] : n["port_number"], path + ".portNumber", w);
  m.port_name = scalar(n["portName"] ? n["portName"] : n["port_name"], path + ".portName", w);
  m.gateway = scalar(n["gateway"], path + ".gateway", w);
  m.name = scalar(n["name"], path + ".name", w);
  const YAML::Node vh = n["vhost"];
  if (!vh || vh.IsNull()) return;
  checkKeys(vh, path + ".vhost", w, {"name", "route", "domainName", "domain_name"});
  m.has_vhost = true;
  m.vhost_name = scalar(vh["name"], path + ".vhost.name", w);
  m.vhost_domain_name =
      scalar(vh["domainName"] ? vh["domainName"] : vh["domain_name"], path + ".vhost.domainName", w);
  const YAML::Node r = vh["route"];
  if (!r || r.IsNull()) return;
  checkKeys(r, path + ".vhost.route", w, {"name", "action"});
  m.has_route = true;
  m.route_name = scalar(r["name"], path + ".vhost.route.name", w);
  static const char* const kActions[] = {"ANY", "ROUTE", "REDIRECT", "DIRECT_RESPONSE"};
  m.route_action = enumValue(r["action"], path + ".vhost.route.action", w, kActions, RouteAction::kAny);
}

ConfigPatch parsePatch(const YAML::Node& n, const std::string& path, const Where& w) {
  ConfigPatch p;
  p.path = path;
  checkKeys(n, path, w, {"applyTo", "apply_to", "match", "patch"});
  static const char* const kApplyTo[] = {
      "INVALID",      "LISTENER",   "FILTER_CHAIN", "NETWORK_FILTER",   "HTTP_FILTER", "ROUTE_CONFIGURATION",
      "VIRTUAL_HOST", "HTTP_ROUTE", "CLUSTER",      "EXTENSION_CONFIG", "BOOTSTRAP",   "LISTENER_FILTER"};
  p.apply_to = enumValue(n["applyTo"] ? n["applyTo"] : n["apply_to"], path + ".applyTo", w, kApplyTo,
                         ApplyTo::kInvalid);
  if (p.apply_to == ApplyTo::kInvalid) w.fail(path + ".applyTo", "is required and must not be INVALID");

  const YAML::Node match = n["match"];
  if (match && !match.IsNull()) {
    const std::string mpath = path + ".match";
    checkKeys(
        match, mpath, w,
        {"context", "proxy", "listener", "routeConfiguration", "route_configuration", "cluster", "waypoint"});
    static const char* const kContexts[] = {"ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY",
                                            "WAYPOINT"};
    p.context = enumValue(match["context"], mpath + ".context", w, kContexts, PatchContext::kAny);
    const YAML::Node proxy = match["proxy"];
    if (proxy && !proxy.IsNull()) {
      checkKeys(proxy, mpath + ".proxy", w, {"proxyVersion", "proxy_version", "metadata"});
      p.proxy_version = scalar(proxy["proxyVersion"] ? proxy["proxyVersion"] : proxy["proxy_version"],
                               mpath + ".proxy.proxyVersion", w);
      if (!p.proxy_version.empty()) {
        RE2 re(p.proxy_version, RE2::Quiet);
        if (!re.ok()) w.fail(mpath + ".proxy.proxyVersion", "invalid regex: " + re.error());
      }
      const YAML::Node md = proxy["metadata"];
      if (md && !md.IsNull()) {
        if (!md.IsMap()) w.fail(mpath + ".proxy.metadata", "expected a map of strings");
        for (const auto& kv : md) {
          p.proxy_metadata[kv.first.Scalar()] =
              scalar(kv.second, mpath + ".proxy.metadata." + kv.first.Scalar(), w);
        }
      }
    }
    int objects = 0;
    if (const YAML::Node l = match["listener"]; l && !l.IsNull()) {
      ++objects;
      p.object = ConfigPatch::ObjectMatch::kListener;
      parseListenerMatch(l, mpath + ".listener", w, p.listener);
    }
    const YAML::Node rc =
        match["routeConfiguration"] ? match["routeConfiguration"] : match["route_configuration"];
    if (rc && !rc.IsNull()) {
      ++objects;
      p.object = ConfigPatch::ObjectMatch::kRouteConfiguration;
      parseRouteMatch(rc, mpath + ".routeConfiguration", w, p.route_configuration);
    }
    if (const YAML::Node c = match["cluster"]; c && !c.IsNull()) {
      ++objects;
      p.object = ConfigPatch::ObjectMatch::kCluster;
      checkKeys(c, mpath + ".cluster", w, {"portNumber", "port_number", "service", "subset", "name"});
      p.cluster.port_number =
          port(c["portNumber"] ? c["portNumber"] : c["port_number"], mpath + ".cluster.portNumber", w);
      p.cluster.service = scalar(c["service"], mpath + ".cluster.service", w);
      p.cluster.subset = scalar(c["subset"], mpath + ".cluster.subset", w);
      p.cluster.name = scalar(c["name"], mpath + ".cluster.name", w);
    }
    if (match["waypoint"]) {
      ++objects;
      p.object = ConfigPatch::ObjectMatch::kWaypoint;
    }
    if (objects > 1) w.fail(mpath, "only one of listener, routeConfiguration, cluster, waypoint may be set");
    using OM = ConfigPatch::ObjectMatch;
    if (isListenerClass(p.apply_to) && p.object != OM::kNone && p.object != OM::kListener &&
        p.object != OM::kWaypoint) {
      w.fail(mpath, fmt::format("applyTo {} only takes a listener match", applyToName(p.apply_to)));
    }
    if (isRouteClass(p.apply_to) && p.object != OM::kNone && p.object != OM::kRouteConfiguration) {
      w.fail(mpath, fmt::format("applyTo {} only takes a routeConfiguration match", applyToName(p.apply_to)));
    }
    if (p.apply_to == ApplyTo::kCluster && p.object != OM::kNone && p.object != OM::kCluster &&
        p.object != OM::kWaypoint) {
      w.fail(mpath, "applyTo CLUSTER only takes a cluster match");
    }
    if (!p.listener.filter_chain.sub_filter_name.empty()) {
      if (p.apply_to != ApplyTo::kHttpFilter) {
        w.fail(mpath + ".listener.filterChain.filter.subFilter", "is only allowed with applyTo HTTP_FILTER");
      }
      if (internal::canonicalName(p.listener.filter_chain.filter_name) !=
          "envoy.filters.network.http_connection_manager") {
        w.fail(mpath + ".listener.filterChain.filter.name",
               "must be envoy.filters.network.http_connection_manager when subFilter is set");
      }
    }
  }

  const YAML::Node patch = n["patch"];
  if (!patch || patch.IsNull()) w.fail(path + ".patch", "is required");
  checkKeys(patch, path + ".patch", w, {"operation", "value", "filterClass", "filter_class"});
  static const char* const kOps[] = {"INVALID",      "MERGE",         "ADD",
                                     "REMOVE",       "INSERT_BEFORE", "INSERT_AFTER",
                                     "INSERT_FIRST", "REPLACE",       "MERGE_AND_REPLACE_LIST"};
  p.operation = enumValue(patch["operation"], path + ".patch.operation", w, kOps, Operation::kInvalid);
  if (p.operation == Operation::kInvalid)
    w.fail(path + ".patch.operation", "is required and must not be INVALID");
  p.filter_class = scalar(patch["filterClass"] ? patch["filterClass"] : patch["filter_class"],
                          path + ".patch.filterClass", w);
  const YAML::Node value = patch["value"];
  if (!value || value.IsNull()) {
    if (p.operation != Operation::kRemove)
      w.fail(path + ".patch.value", "is required unless operation is REMOVE");
    return p;
  }
  auto message = messageFor(p.apply_to);
  try {
    internal::yamlToMessage(value, *message, path + ".patch.value",
                            fmt::format("{}: EnvoyFilter '{}': ", w.source, w.object));
  } catch (const ConfigError& e) {
    throw ConfigError(fmt::format("{}: EnvoyFilter '{}': {}", w.source, w.object, e.what()));
  }
  p.value = std::move(message);
  return p;
}

EnvoyFilter parseOne(const YAML::Node& doc, const std::string& source, size_t index) {
  EnvoyFilter f;
  f.source = source;
  const YAML::Node meta = doc["metadata"];
  Where w{source, fmt::format("#{}", index)};
  if (meta && meta.IsMap()) {
    f.name = scalar(meta["name"], "metadata.name", w);
    f.namespace_ = scalar(meta["namespace"], "metadata.namespace", w);
    f.creation_timestamp = scalar(meta["creationTimestamp"], "metadata.creationTimestamp", w);
  }
  if (f.name.empty()) w.fail("metadata.name", "is required");
  w.object = f.key();
  const std::string api = scalar(doc["apiVersion"], "apiVersion", w);
  if (api.rfind("networking.istio.io/", 0) != 0) {
    w.fail("apiVersion", "expected networking.istio.io/v1alpha3, got '" + api + "'");
  }
  const YAML::Node spec = doc["spec"];
  if (!spec || !spec.IsMap()) w.fail("spec", "is required");
  checkKeys(spec, "spec", w,
            {"workloadSelector", "workload_selector", "configPatches", "config_patches", "priority",
             "targetRefs", "target_refs"});
  const YAML::Node sel = spec["workloadSelector"] ? spec["workloadSelector"] : spec["workload_selector"];
  if (sel && !sel.IsNull()) {
    checkKeys(sel, "spec.workloadSelector", w, {"labels"});
    f.has_workload_selector = true;
    const YAML::Node labels = sel["labels"];
    if (labels && !labels.IsNull()) {
      if (!labels.IsMap()) w.fail("spec.workloadSelector.labels", "expected a map of strings");
      for (const auto& kv : labels) {
        f.workload_labels[kv.first.Scalar()] =
            scalar(kv.second, "spec.workloadSelector.labels." + kv.first.Scalar(), w);
      }
    }
  }
  const YAML::Node refs = spec["targetRefs"] ? spec["targetRefs"] : spec["target_refs"];
  if (refs && !refs.IsNull()) {
    if (f.has_workload_selector) w.fail("spec.targetRefs", "cannot be set together with workloadSelector");
    f.has_target_refs = refs.IsSequence() && refs.size() > 0;
  }
  if (const YAML::Node pr = spec["priority"]; pr && !pr.IsNull()) {
    const std::string s = scalar(pr, "spec.priority", w);
    int32_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size())
      w.fail("spec.priority", "expected an integer, got '" + s + "'");
    f.priority = v;
  }
  const YAML::Node patches = spec["configPatches"] ? spec["configPatches"] : spec["config_patches"];
  if (!patches || !patches.IsSequence() || patches.size() == 0) {
    w.fail("spec.configPatches", "is required (a non-empty list)");
  }
  for (size_t i = 0; i < patches.size(); ++i) {
    f.patches.push_back(parsePatch(patches[i], fmt::format("spec.configPatches[{}]", i), w));
  }
  return f;
}

}  // namespace

std::vector<EnvoyFilter> parseEnvoyFilters(std::string_view yaml, const std::string& source) {
  api::linkAllApiTypes();
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(std::string(yaml));
  } catch (const YAML::Exception& e) {
    throw ConfigError(fmt::format("{}: invalid YAML at line {}: {}", source, e.mark.line + 1, e.msg));
  }
  std::vector<EnvoyFilter> out;
  for (size_t i = 0; i < docs.size(); ++i) {
    const YAML::Node& doc = docs[i];
    if (!doc || doc.IsNull()) continue;
    if (!doc.IsMap())
      throw ConfigError(fmt::format("{}: document #{}: expected a Kubernetes object", source, i));
    const YAML::Node kind = doc["kind"];
    if (!kind || !kind.IsScalar() || kind.Scalar() != "EnvoyFilter") continue;  // other kinds: not ours
    try {
      out.push_back(parseOne(doc, source, i));
    } catch (const YAML::Exception& e) {
      throw ConfigError(fmt::format("{}: document #{}: {}", source, i, e.msg));
    }
  }
  return out;
}

std::vector<EnvoyFilter> loadEnvoyFilters(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<std::string> files;
  if (fs::is_directory(path, ec)) {
    for (const auto& entry : fs::directory_iterator(path, ec)) {
      const std::string ext = entry.path().extension().string();
      if (entry.is_regular_file() && (ext == ".yaml" || ext == ".yml" || ext == ".json")) {
        files.push_back(entry.path().string());
      }
    }
    if (ec) throw ConfigError(fmt::format("{}: cannot list directory: {}", path, ec.message()));
    std::sort(files.begin(), files.end());
  } else {
    files.push_back(path);
  }
  std::vector<EnvoyFilter> out;
  for (const auto& file : files) {
    std::ifstream in(file, std::ios::binary);
    if (!in)
      throw ConfigError(fmt::format("{}: cannot read EnvoyFilter file: {}", file, std::strerror(errno)));
    std::stringstream buffer;
    buffer << in.rdbuf();
    auto filters = parseEnvoyFilters(buffer.str(), file);
    std::move(filters.begin(), filters.end(), std::back_inserter(out));
  }
  return out;
}

std::vector<EnvoyFilter> loadEnvoyFilterPaths(const std::string& paths) {
  std::vector<EnvoyFilter> out;
  size_t start = 0;
  while (start <= paths.size()) {
    size_t comma = paths.find(',', start);
    if (comma == std::string::npos) comma = paths.size();
    const std::string one = paths.substr(start, comma - start);
    if (!one.empty()) {
      auto filters = loadEnvoyFilters(one);
      std::move(filters.begin(), filters.end(), std::back_inserter(out));
    }
    start = comma + 1;
  }
  return out;
}

void sortForApplication(std::vector<EnvoyFilter>& filters) {
  std::stable_sort(filters.begin(), filters.end(), [](const EnvoyFilter& a, const EnvoyFilter& b) {
    const bool ra = a.namespace_ == "istio-system", rb = b.namespace_ == "istio-system";
    if (ra != rb) return ra;
    if (a.priority != b.priority) return a.priority < b.priority;
    if (a.creation_timestamp != b.creation_timestamp) return a.creation_timestamp < b.creation_timestamp;
    if (a.namespace_ != b.namespace_) return a.namespace_ < b.namespace_;
    return a.name < b.name;
  });
}

}  // namespace skiff::envoy_filter
