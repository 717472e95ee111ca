// injector: builds the skiff-init and skiff containers, volumes and metadata from a pod's settings.
#include "skiff/inject/injector.h"

#include <cmath>

#include "skiff/inject/yaml_io.h"

namespace skiff::inject {
namespace {

constexpr int kProxyUid = 1337;
constexpr int kHealthPort = 15021;
constexpr int kPrometheusPort = 15090;
constexpr const char* kStatusAnnotation = "sidecar.istio.io/status";

Value fieldRef(const char* path) {
  Value v = Value::object();
  v["valueFrom"]["fieldRef"].set("fieldPath", path);
  return v;
}

Value env(std::string name, Value value) {
  Value e = Value::object();
  e.set("name", std::move(name));
  if (value.isString()) {
    e.set("value", std::move(value));
  } else {
    for (auto& [k, v] : value.asObject()) e.set(k, v);
  }
  return e;
}

Value strings(const std::vector<std::string>& in) {
  Array a;
  for (const auto& s : in) a.emplace_back(s);
  return Value(std::move(a));
}

Value resources(const PodSettings& s) {
  Value r = Value::object();
  if (!s.cpu_limit.empty()) r["limits"].set("cpu", s.cpu_limit);
  if (!s.memory_limit.empty()) r["limits"].set("memory", s.memory_limit);
  if (!s.cpu_request.empty()) r["requests"].set("cpu", s.cpu_request);
  if (!s.memory_request.empty()) r["requests"].set("memory", s.memory_request);
  return r;
}

// istio-iptables' flags as Istio's injection template derives them (skiff-init takes the same ones).
std::vector<std::string> initArgs(const PodSettings& s) {
  std::string exclude_in = "15090,15021";
  if (!s.exclude_inbound_ports.empty()) exclude_in += "," + s.exclude_inbound_ports;
  if (s.status_port != 0) exclude_in += "," + std::to_string(s.status_port);
  std::vector<std::string> args = {"-p", "15001",
                                   "-z", "15006",
                                   "-u", std::to_string(kProxyUid),
                                   "-m", s.interception_mode,
                                   "-i", s.include_ip_ranges,
                                   "-x", s.exclude_ip_ranges,
                                   "-b", s.include_inbound_ports,
                                   "-d", exclude_in};
  auto optional = [&](const char* flag, const std::string& value) {
    if (!value.empty()) {
      args.push_back(flag);
      args.push_back(value);
    }
  };
  optional("-q", s.include_outbound_ports);
  optional("-o", s.exclude_outbound_ports);
  optional("-k", s.kubevirt_interfaces);
  optional("-c", s.exclude_interfaces);
  return args;
}

Value initContainer(const PodSettings& s, const InjectConfig& c) {
  Value ctr = Value::object();
  ctr.set("name", c.init_name);
  ctr.set("image", c.init_image.empty() ? c.proxy_image : c.init_image);
  if (!c.image_pull_policy.empty()) ctr.set("imagePullPolicy", c.image_pull_policy);
  ctr.set("command", strings(c.init_command));
  ctr.set("args", strings(initArgs(s)));
  if (!s.proxy_metadata.empty()) {
    Array e;
    for (const auto& [k, v] : s.proxy_metadata) e.push_back(env(k, v));
    ctr.set("env", Value(std::move(e)));
  }
  ctr.set("resources", resources(s));
  // Only what programming netfilter needs: NET_ADMIN/NET_RAW as root, everything else dropped.
  Value sc = Value::object();
  sc.set("allowPrivilegeEscalation", false);
  sc["capabilities"].set("add", Value(Array{Value("NET_ADMIN"), Value("NET_RAW")}));
  sc["capabilities"].set("drop", Value(Array{Value("ALL")}));
  sc.set("privileged", false);
  sc.set("readOnlyRootFilesystem", false);
  sc.set("runAsGroup", 0);
  sc.set("runAsNonRoot", false);
  sc.set("runAsUser", 0);
  ctr.set("securityContext", sc);
  return ctr;
}

Value httpProbe(const PodSettings& s, bool startup) {
  Value p = Value::object();
  p.set("failureThreshold", startup ? 600 : s.readiness_failure_threshold);
  p["httpGet"].set("path", "/healthz/ready");
  p["httpGet"].set("port", kHealthPort);
  if (!startup && s.readiness_initial_delay_seconds > 0) {
    p.set("initialDelaySeconds", s.readiness_initial_delay_seconds);
  }
  p.set("periodSeconds", startup ? 1 : s.readiness_period_seconds);
  p.set("timeoutSeconds", 3);
  return p;
}

std::string podPortsJson(const Value& spec) {
  Array ports;
  if (const Value* containers = spec.find("containers"); containers != nullptr && containers->isArray()) {
    for (const auto& ctr : containers->asArray()) {
      if (const Value* p = ctr.find("ports"); p != nullptr && p->isArray()) {
        for (const auto& port : p->asArray()) ports.push_back(port);
      }
    }
  }
  return ports.empty() ? "" : toJson(Value(std::move(ports)));
}

std::string appContainers(const Value& spec) {
  std::string out;
  if (const Value* containers = spec.find("containers"); containers != nullptr && containers->isArray()) {
    for (const auto& ctr : containers->asArray()) {
      if (!out.empty()) out += ",";
      out += ctr.getString("name");
    }
  }
  return out;
}

std::string ownerUrl(const Workload& w) {
  std::string plural = w.kind;
  for (auto& ch : plural) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  plural += "s";
  return "kubernetes://apis/" + w.api_version + "/namespaces/" + w.namespace_ + "/" + plural + "/" + w.name;
}

std::string formatSeconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", std::ceil(s));
  return buf;
}

Value proxyContainer(const PodSettings& s, const InjectConfig& c, const Value& metadata, const Value& spec,
                     const Workload& w, const Value& prometheus_originals) {
  Value ctr = Value::object();
  ctr.set("name", c.proxy_name);
  ctr.set("image", c.proxy_image);
  if (!c.image_pull_policy.empty()) ctr.set("imagePullPolicy", c.image_pull_policy);
  ctr.set("command", strings(c.proxy_command));
  std::vector<std::string> args;
  if (!s.bootstrap_override.empty()) {
    args = {"--config-path", "/etc/istio/custom-bootstrap/custom_bootstrap.json"};
  }
  int prom_port = c.prometheus_port == kPrometheusPort ? kPrometheusPort : c.prometheus_port;
  args.insert(
      args.end(),
      {"--config-yaml", toJson(sidecarBootstrap(s.discovery_address, prom_port)), "--service-node",
       "sidecar~$(INSTANCE_IP)~$(POD_NAME).$(POD_NAMESPACE)~$(POD_NAMESPACE).svc.cluster.local",
       "--service-cluster", w.name + ".$(POD_NAMESPACE)", "--log-level", s.log_level, "--component-log-level",
       s.component_log_level, "--drain-time-s", formatSeconds(s.termination_drain_seconds)});
  if (s.concurrency > 0) {
    args.push_back("--concurrency");
    args.push_back(std::to_string(s.concurrency));
  }
  ctr.set("args", strings(args));

  Array e;
  e.push_back(env("PILOT_CERT_PROVIDER", "istiod"));
  // The CA is mesh-wide: a pod's discoveryAddress does not move it (as in Istio's template).
  e.push_back(env("CA_ADDR", c.ca_address.empty() ? c.discovery_address : c.ca_address));
  e.push_back(env("POD_NAME", fieldRef("metadata.name")));
  e.push_back(env("POD_NAMESPACE", fieldRef("metadata.namespace")));
  e.push_back(env("INSTANCE_IP", fieldRef("status.podIP")));
  e.push_back(env("SERVICE_ACCOUNT", fieldRef("spec.serviceAccountName")));
  e.push_back(env("HOST_IP", fieldRef("status.hostIP")));
  Value cpu = Value::object();
  cpu["valueFrom"]["resourceFieldRef"].set("divisor", "1");
  cpu["valueFrom"]["resourceFieldRef"].set("resource", "limits.cpu");
  e.push_back(env("ISTIO_CPU_LIMIT", cpu));
  e.push_back(env("PROXY_CONFIG", toJson(s.proxy_config) + "\n"));
  if (std::string ports = podPortsJson(spec); !ports.empty()) e.push_back(env("ISTIO_META_POD_PORTS", ports));
  e.push_back(env("ISTIO_META_APP_CONTAINERS", appContainers(spec)));
  e.push_back(env("ISTIO_META_CLUSTER_ID", c.cluster_id));
  e.push_back(env("ISTIO_META_NODE_NAME", fieldRef("spec.nodeName")));
  e.push_back(env("ISTIO_META_INTERCEPTION_MODE", s.interception_mode));
  if (!c.network.empty()) e.push_back(env("ISTIO_META_NETWORK", c.network));
  e.push_back(env("ISTIO_META_WORKLOAD_NAME", w.name));
  e.push_back(env("ISTIO_META_OWNER", ownerUrl(w)));
  e.push_back(env("ISTIO_META_MESH_ID", c.mesh_id.empty() ? c.trust_domain : c.mesh_id));
  e.push_back(env("TRUST_DOMAIN", c.trust_domain));
  // The pod's labels as node metadata (pilot-agent reads them from the downward API; skiff has no agent).
  if (const Value* labels = metadata.find("labels"); labels != nullptr && labels->isObject()) {
    e.push_back(env("ISTIO_METAJSON_LABELS", toJson(*labels)));
  }
  if (!s.bootstrap_override.empty()) {
    e.push_back(env("ISTIO_BOOTSTRAP_OVERRIDE", "/etc/istio/custom-bootstrap/custom_bootstrap.json"));
  }
  if (!prometheus_originals.isNull())
    e.push_back(env("ISTIO_PROMETHEUS_ANNOTATIONS", toJson(prometheus_originals)));
  for (const auto& [k, v] : s.proxy_metadata) e.push_back(env(k, v));
  ctr.set("env", Value(std::move(e)));

  if (s.hold_application_until_proxy_starts && !s.native_sidecar) {
    ctr["lifecycle"]["postStart"]["exec"].set("command", strings(c.wait_command));
  }
  Array ports;
  Value prom = Value::object();
  prom.set("containerPort", kPrometheusPort);
  prom.set("name", "http-envoy-prom");
  prom.set("protocol", "TCP");
  ports.push_back(prom);
  Value health = Value::object();
  health.set("containerPort", kHealthPort);
  health.set("name", "http-health");
  health.set("protocol", "TCP");
  ports.push_back(health);
  ctr.set("ports", Value(std::move(ports)));
  if (s.status_port != 0) ctr.set("readinessProbe", httpProbe(s, false));
  ctr.set("resources", resources(s));
  if (s.native_sidecar) ctr.set("restartPolicy", "Always");

  Value sc = Value::object();
  sc.set("allowPrivilegeEscalation", false);
  if (s.interception_mode == "TPROXY") {
    // IP_TRANSPARENT needs NET_ADMIN and, as Istio runs it, uid 0 (gid 1337 keeps it out of capture).
    sc["capabilities"].set("add", Value(Array{Value("NET_ADMIN")}));
  }
  sc["capabilities"].set("drop", Value(Array{Value("ALL")}));
  sc.set("privileged", false);
  sc.set("readOnlyRootFilesystem", true);
  sc.set("runAsGroup", kProxyUid);
  if (s.interception_mode == "TPROXY") {
    sc.set("runAsNonRoot", false);
    sc.set("runAsUser", 0);
  } else {
    sc.set("runAsNonRoot", true);
    sc.set("runAsUser", kProxyUid);
  }
  ctr.set("securityContext", sc);
  if (s.status_port != 0) ctr.set("startupProbe", httpProbe(s, true));

  Array mounts;
  auto mount = [&](const char* name, const char* path) {
    Value m = Value::object();
    m.set("mountPath", path);
    m.set("name", name);
    mounts.push_back(m);
  };
  mount("workload-socket", "/var/run/secrets/workload-spiffe-uds");
  mount("credential-socket", "/var/run/secrets/credential-uds");
  mount("workload-certs", "/var/run/secrets/workload-spiffe-credentials");
  mount("istiod-ca-cert", "/var/run/secrets/istio");
  mount("istio-ca-crl", "/var/run/secrets/istio/crl");
  mount("istio-data", "/var/lib/istio/data");
  mount("istio-envoy", "/etc/istio/proxy");
  mount("istio-token", "/var/run/secrets/tokens");
  mount("istio-podinfo", "/etc/istio/pod");
  if (!s.bootstrap_override.empty()) mount("custom-bootstrap-volume", "/etc/istio/custom-bootstrap");
  for (const auto& m : s.user_volume_mounts) mounts.push_back(m);
  ctr.set("volumeMounts", Value(std::move(mounts)));
  return ctr;
}

Array sidecarVolumes(const PodSettings& s) {
  Array v;
  auto named = [](const char* name) {
    Value vol = Value::object();
    vol.set("name", name);
    return vol;
  };
  for (const char* name : {"workload-socket", "credential-socket", "workload-certs"}) {
    Value vol = named(name);
    vol.set("emptyDir", Value::object());
    v.push_back(vol);
  }
  Value envoy = named("istio-envoy");
  envoy["emptyDir"].set("medium", "Memory");
  v.push_back(envoy);
  Value data = named("istio-data");
  data.set("emptyDir", Value::object());
  v.push_back(data);
  Value podinfo = named("istio-podinfo");
  Array items;
  for (const char* field : {"labels", "annotations"}) {
    Value item = Value::object();
    item["fieldRef"].set("fieldPath", std::string("metadata.") + field);
    item.set("path", field);
    items.push_back(item);
  }
  podinfo["downwardAPI"].set("items", Value(std::move(items)));
  v.push_back(podinfo);
  Value token = named("istio-token");
  Value sat = Value::object();
  sat["serviceAccountToken"].set("audience", "istio-ca");
  sat["serviceAccountToken"].set("expirationSeconds", 43200);
  sat["serviceAccountToken"].set("path", "istio-token");
  token["projected"].set("sources", Value(Array{sat}));
  v.push_back(token);
  Value ca = named("istiod-ca-cert");
  ca["configMap"].set("name", "istio-ca-root-cert");
  v.push_back(ca);
  Value crl = named("istio-ca-crl");
  crl["configMap"].set("name", "istio-ca-crl");
  crl["configMap"].set("optional", true);
  v.push_back(crl);
  if (!s.bootstrap_override.empty()) {
    Value custom = named("custom-bootstrap-volume");
    custom["configMap"].set("name", s.bootstrap_override);
    v.push_back(custom);
  }
  for (const auto& u : s.user_volumes) v.push_back(u);
  return v;
}

// prometheus.io/*: point scrapes at skiff's Prometheus endpoint; the originals go to
// ISTIO_PROMETHEUS_ANNOTATIONS (Istio's agent merges app metrics from them). A pod that says scrape: "false"
// is left alone.
Value mergePrometheus(Value& annotations, const PodSettings& s, const InjectConfig& c) {
  if (!c.prometheus_merge) return Value();
  const Value* scrape = annotations.find("prometheus.io/scrape");
  bool on = true;
  if (scrape != nullptr && scrape->isString() && parseBool(scrape->asString(), &on) && !on) return Value();
  Value originals = Value::object();
  for (const char* key : {"scrape", "path", "port"}) {
    const Value* v = annotations.find(std::string("prometheus.io/") + key);
    if (v != nullptr) originals.set(key, *v);
  }
  annotations.set("prometheus.io/path", "/stats/prometheus");
  annotations.set("prometheus.io/port", std::to_string(c.prometheus_port));
  annotations.set("prometheus.io/scrape", "true");
  return originals.size() > 0 ? originals : Value();
}

bool hasVolumeNamed(const Value& spec, const std::string& name) {
  const Value* vols = spec.find("volumes");
  if (vols == nullptr || !vols->isArray()) return false;
  for (const auto& v : vols->asArray()) {
    if (v.getString("name") == name) return true;
  }
  return false;
}

bool checkSpec(const Value& spec, const InjectConfig& c, std::string* error) {
  if (!spec.isObject()) {
    *error = "spec is not a mapping";
    return false;
  }
  for (const char* list : {"containers", "initContainers", "volumes"}) {
    const Value* v = spec.find(list);
    if (v != nullptr && !v->isNull() && !v->isArray()) {
      *error = std::string("spec.") + list + " is not a list";
      return false;
    }
    if (v == nullptr || !v->isArray()) continue;
    for (const auto& item : v->asArray()) {
      if (!item.isObject()) {
        *error = std::string("spec.") + list + " has an entry that is not a mapping";
        return false;
      }
      std::string name = item.getString("name");
      if (std::string(list) != "volumes" && (name == c.proxy_name || name == c.init_name)) {
        *error = std::string("spec.") + list + " already has a container named " + name;
        return false;
      }
    }
  }
  const Value* containers = spec.find("containers");
  if (containers == nullptr || !containers->isArray() || containers->asArray().empty()) {
    *error = "spec.containers is empty";
    return false;
  }
  return true;
}

}  // namespace

