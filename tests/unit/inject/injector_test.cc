// The injector: pod template paths per kind, the containers it adds, opt-outs, and all-or-nothing errors.
#include <gtest/gtest.h>

#include "skiff/inject/injector.h"
#include "skiff/inject/yaml_io.h"

namespace skiff::inject {
namespace {

constexpr const char* kPodSpec = R"(
  containers:
  - name: app
    image: app:1
    ports: [{containerPort: 8080, name: http}]
)";

Value load(const std::string& yaml) {
  Value v;
  std::string error;
  EXPECT_TRUE(parseYaml(yaml, &v, &error)) << error;
  return v;
}

Value injectOk(Value obj, Decision expect = Decision::kInjected, const InjectConfig& c = {}) {
  Decision d;
  std::string error;
  EXPECT_TRUE(injectObject(&obj, c, &d, &error)) << error << "\n" << toYaml(obj);
  EXPECT_EQ(d, expect) << decisionName(d);
  return obj;
}

const Value* container(const Value& spec, const char* list, const std::string& name) {
  const Value* l = spec.find(list);
  if (l == nullptr) return nullptr;
  for (const auto& c : l->asArray()) {
    if (c.getString("name") == name) return &c;
  }
  return nullptr;
}

std::vector<std::string> args(const Value& ctr) {
  std::vector<std::string> out;
  for (const auto& a : ctr.find("args")->asArray()) out.push_back(a.asString());
  return out;
}

TEST(InjectorTest, PodTemplatePathForEveryKind) {
  const std::pair<const char*, const char*> kinds[] = {
      {"apps/v1", "Deployment"}, {"apps/v1", "StatefulSet"}, {"apps/v1", "DaemonSet"},
      {"apps/v1", "ReplicaSet"}, {"batch/v1", "Job"},
  };
  for (const auto& [api, kind] : kinds) {
    Value obj =
        load(std::string("apiVersion: ") + api + "\nkind: " + kind +
             "\nmetadata: {name: w, namespace: shop}\nspec: {template: {metadata: {labels: {app: w}}, "
             "spec: {containers: [{name: app, image: 'app:1', ports: [{containerPort: 8080}]}]}}}\n");
    Value out = injectOk(obj);
    const Value* spec = out.at({"spec", "template", "spec"});
    ASSERT_NE(spec, nullptr) << kind;
    EXPECT_NE(container(*spec, "initContainers", "skiff-init"), nullptr) << kind;
    const Value* proxy = container(*spec, "containers", "skiff");
    ASSERT_NE(proxy, nullptr) << kind;
    std::string owner;
    for (const auto& e : proxy->find("env")->asArray()) {
      if (e.getString("name") == "ISTIO_META_OWNER") owner = e.getString("value");
    }
    std::string plural = kind;
    for (auto& ch : plural) ch = static_cast<char>(std::tolower(ch));
    EXPECT_EQ(owner, std::string("kubernetes://apis/") + api + "/namespaces/shop/" + plural + "s/w");
  }
  Value cron = load(
      "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: c}\nspec:\n  schedule: '* * * * *'\n"
      "  jobTemplate:\n    spec:\n      template:\n        spec:\n"
      "          containers: [{name: app, image: a}]\n          restartPolicy: OnFailure\n");
  Value out = injectOk(cron);
  EXPECT_NE(container(*out.at({"spec", "jobTemplate", "spec", "template", "spec"}), "containers", "skiff"),
            nullptr);
}

TEST(InjectorTest, OtherKindsAndOptedOutPodsUnchanged) {
  Value svc = load("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}]}\n");
  EXPECT_EQ(injectOk(svc, Decision::kNotAWorkload), svc);
  Value pod = load(std::string("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: "
                               "{sidecar.istio.io/inject: \"false\"}\nspec:") +
                   kPodSpec);
  EXPECT_EQ(injectOk(pod, Decision::kOptedOut), pod);
  Value labelled = load(std::string("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: "
                                    "{sidecar.istio.io/inject: \"false\"}\nspec:") +
                        kPodSpec);
  EXPECT_EQ(injectOk(labelled, Decision::kOptedOut), labelled);
  Value host = load(
      std::string("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  hostNetwork: true") + kPodSpec);
  EXPECT_EQ(injectOk(host, Decision::kHostNetwork), host);
  // Injecting twice changes nothing the second time.
  Value once =
      injectOk(load(std::string("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:") + kPodSpec));
  EXPECT_EQ(injectOk(once, Decision::kAlreadyInjected), once);
}

TEST(InjectorTest, InitContainerFromAnnotations) {
  Value pod = injectOk(load(std::string("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n") +
                            "    traffic.sidecar.istio.io/excludeOutboundPorts: \"25\"\n"
                            "    traffic.sidecar.istio.io/includeOutboundPorts: \"9000\"\n"
                            "    traffic.sidecar.istio.io/excludeInboundPorts: \"4,5\"\n"
                            "    traffic.sidecar.istio.io/kubevirtInterfaces: net1\n"
                            "    traffic.sidecar.istio.io/excludeInterfaces: eth9\n"
                            "    status.sidecar.istio.io/port: \"15099\"\n"
                            "spec:" +
                            kPodSpec));
  const Value* init = container(*pod.find("spec"), "initContainers", "skiff-init");
  ASSERT_NE(init, nullptr);
  EXPECT_EQ(args(*init), (std::vector<std::string>{
                             "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT",
                             "-i", "*",     "-x", "",      "-b", "*",    "-d", "15090,15021,4,5,15099",
                             "-q", "9000",  "-o", "25",    "-k", "net1", "-c", "eth9"}));
  const Value* sc = init->find("securityContext");
  EXPECT_EQ(toJson(*sc->at({"capabilities", "add"})), R"(["NET_ADMIN","NET_RAW"])");
  EXPECT_EQ(toJson(*sc->at({"capabilities", "drop"})), R"(["ALL"])");
  EXPECT_EQ(sc->find("runAsUser")->asInt(), 0);
  EXPECT_FALSE(sc->find("privileged")->asBool());
}

TEST(InjectorTest, SidecarContainerShape) {
  Value pod = injectOk(load(std::string("apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {app: shop, "
                                        "version: v2}}\nspec:") +
                            kPodSpec));
  const Value& spec = *pod.find("spec");
  ASSERT_EQ(spec.find("containers")->size(), 2u);
  EXPECT_EQ(spec.find("containers")->asArray()[0].getString("name"), "app");  // app stays first
  const Value* proxy = container(spec, "containers", "skiff");
  const Value* sc = proxy->find("securityContext");
  EXPECT_EQ(sc->find("runAsUser")->asInt(), 1337);
  EXPECT_EQ(sc->find("runAsGroup")->asInt(), 1337);
  EXPECT_TRUE(sc->find("readOnlyRootFilesystem")->asBool());
  EXPECT_FALSE(sc->find("allowPrivilegeEscalation")->asBool());
  EXPECT_EQ(sc->at({"capabilities", "add"}), nullptr);
  std::vector<int64_t> ports;
  for (const auto& p : proxy->find("ports")->asArray()) ports.push_back(p.find("containerPort")->asInt());
  EXPECT_EQ(ports, (std::vector<int64_t>{15090, 15021}));
  EXPECT_EQ(proxy->at({"readinessProbe", "httpGet", "path"})->asString(), "/healthz/ready");
  EXPECT_EQ(proxy->at({"readinessProbe", "httpGet", "port"})->asInt(), 15021);
  std::map<std::string, std::string> env;
  for (const auto& e : proxy->find("env")->asArray())
    env[e.getString("name")] = e.getString("value", "<ref>");
  EXPECT_EQ(env["POD_NAME"], "<ref>");
  EXPECT_EQ(env["POD_NAMESPACE"], "<ref>");
  EXPECT_EQ(env["INSTANCE_IP"], "<ref>");
  EXPECT_EQ(env["ISTIO_META_WORKLOAD_NAME"], "p");
  EXPECT_EQ(env["ISTIO_META_APP_CONTAINERS"], "app");
  EXPECT_EQ(env["ISTIO_META_POD_PORTS"], R"([{"containerPort":8080,"name":"http"}])");
  EXPECT_EQ(env["ISTIO_META_INTERCEPTION_MODE"], "REDIRECT");
  EXPECT_NE(env["ISTIO_METAJSON_LABELS"].find(R"("app":"shop")"), std::string::npos);
  // The bootstrap points at the control plane.
  std::vector<std::string> a = args(*proxy);
  ASSERT_GE(a.size(), 2u);
  EXPECT_EQ(a[0], "--config-yaml");
  EXPECT_NE(a[1].find(R"("address":"istiod.istio-system.svc","port_value":15012)"), std::string::npos);
  const Value& labels = *pod.at({"metadata", "labels"});
  EXPECT_EQ(labels.getString("service.istio.io/canonical-name"), "shop");
  EXPECT_EQ(labels.getString("service.istio.io/canonical-revision"), "v2");
  EXPECT_EQ(labels.getString("security.istio.io/tlsMode"), "istio");
  std::string status = pod.at({"metadata", "annotations"})->getString("sidecar.istio.io/status");
  EXPECT_NE(status.find(R"("initContainers":["skiff-init"],"containers":["skiff"])"), std::string::npos)
      << status;
}

TEST(InjectorTest, NativeSidecarHoldAndInterceptionNone) {
  Value native = injectOk(load(std::string("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: "
                                           "{sidecar.istio.io/nativeSidecar: \"true\"}\nspec:") +
                               kPodSpec));
  const Value* proxy = container(*native.find("spec"), "initContainers", "skiff");
  ASSERT_NE(proxy, nullptr);
  EXPECT_EQ(proxy->getString("restartPolicy"), "Always");
  EXPECT_EQ(native.at({"spec", "initContainers"})->asArray()[0].getString("name"), "skiff-init");
  EXPECT_EQ(native.at({"spec", "containers"})->size(), 1u);

  Value hold =
      injectOk(load(std::string("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n"
                                "    proxy.istio.io/config: '{\"holdApplicationUntilProxyStarts\": true}'\n"
                                "spec:") +
                    kPodSpec));
  const Value& first = hold.at({"spec", "containers"})->asArray()[0];
  EXPECT_EQ(first.getString("name"), "skiff");
  EXPECT_NE(first.at({"lifecycle", "postStart", "exec", "command"}), nullptr);

  Value none = injectOk(load(std::string("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: "
                                         "{sidecar.istio.io/interceptionMode: NONE}\nspec:") +
                             kPodSpec));
  EXPECT_EQ(none.at({"spec", "initContainers"}), nullptr);

  Value tproxy = injectOk(load(std::string("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: "
                                           "{sidecar.istio.io/interceptionMode: TPROXY}\nspec:") +
                               kPodSpec));
  const Value* sc = container(*tproxy.find("spec"), "containers", "skiff")->find("securityContext");
  EXPECT_EQ(sc->find("runAsUser")->asInt(), 0);
  EXPECT_EQ(sc->find("runAsGroup")->asInt(), 1337);
}

TEST(InjectorTest, PrometheusMerge) {
  Value pod = injectOk(load(std::string("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: "
                                        "{prometheus.io/port: \"9090\", prometheus.io/path: /m}\nspec:") +
                            kPodSpec));
  const Value& ann = *pod.at({"metadata", "annotations"});
  EXPECT_EQ(ann.getString("prometheus.io/scrape"), "true");
  EXPECT_EQ(ann.getString("prometheus.io/port"), "15090");
  EXPECT_EQ(ann.getString("prometheus.io/path"), "/stats/prometheus");
  std::string originals;
  for (const auto& e : container(*pod.find("spec"), "containers", "skiff")->find("env")->asArray()) {
    if (e.getString("name") == "ISTIO_PROMETHEUS_ANNOTATIONS") originals = e.getString("value");
  }
  EXPECT_EQ(originals, R"({"path":"/m","port":"9090"})");
  Value off = load(std::string("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: "
                               "{prometheus.io/scrape: \"false\"}\nspec:") +
                   kPodSpec);
  EXPECT_EQ(injectOk(off).at({"metadata", "annotations"})->getString("prometheus.io/scrape"), "false");
}

TEST(InjectorTest, UserVolumesBecomeVolumeAndMount) {
  Value pod = injectOk(
      load(std::string("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n") +
           "    sidecar.istio.io/userVolume: '[{\"name\":\"w\",\"configMap\":{\"name\":\"w\"}}]'\n"
           "    sidecar.istio.io/userVolumeMount: '[{\"name\":\"w\",\"mountPath\":\"/var/local/wasm\"}]'\n"
           "spec:" +
           kPodSpec));
  const Value& vols = *pod.at({"spec", "volumes"});
  EXPECT_EQ(vols.asArray().back().getString("name"), "w");
  const Value& mounts = *container(*pod.find("spec"), "containers", "skiff")->find("volumeMounts");
  EXPECT_EQ(mounts.asArray().back().getString("mountPath"), "/var/local/wasm");
  // A mount that names no volume is an error.
  Value bad = load(
      std::string("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n") +
      "    sidecar.istio.io/userVolumeMount: '[{\"name\":\"nope\",\"mountPath\":\"/x\"}]'\nspec:" + kPodSpec);
  Decision d;
  std::string error;
  Value before = bad;
  EXPECT_FALSE(injectObject(&bad, InjectConfig{}, &d, &error));
  EXPECT_NE(error.find("Pod default/p: annotation sidecar.istio.io/userVolumeMount"), std::string::npos)
      << error;
  EXPECT_EQ(bad, before);
}

TEST(InjectorTest, StreamIsAllOrNothing) {
  std::string good = std::string("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:") + kPodSpec;
  std::string bad = std::string(
                        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: traffic, namespace: x}\n"
                        "spec:\n  template:\n    metadata:\n      annotations:\n"
                        "        traffic.sidecar.istio.io/excludeOutboundPorts: \"7,x\"\n    spec:") +
                    "\n      containers: [{name: a, image: b}]\n";
  std::string out, error;
  ASSERT_TRUE(injectYaml(good + "---\n" + "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
                         InjectConfig{}, &out, &error))
      << error;
  EXPECT_NE(out.find("---\napiVersion: v1\nkind: ConfigMap"), std::string::npos);
  out.clear();
  EXPECT_FALSE(injectYaml(good + "---\n" + bad, InjectConfig{}, &out, &error));
  EXPECT_TRUE(out.empty());
  EXPECT_NE(error.find(
                "document 2: Deployment x/traffic: annotation traffic.sidecar.istio.io/excludeOutboundPorts"),
            std::string::npos)
      << error;
  EXPECT_FALSE(injectYaml("a: [", InjectConfig{}, &out, &error));
  EXPECT_NE(error.find("not YAML"), std::string::npos);
}

