// Pod annotations → settings: Istio's names and defaults, and errors that name the annotation.
#include <gtest/gtest.h>

#include "skiff/inject/settings.h"
#include "skiff/inject/yaml_io.h"

namespace skiff::inject {
namespace {

Value annotations(std::initializer_list<std::pair<const char*, const char*>> kv) {
  Value v = Value::object();
  for (const auto& [k, val] : kv) v.set(k, val);
  return v;
}

PodSettings parseOk(const Value& a, const InjectConfig& c = {}) {
  PodSettings s;
  std::string error;
  EXPECT_TRUE(parsePodSettings(a, c, &s, &error)) << error;
  return s;
}

std::string parseError(const Value& a) {
  PodSettings s;
  std::string error;
  EXPECT_FALSE(parsePodSettings(a, InjectConfig{}, &s, &error));
  return error;
}

TEST(SettingsTest, IstioDefaults) {
  PodSettings s = parseOk(Value());
  EXPECT_EQ(s.interception_mode, "REDIRECT");
  EXPECT_EQ(s.include_ip_ranges, "*");
  EXPECT_EQ(s.exclude_ip_ranges, "");
  EXPECT_EQ(s.include_inbound_ports, "*");
  EXPECT_EQ(s.status_port, 15020);
  EXPECT_EQ(s.readiness_period_seconds, 15);
  EXPECT_EQ(s.readiness_failure_threshold, 4);
  EXPECT_EQ(s.cpu_request, "100m");
  EXPECT_EQ(s.memory_request, "128Mi");
  EXPECT_EQ(s.cpu_limit, "2");
  EXPECT_EQ(s.memory_limit, "1Gi");
  EXPECT_EQ(s.log_level, "warning");
  EXPECT_EQ(s.component_log_level, "misc:error");
  EXPECT_EQ(s.discovery_address, "istiod.istio-system.svc:15012");
  EXPECT_FALSE(s.hold_application_until_proxy_starts);
  EXPECT_DOUBLE_EQ(s.termination_drain_seconds, 5);
}

TEST(SettingsTest, EveryTrafficAnnotation) {
  PodSettings s = parseOk(annotations({
      {"sidecar.istio.io/interceptionMode", "TPROXY"},
      {"traffic.sidecar.istio.io/includeOutboundIPRanges", "10.0.0.0/8,fd00::/8"},
      {"traffic.sidecar.istio.io/excludeOutboundIPRanges", "10.1.0.0/16"},
      {"traffic.sidecar.istio.io/includeInboundPorts", "80,443"},
      {"traffic.sidecar.istio.io/excludeInboundPorts", "9000"},
      {"traffic.sidecar.istio.io/includeOutboundPorts", "25"},
      {"traffic.sidecar.istio.io/excludeOutboundPorts", "3306,5432"},
      {"traffic.sidecar.istio.io/kubevirtInterfaces", "net1,net2"},
      {"traffic.sidecar.istio.io/excludeInterfaces", "eth1"},
      {"status.sidecar.istio.io/port", "0"},
      {"readiness.status.sidecar.istio.io/initialDelaySeconds", "3"},
      {"readiness.status.sidecar.istio.io/periodSeconds", "7"},
      {"readiness.status.sidecar.istio.io/failureThreshold", "9"},
      {"sidecar.istio.io/proxyCPU", "4000m"},
      {"sidecar.istio.io/proxyMemory", "256Mi"},
      {"sidecar.istio.io/proxyCPULimit", "3"},
      {"sidecar.istio.io/proxyMemoryLimit", "2048Mi"},
      {"sidecar.istio.io/logLevel", "debug"},
      {"sidecar.istio.io/componentLogLevel", "upstream:debug,connection:trace"},
      {"sidecar.istio.io/bootstrapOverride", "my-bootstrap"},
      {"sidecar.istio.io/nativeSidecar", "true"},
  }));
  EXPECT_EQ(s.interception_mode, "TPROXY");
  EXPECT_EQ(s.include_ip_ranges, "10.0.0.0/8,fd00::/8");
  EXPECT_EQ(s.exclude_ip_ranges, "10.1.0.0/16");
  EXPECT_EQ(s.include_inbound_ports, "80,443");
  EXPECT_EQ(s.exclude_inbound_ports, "9000");
  EXPECT_EQ(s.include_outbound_ports, "25");
  EXPECT_EQ(s.exclude_outbound_ports, "3306,5432");
  EXPECT_EQ(s.kubevirt_interfaces, "net1,net2");
  EXPECT_EQ(s.exclude_interfaces, "eth1");
  EXPECT_EQ(s.status_port, 0);
  EXPECT_EQ(s.readiness_initial_delay_seconds, 3);
  EXPECT_EQ(s.readiness_period_seconds, 7);
  EXPECT_EQ(s.readiness_failure_threshold, 9);
  EXPECT_EQ(s.cpu_request, "4");
  EXPECT_EQ(s.memory_request, "256Mi");
  EXPECT_EQ(s.cpu_limit, "3");
  EXPECT_EQ(s.memory_limit, "2Gi");
  EXPECT_EQ(s.log_level, "debug");
  EXPECT_EQ(s.component_log_level, "upstream:debug,connection:trace");
  EXPECT_EQ(s.bootstrap_override, "my-bootstrap");
  EXPECT_TRUE(s.native_sidecar);
}

TEST(SettingsTest, AnyResourceAnnotationReplacesAllDefaults) {
  PodSettings s = parseOk(annotations({{"sidecar.istio.io/proxyCPU", "4000m"}}));
  EXPECT_EQ(s.cpu_request, "4");
  EXPECT_EQ(s.memory_request, "");
  EXPECT_EQ(s.cpu_limit, "");
  EXPECT_EQ(s.memory_limit, "");
}

TEST(SettingsTest, ProxyConfigOverlay) {
  PodSettings s =
      parseOk(annotations({{"proxy.istio.io/config",
                            "holdApplicationUntilProxyStarts: true\nterminationDrainDuration: 1m30s\n"
                            "discoveryAddress: foo:123\nconcurrency: 2\nproxyMetadata:\n  FOO: bar\n"
                            "tracing: {sampling: 10}\n"}}));
  EXPECT_TRUE(s.hold_application_until_proxy_starts);
  EXPECT_DOUBLE_EQ(s.termination_drain_seconds, 90);
  EXPECT_EQ(s.discovery_address, "foo:123");
  EXPECT_EQ(s.concurrency, 2);
  ASSERT_EQ(s.proxy_metadata.size(), 1u);
  EXPECT_EQ(s.proxy_metadata[0].second.asString(), "bar");
  EXPECT_NE(s.proxy_config.find("tracing"), nullptr);  // passed through to PROXY_CONFIG
  // JSON works too (it is YAML).
  s = parseOk(annotations({{"proxy.istio.io/config", R"({"holdApplicationUntilProxyStarts": true})"}}));
  EXPECT_TRUE(s.hold_application_until_proxy_starts);
}

TEST(SettingsTest, UserVolumesArrayAndObjectForms) {
  // The seed pod's form: JSON arrays of Volume / VolumeMount.
  PodSettings s = parseOk(annotations({
      {"sidecar.istio.io/userVolume", R"([{"name":"my-wasm-filter","configMap":{"name":"my-wasm-filter"}}])"},
      {"sidecar.istio.io/userVolumeMount", R"([{"name":"my-wasm-filter","mountPath":"/var/local/wasm"}])"},
  }));
  ASSERT_EQ(s.user_volumes.size(), 1u);
  EXPECT_EQ(s.user_volumes[0].getString("name"), "my-wasm-filter");
  EXPECT_EQ(s.user_volumes[0].at({"configMap", "name"})->asString(), "my-wasm-filter");
  ASSERT_EQ(s.user_volume_mounts.size(), 1u);
  EXPECT_EQ(s.user_volume_mounts[0].getString("mountPath"), "/var/local/wasm");
  // Istio's current documented form: objects keyed by name.
  s = parseOk(annotations({
      {"sidecar.istio.io/userVolume", R"({"certs":{"secret":{"secretName":"c"}}})"},
      {"sidecar.istio.io/userVolumeMount", R"({"certs":{"mountPath":"/etc/c","readOnly":true}})"},
  }));
  ASSERT_EQ(s.user_volumes.size(), 1u);
  EXPECT_EQ(s.user_volumes[0].getString("name"), "certs");
  EXPECT_EQ(s.user_volumes[0].at({"secret", "secretName"})->asString(), "c");
  EXPECT_TRUE(s.user_volume_mounts[0].find("readOnly")->asBool());
}

struct BadCase {
  const char* key;
  const char* value;
  const char* why;
};

TEST(SettingsTest, InvalidValuesNameTheAnnotation) {
  const BadCase cases[] = {
      {"sidecar.istio.io/interceptionMode", "REDIRECTS", "REDIRECT, TPROXY or NONE"},
      {"traffic.sidecar.istio.io/includeOutboundIPRanges", "10.0.0.0/33", "not a CIDR"},
      {"traffic.sidecar.istio.io/includeOutboundIPRanges", "10.0.0.1", "not a CIDR"},
      {"traffic.sidecar.istio.io/excludeOutboundIPRanges", "*", "not a CIDR"},
      {"traffic.sidecar.istio.io/includeInboundPorts", "80,x", "'x' is not a port"},
      {"traffic.sidecar.istio.io/excludeInboundPorts", "70000", "not a port"},
      {"traffic.sidecar.istio.io/includeOutboundPorts", "0", "not a port"},
      {"traffic.sidecar.istio.io/excludeOutboundPorts", "7,,9", "'' is not a port"},
      {"traffic.sidecar.istio.io/kubevirtInterfaces", "a/b", "not an interface"},
      {"status.sidecar.istio.io/port", "http", "want a port"},
      {"readiness.status.sidecar.istio.io/periodSeconds", "0", "integer >= 1"},
      {"readiness.status.sidecar.istio.io/initialDelaySeconds", "-1", "integer >= 0"},
      {"sidecar.istio.io/proxyCPU", "lots", "not a resource quantity"},
      {"sidecar.istio.io/proxyMemoryLimit", "1GB", "not a resource quantity"},
      {"sidecar.istio.io/logLevel", "verbose", "want trace"},
      {"sidecar.istio.io/componentLogLevel", "misc", "<component>:<level>"},
      {"sidecar.istio.io/userVolume", "[{", "not JSON"},
      {"sidecar.istio.io/userVolume", R"([{"configMap":{"name":"x"}}])", "no \"name\""},
      {"sidecar.istio.io/userVolume", R"([{"name":"x"}])", "no source"},
      {"sidecar.istio.io/userVolume", R"("x")", "want a JSON array or object"},
      {"sidecar.istio.io/userVolumeMount", R"([{"name":"x","mountPath":"rel"}])", "absolute \"mountPath\""},
      {"proxy.istio.io/config", "holdApplicationUntilProxyStarts: maybe", "must be true or false"},
      {"proxy.istio.io/config", "terminationDrainDuration: 5", "duration"},
      {"proxy.istio.io/config", "discoveryAddress: nohost", "host:port"},
      {"proxy.istio.io/config", "concurrency: -2", "integer >= 0"},
      {"proxy.istio.io/config", "[1, 2]", "mapping"},
      {"proxy.istio.io/config", "a: [", "not YAML"},
      {"sidecar.istio.io/bootstrapOverride", "Not_A_Name", "ConfigMap name"},
      {"sidecar.istio.io/nativeSidecar", "yes please", "true or false"},
      {"prometheus.io/port", "http", "want a port"},
      {"prometheus.io/path", "metrics", "absolute path"},
  };
  for (const auto& c : cases) {
    std::string error = parseError(annotations({{c.key, c.value}}));
    EXPECT_NE(error.find(std::string("annotation ") + c.key), std::string::npos) << c.key << ": " << error;
    EXPECT_NE(error.find(c.why), std::string::npos) << c.key << "=" << c.value << ": " << error;
  }
}

TEST(SettingsTest, NonStringAnnotationIsAnError) {
  Value a = Value::object();
  a.set("status.sidecar.istio.io/port", 15020);
  std::string error = parseError(a);
  EXPECT_NE(error.find("status.sidecar.istio.io/port"), std::string::npos) << error;
  EXPECT_NE(error.find("must be a string"), std::string::npos) << error;
}

TEST(SettingsTest, InjectLabelWinsOverAnnotation) {
  Value meta;
  std::string error;
  ASSERT_TRUE(
      parseYaml("labels: {sidecar.istio.io/inject: \"false\"}\n"
                "annotations: {sidecar.istio.io/inject: \"true\"}\n",
                &meta, &error));
  bool inject = true;
  ASSERT_TRUE(wantsInjection(meta, InjectConfig{}, &inject, &error)) << error;
  EXPECT_FALSE(inject);
  ASSERT_TRUE(parseYaml("annotations: {sidecar.istio.io/inject: \"maybe\"}\n", &meta, &error));
  EXPECT_FALSE(wantsInjection(meta, InjectConfig{}, &inject, &error));
  EXPECT_NE(error.find("annotation sidecar.istio.io/inject=\"maybe\""), std::string::npos) << error;
  // Policy disabled: only an explicit opt-in injects.
  InjectConfig off;
  off.auto_inject = false;
  ASSERT_TRUE(wantsInjection(Value::object(), off, &inject, &error));
  EXPECT_FALSE(inject);
}

TEST(SettingsTest, ConfigOverridesDefaultsAndRejectsUnknownKeys) {
  Value v;
  std::string error;
  ASSERT_TRUE(parseYaml("proxyImage: reg/skiff:1\nnativeSidecars: true\ncpuLimit: 500m\nstatusPort: 15099\n",
                        &v, &error));
  InjectConfig c;
  ASSERT_TRUE(loadInjectConfig(v, &c, &error)) << error;
  EXPECT_EQ(c.proxy_image, "reg/skiff:1");
  EXPECT_TRUE(c.native_sidecars);
  EXPECT_EQ(parseOk(Value(), c).cpu_limit, "500m");
  ASSERT_TRUE(parseYaml("proxyImag: x\n", &v, &error));
  EXPECT_FALSE(loadInjectConfig(v, &c, &error));
  EXPECT_NE(error.find("unknown key proxyImag"), std::string::npos) << error;
  ASSERT_TRUE(parseYaml("cpuLimit: lots\n", &v, &error));
  EXPECT_FALSE(loadInjectConfig(v, &c, &error));
}

TEST(SettingsTest, Durations) {
  double s;
  EXPECT_TRUE(parseDuration("5s", &s));
  EXPECT_DOUBLE_EQ(s, 5);
  EXPECT_TRUE(parseDuration("1h2m3.5s", &s));
  EXPECT_DOUBLE_EQ(s, 3723.5);
  EXPECT_TRUE(parseDuration("250ms", &s));
  EXPECT_DOUBLE_EQ(s, 0.25);
  EXPECT_FALSE(parseDuration("5", &s));
  EXPECT_FALSE(parseDuration("5x", &s));
  EXPECT_FALSE(parseDuration("", &s));
}

}  // namespace
}  // namespace skiff::inject