const char* decisionName(Decision d) {
  switch (d) {
    case Decision::kInjected:
      return "injected";
    case Decision::kOptedOut:
      return "opted out";
    case Decision::kAlreadyInjected:
      return "already injected";
    case Decision::kHostNetwork:
      return "hostNetwork pod";
    case Decision::kNotAWorkload:
      return "not a workload";
  }
  return "?";
}

Value sidecarBootstrap(const std::string& discovery_address, int prometheus_port) {
  auto addr = [](const std::string& host, int port) {
    Value a = Value::object();
    a["socket_address"].set("address", host);
    a["socket_address"].set("port_value", port);
    return a;
  };
  auto staticCluster = [&](const char* name, const std::string& type, const std::string& host, int port) {
    Value c = Value::object();
    c.set("name", name);
    c.set("type", type);
    c.set("connect_timeout", "1s");
    Value ep = Value::object();
    ep["endpoint"].set("address", addr(host, port));
    Value lb = Value::object();
    lb.set("lb_endpoints", Value(Array{ep}));
    c["load_assignment"].set("cluster_name", name);
    c["load_assignment"].set("endpoints", Value(Array{lb}));
    return c;
  };
  auto httpListener = [&](const char* name, int port, const char* stat_prefix, const char* prefix,
                          const char* cluster, const char* rewrite) {
    Value route = Value::object();
    route["match"].set("prefix", prefix);
    route["route"].set("cluster", cluster);
    if (rewrite != nullptr) route["route"].set("prefix_rewrite", rewrite);
    Value vh = Value::object();
    vh.set("name", "backend");
    vh.set("domains", Value(Array{Value("*")}));
    vh.set("routes", Value(Array{route}));
    Value hcm = Value::object();
    hcm.set("@type",
            "type.googleapis.com/"
            "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager");
    hcm.set("stat_prefix", stat_prefix);
    hcm["route_config"].set("virtual_hosts", Value(Array{vh}));
    Value router = Value::object();
    router.set("name", "envoy.filters.http.router");
    router["typed_config"].set("@type", "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router");
    hcm.set("http_filters", Value(Array{router}));
    Value filter = Value::object();
    filter.set("name", "envoy.filters.network.http_connection_manager");
    filter.set("typed_config", hcm);
    Value chain = Value::object();
    chain.set("filters", Value(Array{filter}));
    Value l = Value::object();
    l.set("name", name);
    l.set("address", addr("0.0.0.0", port));
    l.set("filter_chains", Value(Array{chain}));
    return l;
  };
  size_t colon = discovery_address.rfind(':');
  std::string host = discovery_address.substr(0, colon);
  int port = std::atoi(discovery_address.substr(colon + 1).c_str());

  Value b = Value::object();
  b["admin"].set("address", addr("127.0.0.1", 15000));
  Value ads_source = Value::object();
  ads_source.set("ads", Value::object());
  ads_source.set("initial_fetch_timeout", "0s");
  ads_source.set("resource_api_version", "V3");
  Value grpc = Value::object();
  grpc["envoy_grpc"].set("cluster_name", "xds-grpc");
  b["dynamic_resources"]["ads_config"].set("api_type", "GRPC");
  b["dynamic_resources"]["ads_config"].set("transport_api_version", "V3");
  b["dynamic_resources"]["ads_config"].set("grpc_services", Value(Array{grpc}));
  b["dynamic_resources"]["ads_config"].set("set_node_on_first_message_only", true);
  b["dynamic_resources"].set("lds_config", ads_source);
  b["dynamic_resources"].set("cds_config", ads_source);
  Value xds = staticCluster("xds-grpc", "STRICT_DNS", host, port);
  xds.set("http2_protocol_options", Value::object());
  b["static_resources"].set("clusters",
                            Value(Array{xds, staticCluster("prometheus_stats", "STATIC", "127.0.0.1", 15000),
                                        staticCluster("agent", "STATIC", "127.0.0.1", 15000)}));
  b["static_resources"].set(
      "listeners",
      Value(Array{httpListener("prometheus", prometheus_port, "stats", "/stats/prometheus",
                               "prometheus_stats", nullptr),
                  httpListener("health", kHealthPort, "agent", "/healthz/ready", "agent", "/ready")}));
  return b;
}

