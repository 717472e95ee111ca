// settings: the injection config and every pod annotation the injector reads, validated.
#include "skiff/inject/settings.h"

#include <arpa/inet.h>

#include <cctype>
#include <charconv>
#include <cmath>

#include "skiff/inject/quantity.h"
#include "skiff/inject/yaml_io.h"

namespace skiff::inject {
namespace {

constexpr std::string_view kTraffic = "traffic.sidecar.istio.io/";
constexpr std::string_view kSidecar = "sidecar.istio.io/";
constexpr std::string_view kReadiness = "readiness.status.sidecar.istio.io/";

std::vector<std::string_view> splitComma(std::string_view s) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    if (comma == std::string_view::npos) comma = s.size();
    std::string_view item = s.substr(start, comma - start);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    out.push_back(item);
    start = comma + 1;
  }
  return out;
}

bool parseInt(std::string_view s, int64_t min, int64_t max, int64_t* out) {
  int64_t v;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < min || v > max) return false;
  *out = v;
  return true;
}

// "" or a comma list of ports; `star` also allows "*" alone.
bool validPortList(std::string_view s, bool star, std::string* why) {
  if (s.empty() || (star && s == "*")) return true;
  for (auto item : splitComma(s)) {
    int64_t port;
    if (!parseInt(item, 1, 65535, &port)) {
      *why = "'" + std::string(item) + "' is not a port (1-65535)";
      return false;
    }
  }
  return true;
}

bool validCidr(std::string_view item) {
  size_t slash = item.find('/');
  if (slash == std::string_view::npos) return false;
  std::string addr(item.substr(0, slash));
  unsigned char buf[16];
  int max;
  if (inet_pton(AF_INET, addr.c_str(), buf) == 1) {
    max = 32;
  } else if (inet_pton(AF_INET6, addr.c_str(), buf) == 1) {
    max = 128;
  } else {
    return false;
  }
  int64_t bits;
  return parseInt(item.substr(slash + 1), 0, max, &bits);
}

bool validCidrList(std::string_view s, bool star, std::string* why) {
  if (s.empty() || (star && s == "*")) return true;
  for (auto item : splitComma(s)) {
    if (!validCidr(item)) {
      *why = "'" + std::string(item) + "' is not a CIDR (address/prefix length)";
      return false;
    }
  }
  return true;
}

bool validInterfaceList(std::string_view s, std::string* why) {
  if (s.empty()) return true;
  for (auto item : splitComma(s)) {
    bool ok = !item.empty() && item.size() <= 15 && item != "." && item != "..";
    for (char c : item) {
      if (c == '/' || std::isspace(static_cast<unsigned char>(c)) || c == ':') ok = false;
    }
    if (!ok) {
      *why = "'" + std::string(item) + "' is not an interface name";
      return false;
    }
  }
  return true;
}

bool validLogLevel(std::string_view s) {
  for (auto l : {"trace", "debug", "info", "warning", "warn", "error", "critical", "off"}) {
    if (s == l) return true;
  }
  return false;
}

bool validComponentLogLevel(std::string_view s, std::string* why) {
  for (auto item : splitComma(s)) {
    size_t colon = item.find(':');
    if (colon == std::string_view::npos || colon == 0 || !validLogLevel(item.substr(colon + 1))) {
      *why = "'" + std::string(item) +
             "' is not <component>:<level> (levels: trace, debug, info, warning, error, "
             "critical, off)";
      return false;
    }
  }
  return true;
}

bool validDns1123Subdomain(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    bool alnum = std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c));
    if (!alnum && c != '-' && c != '.') return false;
    if ((i == 0 || i + 1 == s.size()) && !alnum) return false;
  }
  return true;
}

std::string quoted(std::string_view key, std::string_view value) {
  return "annotation " + std::string(key) + "=\"" + std::string(value) + "\"";
}