TEST(InjectorTest, ListItemsAndControllerOwnedPods) {
  Value list = load(
      std::string("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: "
                  "a}\n  spec:\n    containers: [{name: c, image: i}]\n"));
  Value out = injectOk(list);
  EXPECT_NE(container(*out.find("items")->asArray()[0].find("spec"), "containers", "skiff"), nullptr);
  Value owned =
      load(std::string("apiVersion: v1\nkind: Pod\nmetadata:\n  generateName: web-5d8f7-\n  labels: "
                       "{pod-template-hash: 5d8f7}\n  ownerReferences:\n  - {apiVersion: apps/v1, kind: "
                       "ReplicaSet, name: web-5d8f7, controller: true, uid: u}\nspec:") +
           kPodSpec);
  out = injectOk(owned);
  std::map<std::string, std::string> env;
  for (const auto& e : container(*out.find("spec"), "containers", "skiff")->find("env")->asArray()) {
    env[e.getString("name")] = e.getString("value");
  }
  EXPECT_EQ(env["ISTIO_META_WORKLOAD_NAME"], "web");
  EXPECT_EQ(env["ISTIO_META_OWNER"], "kubernetes://apis/apps/v1/namespaces/default/deployments/web");
}

}  // namespace
}  // namespace skiff::inject

namespace skiff::inject {
namespace {

TEST(InjectorTest, MalformedPodsAreErrorsNotCrashes) {
  const char* bad[] = {
      "apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: [a]}\nspec: {containers: [{name: a}]}\n",
      "apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: x}\nspec: {containers: [{name: a}]}\n",
      "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: x}\n",
      "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: []}\n",
      "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [1]}\n",
      "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: skiff}]}\n",
      "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a}], volumes: {}}\n",
      "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n",
      "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {template: 3}\n",
      "apiVersion: v1\nkind: Pod\nmetadata: 7\nspec: {containers: [{name: a}]}\n",
  };
  for (const char* text : bad) {
    std::string out, error;
    EXPECT_FALSE(injectYaml(text, InjectConfig{}, &out, &error)) << text;
    EXPECT_FALSE(error.empty());
    EXPECT_TRUE(out.empty());
  }
}

}  // namespace
}  // namespace skiff::inject