bool injectPod(Value* metadata, Value* spec, const Workload& workload, const InjectConfig& config,
               Decision* decision, std::string* error) {
  if (metadata->isNull()) *metadata = Value::object();
  if (!metadata->isObject()) {
    *error = "metadata is not a mapping";
    return false;
  }
  for (const char* key : {"labels", "annotations"}) {
    const Value* v = metadata->find(key);
    if (v != nullptr && !v->isNull() && !v->isObject()) {
      *error = std::string("metadata.") + key + " is not a mapping";
      return false;
    }
  }
  bool inject = true;
  if (!wantsInjection(*metadata, config, &inject, error)) return false;
  if (!inject) {
    *decision = Decision::kOptedOut;
    return true;
  }
  const Value* annotations = metadata->find("annotations");
  if (annotations != nullptr && annotations->find(kStatusAnnotation) != nullptr) {
    *decision = Decision::kAlreadyInjected;
    return true;
  }
  if (const Value* host = spec->find("hostNetwork"); host != nullptr && host->isBool() && host->asBool()) {
    *decision = Decision::kHostNetwork;
    return true;
  }
  if (!checkSpec(*spec, config, error)) return false;
  PodSettings s;
  if (!parsePodSettings(annotations != nullptr ? *annotations : Value(), config, &s, error)) return false;
  for (const auto& m : s.user_volume_mounts) {
    bool found = hasVolumeNamed(*spec, m.getString("name"));
    for (const auto& v : s.user_volumes) found = found || v.getString("name") == m.getString("name");
    if (!found) {
      *error = "annotation sidecar.istio.io/userVolumeMount: mount '" + m.getString("name") +
               "' names no volume (neither the pod's nor sidecar.istio.io/userVolume's)";
      return false;
    }
  }
  for (const auto& v : s.user_volumes) {
    if (hasVolumeNamed(*spec, v.getString("name"))) {
      *error = "annotation sidecar.istio.io/userVolume: the pod already has a volume named '" +
               v.getString("name") + "'";
      return false;
    }
  }

  // From here on nothing can fail: build into copies, then swap them in.
  Value meta = *metadata;
  Value sp = *spec;
  // Create both keys before taking references: inserting one may move the other.
  if (meta["annotations"].isNull()) meta["annotations"] = Value::object();
  if (meta["labels"].isNull()) meta["labels"] = Value::object();
  Value& ann = *meta.find("annotations");
  Value& labels = *meta.find("labels");
  Value prometheus_originals = mergePrometheus(ann, s, config);

  std::string first_app = sp.find("containers")->asArray().front().getString("name");
  if (ann.find("kubectl.kubernetes.io/default-container") == nullptr) {
    ann.set("kubectl.kubernetes.io/default-container", first_app);
  }
  if (ann.find("kubectl.kubernetes.io/default-logs-container") == nullptr) {
    ann.set("kubectl.kubernetes.io/default-logs-container", first_app);
  }
  if (ann.find("istio.io/rev") == nullptr) ann.set("istio.io/rev", config.revision);
  if (labels.find("security.istio.io/tlsMode") == nullptr) labels.set("security.istio.io/tlsMode", "istio");
  if (labels.find("service.istio.io/canonical-name") == nullptr) {
    std::string name = labels.getString("app.kubernetes.io/name", labels.getString("app", workload.name));
    labels.set("service.istio.io/canonical-name", name);
  }
  if (labels.find("service.istio.io/canonical-revision") == nullptr) {
    std::string rev = labels.getString("app.kubernetes.io/version", labels.getString("version", "latest"));
    labels.set("service.istio.io/canonical-revision", rev);
  }

  Value proxy = proxyContainer(s, config, meta, sp, workload, prometheus_originals);
  Value& inits = sp["initContainers"];
  if (inits.isNull()) inits = Value::array();
  Value& containers = sp["containers"];
  Array status_inits, status_containers;
  if (s.interception_mode != "NONE") {
    inits.push(initContainer(s, config));
    status_inits.emplace_back(config.init_name);
  }
  if (s.native_sidecar) {
    inits.push(std::move(proxy));
    status_inits.emplace_back(config.proxy_name);
  } else if (s.hold_application_until_proxy_starts) {
    containers.asArray().insert(containers.asArray().begin(), std::move(proxy));
    status_containers.emplace_back(config.proxy_name);
  } else {
    containers.push(std::move(proxy));
    status_containers.emplace_back(config.proxy_name);
  }
  if (inits.asArray().empty()) sp.erase("initContainers");
  Value& volumes = sp["volumes"];
  if (volumes.isNull()) volumes = Value::array();
  Array status_volumes;
  for (auto& v : sidecarVolumes(s)) {
    status_volumes.emplace_back(v.getString("name"));
    volumes.push(std::move(v));
  }
  Value status = Value::object();
  status.set("initContainers", status_inits.empty() ? Value() : Value(std::move(status_inits)));
  status.set("containers", status_containers.empty() ? Value() : Value(std::move(status_containers)));
  status.set("volumes", Value(std::move(status_volumes)));
  status.set("imagePullSecrets", Value());
  status.set("revision", config.revision);
  ann.set(kStatusAnnotation, toJson(status));

  *metadata = std::move(meta);
  *spec = std::move(sp);
  *decision = Decision::kInjected;
  return true;
}

