// What the injector is configured with (mesh-wide defaults) and what one pod's annotations ask for.
#pragma once

#include <string>
#include <vector>

#include "skiff/inject/value.h"

namespace skiff::inject {

// Mesh-wide defaults: Istio's global.proxy values, read from the injection ConfigMap (`config` key) or flags.
struct InjectConfig {
  std::string proxy_image = "ghcr.io/skiff-mesh/skiff:latest";
  std::string init_image;         // empty: proxy_image
  std::string image_pull_policy;  // empty: the cluster's default
  std::vector<std::string> proxy_command = {"skiff"};
  std::vector<std::string> init_command = {"skiff-init"};
  // postStart hook that blocks until the proxy is ready (holdApplicationUntilProxyStarts).
  std::vector<std::string> wait_command = {"skiff-inject", "wait", "--timeout", "60s"};
  std::string proxy_name = "skiff";
  std::string init_name = "skiff-init";
  bool auto_inject = true;  // policy: false = only pods annotated/labelled sidecar.istio.io/inject: "true"
  bool native_sidecars = false;
  bool hold_application_until_proxy_starts = false;
  std::string interception_mode = "REDIRECT";
  std::string include_ip_ranges = "*";
  std::string exclude_ip_ranges;
  std::string include_inbound_ports = "*";
  std::string exclude_inbound_ports;
  std::string include_outbound_ports;
  std::string exclude_outbound_ports;
  int status_port = 15020;
  int readiness_initial_delay_seconds = 0;
  int readiness_period_seconds = 15;
  int readiness_failure_threshold = 4;
  std::string cpu_request = "100m";
  std::string memory_request = "128Mi";
  std::string cpu_limit = "2000m";
  std::string memory_limit = "1024Mi";
  std::string log_level = "warning";
  std::string component_log_level = "misc:error";
  std::string discovery_address = "istiod.istio-system.svc:15012";
  std::string ca_address;  // empty: discovery_address
  std::string cluster_id = "Kubernetes";
  std::string trust_domain = "cluster.local";
  std::string mesh_id;  // empty: trust_domain
  std::string network;
  std::string revision = "default";
  std::string termination_drain_duration = "5s";
  bool prometheus_merge = true;
  int prometheus_port = 15090;  // where skiff serves /stats/prometheus (no agent on 15020 to merge)
};

// Reads a config mapping (camelCase keys as in manifests/injector-configmap.yaml) over the defaults.
bool loadInjectConfig(const Value& v, InjectConfig* out, std::string* error);

// One pod's effective settings: the config's defaults overridden by the pod's annotations.
struct PodSettings {
  std::string interception_mode;  // REDIRECT, TPROXY or NONE
  std::string include_ip_ranges, exclude_ip_ranges;
  std::string include_inbound_ports, exclude_inbound_ports;
  std::string include_outbound_ports, exclude_outbound_ports;
  std::string kubevirt_interfaces, exclude_interfaces;
  int status_port = 15020;
  int readiness_initial_delay_seconds = 0;
  int readiness_period_seconds = 15;
  int readiness_failure_threshold = 4;
  std::string readiness_application_ports;
  std::string cpu_request, memory_request, cpu_limit, memory_limit;  // canonical quantities, may be empty
  std::string log_level, component_log_level;
  bool native_sidecar = false;
  // proxy.istio.io/config
  Value proxy_config = Value::object();  // the whole overlay, for PROXY_CONFIG
  bool hold_application_until_proxy_starts = false;
  double termination_drain_seconds = 5;
  std::string discovery_address;
  int concurrency = -1;            // -1: not set
  Object proxy_metadata;           // string values
  Array user_volumes;              // Volume objects
  Array user_volume_mounts;        // VolumeMount objects
  std::string bootstrap_override;  // ConfigMap name
};

// Parses the annotations of a pod (template). The error names the annotation and what is wrong with it.
bool parsePodSettings(const Value& annotations, const InjectConfig& config, PodSettings* out,
                      std::string* error);

// Istio's inject decision for a pod (template): the sidecar.istio.io/inject label wins over the annotation,
// then the policy. Errors only for a value that is not a boolean.
bool wantsInjection(const Value& metadata, const InjectConfig& config, bool* inject, std::string* error);

// Go's strconv.ParseBool, which Istio uses for boolean annotations.
bool parseBool(std::string_view text, bool* out);
// A Go duration ("5s", "1m30s", "250ms") in seconds.
bool parseDuration(std::string_view text, double* seconds);

}  // namespace skiff::inject