// sidecar.istio.io/userVolume: a JSON array of Volumes (as older docs and our seed pod write it) or a JSON
// object {name: VolumeSource} (what current Istio documents). Both become Volume objects.
bool parseUserVolumes(std::string_view key, const std::string& text, bool mounts, Array* out,
                      std::string* error) {
  Value v;
  std::string why;
  if (!parseJson(text, &v, &why)) {
    *error = quoted(key, text) + ": not JSON: " + why;
    return false;
  }
  auto check = [&](Value item, std::string name) -> bool {
    if (!item.isObject()) {
      *error = quoted(key, text) + ": entry '" + name + "' is not an object";
      return false;
    }
    if (!name.empty()) {
      Value named = Value::object();
      named.set("name", name);
      for (auto& [k, e] : item.asObject()) {
        if (k != "name") named.set(k, e);
      }
      item = named;
    }
    const Value* n = item.find("name");
    if (n == nullptr || !n->isString() || n->asString().empty()) {
      *error = quoted(key, text) + ": an entry has no \"name\"";
      return false;
    }
    if (mounts) {
      const Value* path = item.find("mountPath");
      if (path == nullptr || !path->isString() || path->asString().empty() || path->asString()[0] != '/') {
        *error = quoted(key, text) + ": mount '" + n->asString() + "' needs an absolute \"mountPath\"";
        return false;
      }
    } else if (item.size() < 2) {
      *error = quoted(key, text) + ": volume '" + n->asString() + "' has no source (configMap, secret, ...)";
      return false;
    }
    for (const auto& prev : *out) {
      if (prev.getString("name") == n->asString() && !mounts) {
        *error = quoted(key, text) + ": volume '" + n->asString() + "' appears twice";
        return false;
      }
    }
    out->push_back(std::move(item));
    return true;
  };
  if (v.isArray()) {
    for (const auto& item : v.asArray()) {
      if (!check(item, "")) return false;
    }
    return true;
  }
  if (v.isObject()) {
    for (const auto& [name, item] : v.asObject()) {
      if (!check(item, name)) return false;
    }
    return true;
  }
  *error = quoted(key, text) + ": want a JSON array or object";
  return false;
}

// proxy.istio.io/config: a ProxyConfig overlay in YAML or JSON. The fields the injector acts on are checked;
// the rest is passed through in PROXY_CONFIG.
bool parseProxyConfig(std::string_view key, const std::string& text, PodSettings* out, std::string* error) {
  Value v;
  std::string why;
  if (!parseYaml(text, &v, &why)) {
    *error = quoted(key, text) + ": not YAML: " + why;
    return false;
  }
  if (v.isNull()) return true;
  if (!v.isObject()) {
    *error = quoted(key, text) + ": want a mapping of ProxyConfig fields";
    return false;
  }
  auto bad = [&](std::string_view field, std::string_view what) {
    *error = quoted(key, text) + ": " + std::string(field) + " " + std::string(what);
    return false;
  };
  for (const auto& [field, value] : v.asObject()) {
    if (field == "holdApplicationUntilProxyStarts") {
      if (!value.isBool()) return bad(field, "must be true or false");
      out->hold_application_until_proxy_starts = value.asBool();
    } else if (field == "terminationDrainDuration" || field == "drainDuration") {
      double s;
      if (!value.isString() || !parseDuration(value.asString(), &s)) {
        return bad(field, "must be a duration such as \"5s\"");
      }
      if (field == "terminationDrainDuration") out->termination_drain_seconds = s;
    } else if (field == "discoveryAddress") {
      size_t colon = value.isString() ? value.asString().rfind(':') : std::string::npos;
      int64_t port;
      if (colon == std::string::npos || colon == 0 ||
          !parseInt(std::string_view(value.asString()).substr(colon + 1), 1, 65535, &port)) {
        return bad(field, "must be host:port");
      }
      out->discovery_address = value.asString();
    } else if (field == "concurrency") {
      if (!value.isInt() || value.asInt() < 0 || value.asInt() > 1024)
        return bad(field, "must be an integer >= 0");
      out->concurrency = static_cast<int>(value.asInt());
    } else if (field == "proxyMetadata") {
      if (!value.isObject()) return bad(field, "must be a map of strings");
      for (const auto& [name, m] : value.asObject()) {
        if (!m.isString()) return bad(field, "entry " + name + " must be a string");
        out->proxy_metadata.emplace_back(name, m);
      }
    } else if (field == "interceptionMode") {
      if (!value.isString() ||
          (value.asString() != "REDIRECT" && value.asString() != "TPROXY" && value.asString() != "NONE")) {
        return bad(field, "must be REDIRECT, TPROXY or NONE");
      }
      out->interception_mode = value.asString();
    } else if (field == "statusPort") {
      if (!value.isInt() || value.asInt() < 0 || value.asInt() > 65535) return bad(field, "must be a port");
      out->status_port = static_cast<int>(value.asInt());
    }
  }
  out->proxy_config = v;
  return true;
}