Value* podTemplate(Value* object) {
  std::string kind = object->getString("kind");
  if (kind == "Deployment" || kind == "StatefulSet" || kind == "DaemonSet" || kind == "ReplicaSet" ||
      kind == "Job" || kind == "ReplicationController") {
    return object->at({"spec", "template"});
  }
  if (kind == "CronJob") return object->at({"spec", "jobTemplate", "spec", "template"});
  return nullptr;
}

bool injectObject(Value* object, const InjectConfig& config, Decision* decision, std::string* error,
                  std::string_view default_namespace) {
  *decision = Decision::kNotAWorkload;
  if (!object->isObject()) return true;
  std::string kind = object->getString("kind");
  if (kind == "List" || (kind.size() > 4 && kind.substr(kind.size() - 4) == "List")) {
    Value* items = object->find("items");
    if (items == nullptr || !items->isArray()) return true;
    Value copy = *items;
    bool any = false;
    for (size_t i = 0; i < copy.asArray().size(); ++i) {
      Decision d;
      if (!injectObject(&copy.asArray()[i], config, &d, error, default_namespace)) {
        *error = "items[" + std::to_string(i) + "]: " + *error;
        return false;
      }
      any = any || d == Decision::kInjected;
    }
    *items = std::move(copy);
    if (any) *decision = Decision::kInjected;
    return true;
  }
  const Value* meta = object->find("metadata");
  Workload w;
  w.kind = kind;
  w.api_version = object->getString("apiVersion", "v1");
  w.name = meta != nullptr ? meta->getString("name") : "";
  w.namespace_ =
      meta != nullptr ? meta->getString("namespace", default_namespace) : std::string(default_namespace);
  std::string label = kind + " " + w.namespace_ + "/" + (w.name.empty() ? "<unnamed>" : w.name) + ": ";
  Value *pod_meta, *pod_spec, *meta_owner;
  if (kind == "Pod") {
    // A bare pod made by a controller is named after that controller, as istiod does.
    if (meta != nullptr) {
      const Value* owners = meta->find("ownerReferences");
      if (owners != nullptr && owners->isArray()) {
        for (const auto& o : owners->asArray()) {
          const Value* ctl = o.find("controller");
          if (ctl == nullptr || !ctl->isBool() || !ctl->asBool()) continue;
          w.kind = o.getString("kind");
          w.api_version = o.getString("apiVersion", w.api_version);
          w.name = o.getString("name");
          const Value* labels = meta->find("labels");
          std::string hash = labels != nullptr ? labels->getString("pod-template-hash") : "";
          if (w.kind == "ReplicaSet" && !hash.empty() && w.name.size() > hash.size() + 1 &&
              w.name.substr(w.name.size() - hash.size() - 1) == "-" + hash) {
            w.kind = "Deployment";
            w.api_version = "apps/v1";
            w.name = w.name.substr(0, w.name.size() - hash.size() - 1);
          }
          break;
        }
      }
      if (w.name.empty()) {
        w.name = meta->getString("generateName");
        if (!w.name.empty() && w.name.back() == '-') w.name.pop_back();
      }
    }
    meta_owner = object;
    pod_meta = &(*object)["metadata"];  // may insert: `meta` is not used after this
    pod_spec = object->find("spec");
  } else {
    Value* tmpl = podTemplate(object);
    if (tmpl == nullptr) return true;  // not a kind with pods (or no template): unchanged
    if (!tmpl->isObject()) {
      *error = label + "the pod template is not a mapping";
      return false;
    }
    meta_owner = tmpl;
    pod_meta = &(*tmpl)["metadata"];
    pod_spec = tmpl->find("spec");
  }
  if (pod_spec == nullptr) {
    *error = label + "no pod spec";
    return false;
  }
  bool had_meta = !pod_meta->isNull();
  if (!injectPod(pod_meta, pod_spec, w, config, decision, error)) {
    *error = label + *error;
    return false;
  }
  if (!had_meta && *decision != Decision::kInjected) meta_owner->erase("metadata");  // unchanged is unchanged
  return true;
}

bool injectYaml(std::string_view in, const InjectConfig& config, std::string* out, std::string* error) {
  std::vector<Value> docs;
  if (!parseYamlStream(in, &docs, error)) {
    *error = "input is not YAML: " + *error;
    return false;
  }
  std::vector<Value> kept;
  for (size_t i = 0; i < docs.size(); ++i) {
    if (docs[i].isNull()) continue;
    Decision d;
    if (!injectObject(&docs[i], config, &d, error, "default")) {
      *error = "document " + std::to_string(i + 1) + ": " + *error;
      return false;
    }
    kept.push_back(std::move(docs[i]));
  }
  *out = toYamlStream(kept);
  return true;
}

}  // namespace skiff::inject
