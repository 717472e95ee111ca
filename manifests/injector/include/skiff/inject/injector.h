// Sidecar injection: Kubernetes objects in, the same objects with skiff-init and the skiff sidecar added.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "skiff/inject/settings.h"
#include "skiff/inject/value.h"

namespace skiff::inject {

// The object that owns the pod template: names the node metadata (workload name, owner) after it.
struct Workload {
  std::string kind;         // Deployment, Pod, CronJob, ...
  std::string api_version;  // apps/v1, v1, batch/v1
  std::string name;
  std::string namespace_;
};

enum class Decision { kInjected, kOptedOut, kAlreadyInjected, kHostNetwork, kNotAWorkload };
const char* decisionName(Decision d);

// Injects one pod (template) given its metadata and spec. On error (bad annotation) both are left untouched.
bool injectPod(Value* metadata, Value* spec, const Workload& workload, const InjectConfig& config,
               Decision* decision, std::string* error);

// One Kubernetes object of any kind: Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob (the
// pod template at its path for each) and List (each item). Other kinds come back unchanged (kNotAWorkload).
// The error names the object ("Deployment default/traffic: annotation ..."). `default_namespace` stands in
// when metadata.namespace is absent (the webhook passes the request's).
bool injectObject(Value* object, const InjectConfig& config, Decision* decision, std::string* error,
                  std::string_view default_namespace = "default");

// A multi-document YAML stream. Nothing is produced unless every document succeeds.
bool injectYaml(std::string_view in, const InjectConfig& config, std::string* out, std::string* error);

// Where the pod template of a kind lives (nullptr for kinds without one).
Value* podTemplate(Value* object);

// The skiff bootstrap the sidecar is started with (--config-yaml): admin, the xds-grpc cluster for
// `discovery_address`, ADS, and the 15021 health and 15090 Prometheus listeners.
Value sidecarBootstrap(const std::string& discovery_address, int prometheus_port);

}  // namespace skiff::inject
