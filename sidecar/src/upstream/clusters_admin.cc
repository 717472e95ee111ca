// Admin rendering of the cluster manager: /clusters text and /clusters?format=json.
#include <algorithm>

#include "skiff/common/json.h"
#include "skiff/upstream/cluster_manager.h"
#include "upstream/cluster_entry.h"

namespace skiff::upstream {
namespace {

std::vector<HostSharedPtr> byPriority(const HostSetConstSharedPtr& set) {
  std::vector<HostSharedPtr> hosts;
  if (set) hosts = set->hosts;
  std::stable_sort(hosts.begin(), hosts.end(),
                   [](const HostSharedPtr& a, const HostSharedPtr& b) { return a->priority < b->priority; });
  return hosts;
}

void appendLine(std::string& out, const std::string& a, const std::string& b, const std::string& c) {
  out += a;
  out += "::";
  out += b;
  out += "::";
  out += c;
  out += '\n';
}

void appendLimits(std::string& out, const std::string& name, const char* priority,
                  const ResourceLimits& limits) {
  const std::string key = std::string(priority) + "_priority";
  appendLine(out, name, key, "max_connections::" + std::to_string(limits.max_connections));
  appendLine(out, name, key, "max_pending_requests::" + std::to_string(limits.max_pending_requests));
  appendLine(out, name, key, "max_requests::" + std::to_string(limits.max_requests));
  appendLine(out, name, key, "max_retries::" + std::to_string(limits.max_retries));
}

std::string jsonString(const std::string& s) {
  std::string out = "\"";
  appendJsonEscaped(s, out);
  return out + "\"";
}

// admin.v3 SimpleMetric in proto-JSON: zero values and the COUNTER type are left out.
std::string metric(const char* name, uint64_t value, bool gauge) {
  std::string out = "{";
  if (gauge) out += "\"type\":\"GAUGE\",";
  if (value != 0) out += "\"value\":\"" + std::to_string(value) + "\",";
  return out + "\"name\":" + jsonString(name) + "}";
}

std::string thresholdsJson(const ResourceLimits& limits, bool high) {
  std::string out = "{";
  if (high) out += "\"priority\":\"HIGH\",";
  out += "\"max_connections\":" + std::to_string(limits.max_connections);
  out += ",\"max_pending_requests\":" + std::to_string(limits.max_pending_requests);
  out += ",\"max_requests\":" + std::to_string(limits.max_requests);
  out += ",\"max_retries\":" + std::to_string(limits.max_retries);
  return out + "}";
}

// EDS clusters' eds_cluster_config.service_name (the config is decoded: admin only).
std::string edsServiceName(const ClusterInfo& info) {
  if (info.type != envoy::config::cluster::v3::Cluster::EDS) return "";
  return info.config().eds_cluster_config().service_name();
}

}  // namespace

std::string ClusterManager::renderClustersText() const {
  std::string out = "version_info::" + (cds_version_.empty() ? std::string("static") : cds_version_) + "\n";
  for (const auto& [name, cluster] : clusters_) {
    const ClusterInfoConstSharedPtr& info = cluster->active_info;
    if (!info) continue;  // warming clusters are not shown (as Envoy)
    appendLine(out, name, "observability_name", info->observability_name);
    appendLimits(out, name, "default", info->resources.limits());
    appendLimits(out, name, "high", info->resources_high.limits());
    appendLine(out, name, "added_via_api", info->added_via_api ? "true" : "false");
    if (const std::string service = edsServiceName(*info); !service.empty()) {
      appendLine(out, name, "eds_service_name", service);
    }
    for (const auto& host : byPriority(cluster->active_hosts)) {
      const std::string a = host->address();
      const HostStats& s = host->peekStats();
      const std::string& cluster_name = name;  // clang 14 cannot capture structured bindings
      auto line = [&](const char* key, const std::string& value) {
        appendLine(out, cluster_name, a, key + ("::" + value));
      };
      // Counters and gauges merged in name order, as Envoy prints them.
      line("cx_active", std::to_string(s.cx_active.load()));
      line("cx_connect_fail", std::to_string(s.cx_connect_fail.load()));
      line("cx_total", std::to_string(s.cx_total.load()));
      line("rq_active", std::to_string(s.rq_active.load()));
      line("rq_error", std::to_string(s.rq_error.load()));
      line("rq_success", std::to_string(s.rq_success.load()));
      line("rq_timeout", std::to_string(s.rq_timeout.load()));
      line("rq_total", std::to_string(s.rq_total.load()));
      line("hostname", host->hostname);
      line("health_flags", host->healthFlagsString());
      line("weight", std::to_string(host->weight));
      line("region", host->region());
      line("zone", host->zone());
      line("sub_zone", host->sub_zone());
      line("canary", "false");
      line("priority", std::to_string(host->priority));
      line("success_rate", "-1");
      line("local_origin_success_rate", "-1");
    }
  }
  return out;
}

std::string ClusterManager::renderClustersJson() const {
  std::string out = "{\"cluster_statuses\":[";
  bool first_cluster = true;
  for (const auto& [name, cluster] : clusters_) {
    const ClusterInfoConstSharedPtr& info = cluster->active_info;
    if (!info) continue;
    if (!first_cluster) out += ",";
    first_cluster = false;
    out += "{\"name\":" + jsonString(name);
    if (info->added_via_api) out += ",\"added_via_api\":true";
    out += ",\"circuit_breakers\":{\"thresholds\":[" + thresholdsJson(info->resources.limits(), false) + "," +
           thresholdsJson(info->resources_high.limits(), true) + "]}";
    out += ",\"observability_name\":" + jsonString(info->observability_name);
    if (const std::string service = edsServiceName(*info); !service.empty()) {
      out += ",\"eds_service_name\":" + jsonString(service);
    }
    const auto hosts = byPriority(cluster->active_hosts);
    if (!hosts.empty()) {
      out += ",\"host_statuses\":[";
      for (size_t i = 0; i < hosts.size(); ++i) {
        const Host& h = *hosts[i];
        const HostStats& s = h.peekStats();
        if (i > 0) out += ",";
        out +=
            "{\"address\":{\"socket_address\":{\"address\":" + jsonString(h.endpoint.address().to_string()) +
            ",\"port_value\":" + std::to_string(h.endpoint.port()) + "}}";
        out +=
            ",\"stats\":[" + metric("cx_connect_fail", s.cx_connect_fail.load(), false) + "," +
            metric("cx_total", s.cx_total.load(), false) + "," +
            metric("rq_error", s.rq_error.load(), false) + "," +
            metric("rq_success", s.rq_success.load(), false) + "," +
            metric("rq_timeout", s.rq_timeout.load(), false) + "," +
            metric("rq_total", s.rq_total.load(), false) + "," +
            metric("cx_active", static_cast<uint64_t>(std::max<int64_t>(0, s.cx_active.load())), true) + "," +
            metric("rq_active", static_cast<uint64_t>(std::max<int64_t>(0, s.rq_active.load())), true) + "]";
        std::string health =
            "{\"eds_health_status\":\"" +
            envoy::config::core::v3::HealthStatus_Name(h.health_status == envoy::config::core::v3::UNKNOWN
                                                           ? envoy::config::core::v3::HEALTHY
                                                           : h.health_status) +
            "\"";
        if (!h.healthy.load() && healthStatusIsUsable(h.health_status))
          health += ",\"failed_active_health_check\":true";
        out += ",\"health_status\":" + health + "}";
        out += ",\"weight\":" + std::to_string(h.weight);
        if (!h.hostname.empty()) out += ",\"hostname\":" + jsonString(h.hostname);
        if (h.priority != 0) out += ",\"priority\":" + std::to_string(h.priority);
        out += ",\"locality\":{";
        std::string locality;
        auto add = [&](const char* k, const std::string& v) {
          if (v.empty()) return;
          if (!locality.empty()) locality += ",";
          locality += std::string("\"") + k + "\":" + jsonString(v);
        };
        add("region", h.region());
        add("zone", h.zone());
        add("sub_zone", h.sub_zone());
        out += locality + "}}";
      }
      out += "]";
    }
    out += "}";
  }
  return out + "]}";
}

}  // namespace skiff::upstream