const std::string* annotation(const Value& annotations, std::string_view key) {
  const Value* v = annotations.find(key);
  return v != nullptr && v->isString() ? &v->asString() : nullptr;
}

}  // namespace

bool parseBool(std::string_view text, bool* out) {
  for (auto t : {"1", "t", "T", "true", "TRUE", "True"}) {
    if (text == t) return (*out = true), true;
  }
  for (auto f : {"0", "f", "F", "false", "FALSE", "False"}) {
    if (text == f) return (*out = false), true;
  }
  return false;
}

bool parseDuration(std::string_view text, double* seconds) {
  if (text.empty()) return false;
  if (text == "0") return (*seconds = 0), true;
  double total = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
    if (i == start) return false;
    double n = std::strtod(std::string(text.substr(start, i - start)).c_str(), nullptr);
    size_t unit_start = i;
    while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i]))) ++i;
    std::string_view unit = text.substr(unit_start, i - unit_start);
    double scale;
    if (unit == "h") {
      scale = 3600;
    } else if (unit == "m") {
      scale = 60;
    } else if (unit == "s") {
      scale = 1;
    } else if (unit == "ms") {
      scale = 1e-3;
    } else if (unit == "us" || unit == "µs") {
      scale = 1e-6;
    } else if (unit == "ns") {
      scale = 1e-9;
    } else {
      return false;
    }
    total += n * scale;
  }
  *seconds = total;
  return std::isfinite(total);
}

bool wantsInjection(const Value& metadata, const InjectConfig& config, bool* inject, std::string* error) {
  static constexpr std::string_view kKey = "sidecar.istio.io/inject";
  const Value* labels = metadata.find("labels");
  const Value* annotations = metadata.find("annotations");
  const std::string* v = labels != nullptr ? annotation(*labels, kKey) : nullptr;
  std::string where = "label";
  if (v == nullptr && annotations != nullptr) {
    v = annotation(*annotations, kKey);
    where = "annotation";
  }
  if (v == nullptr) {
    *inject = config.auto_inject;
    return true;
  }
  if (!parseBool(*v, inject)) {
    *error = where + " " + std::string(kKey) + "=\"" + *v + "\": want \"true\" or \"false\"";
    return false;
  }
  return true;
}

bool parsePodSettings(const Value& annotations, const InjectConfig& config, PodSettings* out,
                      std::string* error) {
  PodSettings s;
  s.interception_mode = config.interception_mode;
  s.include_ip_ranges = config.include_ip_ranges;
  s.exclude_ip_ranges = config.exclude_ip_ranges;
  s.include_inbound_ports = config.include_inbound_ports;
  s.exclude_inbound_ports = config.exclude_inbound_ports;
  s.include_outbound_ports = config.include_outbound_ports;
  s.exclude_outbound_ports = config.exclude_outbound_ports;
  s.status_port = config.status_port;
  s.readiness_initial_delay_seconds = config.readiness_initial_delay_seconds;
  s.readiness_period_seconds = config.readiness_period_seconds;
  s.readiness_failure_threshold = config.readiness_failure_threshold;
  s.log_level = config.log_level;
  s.component_log_level = config.component_log_level;
  s.native_sidecar = config.native_sidecars;
  s.hold_application_until_proxy_starts = config.hold_application_until_proxy_starts;
  s.discovery_address = config.discovery_address;
  if (!parseDuration(config.termination_drain_duration, &s.termination_drain_seconds)) {
    *error =
        "config terminationDrainDuration \"" + config.termination_drain_duration + "\" is not a duration";
    return false;
  }
  struct Quantity {
    std::string_view name;
    const std::string* fallback;
    std::string* dst;
  } quantities[] = {{"proxyCPU", &config.cpu_request, &s.cpu_request},
                    {"proxyMemory", &config.memory_request, &s.memory_request},
                    {"proxyCPULimit", &config.cpu_limit, &s.cpu_limit},
                    {"proxyMemoryLimit", &config.memory_limit, &s.memory_limit}};
  for (auto& q : quantities) {
    if (q.fallback->empty()) continue;
    auto c = canonicalQuantity(*q.fallback);
    if (!c) {
      *error = "config value \"" + *q.fallback + "\" is not a resource quantity";
      return false;
    }
    *q.dst = *c;
  }

  if (!annotations.isNull() && !annotations.isObject()) {
    *error = "metadata.annotations is not a mapping";
    return false;
  }
  std::string why;
  auto fail = [&](std::string_view key, const std::string& value, const std::string& reason) {
    *error = quoted(key, value) + ": " + reason;
    return false;
  };
  // Annotations must be strings (the API server rejects anything else); say so instead of ignoring them.
  if (annotations.isObject()) {
    for (const auto& [key, value] : annotations.asObject()) {
      bool ours = key.rfind(kSidecar, 0) == 0 || key.rfind(kTraffic, 0) == 0 ||
                  key.rfind(kReadiness, 0) == 0 || key.rfind("proxy.istio.io/", 0) == 0 ||
                  key.rfind("status.sidecar.istio.io/", 0) == 0 || key.rfind("prometheus.io/", 0) == 0;
      if (ours && !value.isString()) {
        *error = "annotation " + key + ": value must be a string (quote it in YAML)";
        return false;
      }
    }
  }
  auto get = [&](std::string_view key) { return annotation(annotations, key); };
  const std::string* v;

  // proxy.istio.io/config first: annotations below override what it says, as in Istio.
  if ((v = get("proxy.istio.io/config")) && !parseProxyConfig("proxy.istio.io/config", *v, &s, error))
    return false;

  if ((v = get("sidecar.istio.io/interceptionMode"))) {
    if (*v != "REDIRECT" && *v != "TPROXY" && *v != "NONE") {
      return fail("sidecar.istio.io/interceptionMode", *v, "want REDIRECT, TPROXY or NONE");
    }
    s.interception_mode = *v;
  }
  struct Traffic {
    std::string_view name;
    std::string* dst;
    enum { kPorts, kPortsOrStar, kCidrs, kCidrsOrStar, kInterfaces } kind;
  } traffic[] = {
      {"includeOutboundIPRanges", &s.include_ip_ranges, Traffic::kCidrsOrStar},
      {"excludeOutboundIPRanges", &s.exclude_ip_ranges, Traffic::kCidrs},
      {"includeInboundPorts", &s.include_inbound_ports, Traffic::kPortsOrStar},
      {"excludeInboundPorts", &s.exclude_inbound_ports, Traffic::kPorts},
      {"includeOutboundPorts", &s.include_outbound_ports, Traffic::kPorts},
      {"excludeOutboundPorts", &s.exclude_outbound_ports, Traffic::kPorts},
      {"kubevirtInterfaces", &s.kubevirt_interfaces, Traffic::kInterfaces},
      {"excludeInterfaces", &s.exclude_interfaces, Traffic::kInterfaces},
  };
  for (auto& t : traffic) {
    std::string key = std::string(kTraffic) + std::string(t.name);
    if (!(v = get(key))) continue;
    bool ok = true;
    switch (t.kind) {
      case Traffic::kPorts:
        ok = validPortList(*v, false, &why);
        break;
      case Traffic::kPortsOrStar:
        ok = validPortList(*v, true, &why);
        break;
      case Traffic::kCidrs:
        ok = validCidrList(*v, false, &why);
        break;
      case Traffic::kCidrsOrStar:
        ok = validCidrList(*v, true, &why);
        break;
      case Traffic::kInterfaces:
        ok = validInterfaceList(*v, &why);
        break;
    }
    if (!ok) return fail(key, *v, why);
    *t.dst = *v;
  }

  int64_t n;
  if ((v = get("status.sidecar.istio.io/port"))) {
    if (!parseInt(*v, 0, 65535, &n))
      return fail("status.sidecar.istio.io/port", *v, "want a port (0 disables it)");
    s.status_port = static_cast<int>(n);
  }
  struct Readiness {
    std::string_view name;
    int* dst;
    int64_t min;
  } readiness[] = {{"initialDelaySeconds", &s.readiness_initial_delay_seconds, 0},
                   {"periodSeconds", &s.readiness_period_seconds, 1},
                   {"failureThreshold", &s.readiness_failure_threshold, 1}};
  for (auto& r : readiness) {
    std::string key = std::string(kReadiness) + std::string(r.name);
    if (!(v = get(key))) continue;
    if (!parseInt(*v, r.min, 2147483647, &n)) {
      return fail(key, *v, "want an integer >= " + std::to_string(r.min));
    }
    *r.dst = static_cast<int>(n);
  }
  if ((v = get(std::string(kReadiness) + "applicationPorts"))) {
    if (!validPortList(*v, true, &why)) return fail(std::string(kReadiness) + "applicationPorts", *v, why);
    s.readiness_application_ports = *v;
  }

  // As Istio's template: once any resource annotation is present, the annotations alone set the resources
  // (defaults are not mixed in).
  bool any_resource = false;
  for (auto& q : quantities) any_resource = any_resource || get(std::string(kSidecar) + std::string(q.name));
  for (auto& q : quantities) {
    std::string key = std::string(kSidecar) + std::string(q.name);
    if (any_resource) q.dst->clear();
    if (!(v = get(key))) continue;
    auto c = canonicalQuantity(*v);
    if (!c) return fail(key, *v, "not a resource quantity (e.g. 100m, 2, 128Mi, 1Gi)");
    *q.dst = *c;
  }
  if ((v = get("sidecar.istio.io/logLevel"))) {
    if (!validLogLevel(*v)) {
      return fail("sidecar.istio.io/logLevel", *v,
                  "want trace, debug, info, warning, error, critical or off");
    }
    s.log_level = *v;
  }
  if ((v = get("sidecar.istio.io/componentLogLevel"))) {
    if (!validComponentLogLevel(*v, &why)) return fail("sidecar.istio.io/componentLogLevel", *v, why);
    s.component_log_level = *v;
  }
  if ((v = get("sidecar.istio.io/nativeSidecar"))) {
    if (!parseBool(*v, &s.native_sidecar))
      return fail("sidecar.istio.io/nativeSidecar", *v, "want true or false");
  }
  if ((v = get("sidecar.istio.io/userVolume")) &&
      !parseUserVolumes("sidecar.istio.io/userVolume", *v, false, &s.user_volumes, error)) {
    return false;
  }
  if ((v = get("sidecar.istio.io/userVolumeMount")) &&
      !parseUserVolumes("sidecar.istio.io/userVolumeMount", *v, true, &s.user_volume_mounts, error)) {
    return false;
  }
  if ((v = get("sidecar.istio.io/bootstrapOverride"))) {
    if (!validDns1123Subdomain(*v))
      return fail("sidecar.istio.io/bootstrapOverride", *v, "not a ConfigMap name");
    s.bootstrap_override = *v;
  }
  if ((v = get("prometheus.io/scrape"))) {
    bool b;
    if (!parseBool(*v, &b)) return fail("prometheus.io/scrape", *v, "want true or false");
  }
  if ((v = get("prometheus.io/port")) && !parseInt(*v, 1, 65535, &n)) {
    return fail("prometheus.io/port", *v, "want a port");
  }
  if ((v = get("prometheus.io/path")) && (v->empty() || (*v)[0] != '/')) {
    return fail("prometheus.io/path", *v, "want an absolute path");
  }
  *out = std::move(s);
  return true;
}

bool loadInjectConfig(const Value& v, InjectConfig* out, std::string* error) {
  if (v.isNull()) return true;
  if (!v.isObject()) {
    *error = "injection config: want a mapping";
    return false;
  }
  InjectConfig c = *out;
  for (const auto& entry : v.asObject()) {
    // Named references, not a structured binding: clang 14 cannot capture bindings in lambdas.
    const auto& key = entry.first;
    const auto& value = entry.second;
    auto str = [&](std::string* dst) {
      if (!value.isString()) {
        *error = "injection config: " + key + " must be a string";
        return false;
      }
      *dst = value.asString();
      return true;
    };
    auto boolean = [&](bool* dst) {
      if (!value.isBool()) {
        *error = "injection config: " + key + " must be true or false";
        return false;
      }
      *dst = value.asBool();
      return true;
    };
    auto integer = [&](int* dst, int64_t min, int64_t max) {
      if (!value.isInt() || value.asInt() < min || value.asInt() > max) {
        *error = "injection config: " + key + " must be an integer in [" + std::to_string(min) + ", " +
                 std::to_string(max) + "]";
        return false;
      }
      *dst = static_cast<int>(value.asInt());
      return true;
    };
    auto strings = [&](std::vector<std::string>* dst) {
      if (!value.isArray()) {
        *error = "injection config: " + key + " must be a list of strings";
        return false;
      }
      dst->clear();
      for (const auto& e : value.asArray()) {
        if (!e.isString()) {
          *error = "injection config: " + key + " must be a list of strings";
          return false;
        }
        dst->push_back(e.asString());
      }
      return true;
    };
    bool ok;
    if (key == "proxyImage")
      ok = str(&c.proxy_image);
    else if (key == "initImage")
      ok = str(&c.init_image);
    else if (key == "imagePullPolicy")
      ok = str(&c.image_pull_policy);
    else if (key == "proxyCommand")
      ok = strings(&c.proxy_command);
    else if (key == "initCommand")
      ok = strings(&c.init_command);
    else if (key == "waitCommand")
      ok = strings(&c.wait_command);
    else if (key == "proxyName")
      ok = str(&c.proxy_name);
    else if (key == "initName")
      ok = str(&c.init_name);
    else if (key == "autoInject")
      ok = boolean(&c.auto_inject);
    else if (key == "nativeSidecars")
      ok = boolean(&c.native_sidecars);
    else if (key == "holdApplicationUntilProxyStarts")
      ok = boolean(&c.hold_application_until_proxy_starts);
    else if (key == "interceptionMode")
      ok = str(&c.interception_mode);
    else if (key == "includeIPRanges")
      ok = str(&c.include_ip_ranges);
    else if (key == "excludeIPRanges")
      ok = str(&c.exclude_ip_ranges);
    else if (key == "includeInboundPorts")
      ok = str(&c.include_inbound_ports);
    else if (key == "excludeInboundPorts")
      ok = str(&c.exclude_inbound_ports);
    else if (key == "includeOutboundPorts")
      ok = str(&c.include_outbound_ports);
    else if (key == "excludeOutboundPorts")
      ok = str(&c.exclude_outbound_ports);
    else if (key == "statusPort")
      ok = integer(&c.status_port, 0, 65535);
    else if (key == "readinessInitialDelaySeconds")
      ok = integer(&c.readiness_initial_delay_seconds, 0, 1 << 30);
    else if (key == "readinessPeriodSeconds")
      ok = integer(&c.readiness_period_seconds, 1, 1 << 30);
    else if (key == "readinessFailureThreshold")
      ok = integer(&c.readiness_failure_threshold, 1, 1 << 30);
    else if (key == "cpuRequest")
      ok = str(&c.cpu_request);
    else if (key == "memoryRequest")
      ok = str(&c.memory_request);
    else if (key == "cpuLimit")
      ok = str(&c.cpu_limit);
    else if (key == "memoryLimit")
      ok = str(&c.memory_limit);
    else if (key == "logLevel")
      ok = str(&c.log_level);
    else if (key == "componentLogLevel")
      ok = str(&c.component_log_level);
    else if (key == "discoveryAddress")
      ok = str(&c.discovery_address);
    else if (key == "caAddress")
      ok = str(&c.ca_address);
    else if (key == "clusterID")
      ok = str(&c.cluster_id);
    else if (key == "trustDomain")
      ok = str(&c.trust_domain);
    else if (key == "meshID")
      ok = str(&c.mesh_id);
    else if (key == "network")
      ok = str(&c.network);
    else if (key == "revision")
      ok = str(&c.revision);
    else if (key == "terminationDrainDuration")
      ok = str(&c.termination_drain_duration);
    else if (key == "prometheusMerge")
      ok = boolean(&c.prometheus_merge);
    else if (key == "prometheusPort")
      ok = integer(&c.prometheus_port, 1, 65535);
    else {
      *error = "injection config: unknown key " + key;
      return false;
    }
    if (!ok) return false;
  }
  // The defaults must pass the same checks as annotations.
  PodSettings probe;
  if (c.interception_mode != "REDIRECT" && c.interception_mode != "TPROXY" && c.interception_mode != "NONE") {
    *error = "injection config: interceptionMode must be REDIRECT, TPROXY or NONE";
    return false;
  }
  if (!parsePodSettings(Value(), c, &probe, error)) {
    *error = "injection config: " + *error;
    return false;
  }
  *out = std::move(c);
  return true;
}

}  // namespace skiff::inject
