"""skiff-inject's CLI (issue 8, "Must be shown by tests" item 1, and the inject mode's contract): the seed pod
injected (init args, sidecar container, userVolume/userVolumeMount → volume + mount), every workload kind,
opt-outs, errors that name the annotation and the object with nothing written, and kubectl's offline type check
of everything we emit (including the install manifests in manifests/)."""
import json
import subprocess

import pytest
import yaml

from inject_helpers import (REPO, container, inject_docs, kubectl_typecheck, need_inject_bin, need_shared, pod_meta,
                            pod_spec, run_inject)

DEFAULT_INIT_ARGS = ["-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-x", "", "-b", "*",
                     "-d", "15090,15021,15020"]


@pytest.fixture(scope="module", autouse=True)
def _bin():
    need_inject_bin()


@pytest.fixture(scope="module")
def seed_injected():
    text = need_shared("fixtures", "seeds", "my-client.pod.yaml").read_text()
    docs = inject_docs(text)
    assert len(docs) == 1
    return docs[0]


def test_seed_pod_init_container(seed_injected):
    spec = seed_injected["spec"]
    assert [c["name"] for c in spec["initContainers"]] == ["skiff-init"]
    init = spec["initContainers"][0]
    assert init["command"] == ["skiff-init"]
    assert init["args"] == DEFAULT_INIT_ARGS
    sc = init["securityContext"]
    assert sc["capabilities"] == {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]}
    assert sc["runAsUser"] == 0 and sc["runAsNonRoot"] is False and sc["privileged"] is False
    assert sc["allowPrivilegeEscalation"] is False


def test_seed_pod_sidecar_container(seed_injected):
    spec = seed_injected["spec"]
    assert [c["name"] for c in spec["containers"]] == ["my-client", "skiff"]
    app = spec["containers"][0]
    assert app == {"command": ["sleep", "infinity"], "image": "nicolaka/netshoot:v0.13", "name": "my-client"}
    proxy = spec["containers"][1]
    sc = proxy["securityContext"]
    assert (sc["runAsUser"], sc["runAsGroup"], sc["runAsNonRoot"]) == (1337, 1337, True)
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert [(p["containerPort"], p["protocol"]) for p in proxy["ports"]] == [(15090, "TCP"), (15021, "TCP")]
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/healthz/ready", "port": 15021}
    env = {e["name"]: e for e in proxy["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["INSTANCE_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env["ISTIO_META_WORKLOAD_NAME"]["value"] == "my-client"
    assert env["ISTIO_META_OWNER"]["value"] == "kubernetes://apis/v1/namespaces/default/pods/my-client"
    assert json.loads(env["ISTIO_METAJSON_LABELS"]["value"])["app"] == "my-client"
    # skiff gets a bootstrap pointing at the control plane, and Istio's node id shape.
    args = proxy["args"]
    bootstrap = json.loads(args[args.index("--config-yaml") + 1])
    xds = next(c for c in bootstrap["static_resources"]["clusters"] if c["name"] == "xds-grpc")
    addr = xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert (addr["address"], addr["port_value"]) == ("istiod.istio-system.svc", 15012)
    assert bootstrap["dynamic_resources"]["ads_config"]["grpc_services"][0]["envoy_grpc"]["cluster_name"] == "xds-grpc"
    node = args[args.index("--service-node") + 1]
    assert node == "sidecar~$(INSTANCE_IP)~$(POD_NAME).$(POD_NAMESPACE)~$(POD_NAMESPACE).svc.cluster.local"


def test_seed_pod_user_volume_and_mount(seed_injected):
    spec = seed_injected["spec"]
    vols = {v["name"]: v for v in spec["volumes"]}
    assert vols["my-wasm-filter"] == {"name": "my-wasm-filter", "configMap": {"name": "my-wasm-filter"}}
    proxy = container(spec, "skiff")
    mounts = {m["name"]: m for m in proxy["volumeMounts"]}
    assert mounts["my-wasm-filter"] == {"name": "my-wasm-filter", "mountPath": "/var/local/wasm"}
    # Every mount names a volume of the pod.
    assert set(mounts) <= set(vols)
    # The app container gets no mount of it.
    assert "volumeMounts" not in spec["containers"][0]


def test_seed_pod_metadata(seed_injected):
    meta = seed_injected["metadata"]
    status = json.loads(meta["annotations"]["sidecar.istio.io/status"])
    assert status["initContainers"] == ["skiff-init"] and status["containers"] == ["skiff"]
    assert "my-wasm-filter" in status["volumes"] and "workload-certs" in status["volumes"]
    assert meta["labels"]["security.istio.io/tlsMode"] == "istio"
    assert meta["labels"]["service.istio.io/canonical-name"] == "my-client"
    assert meta["annotations"]["prometheus.io/scrape"] == "true"
    assert meta["annotations"]["prometheus.io/port"] == "15090"


def test_seed_pod_passes_kubectl_type_check(seed_injected):
    assert kubectl_typecheck([seed_injected]) == []


def test_type_check_catches_bad_fields():
    """The kubectl check itself can fail: an unknown field and a wrong type are both reported."""
    bad = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
           "spec": {"containers": [{"name": "a", "image": "b", "bogus": 1}]}}
    assert any("bogus" in p for p in kubectl_typecheck([bad]))
    bad["spec"]["containers"][0] = {"name": "a", "image": "b", "ports": [{"containerPort": "80"}]}
    assert kubectl_typecheck([bad]) != []


WORKLOADS = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web, version: v3}
      annotations:
        traffic.sidecar.istio.io/excludeOutboundPorts: "5432"
        sidecar.istio.io/proxyCPU: 250m
        sidecar.istio.io/proxyMemoryLimit: 512Mi
        sidecar.istio.io/logLevel: debug
        sidecar.istio.io/componentLogLevel: upstream:debug
        proxy.istio.io/config: |
          holdApplicationUntilProxyStarts: true
          terminationDrainDuration: 20s
          discoveryAddress: istiod.mesh.svc:15010
        readiness.status.sidecar.istio.io/periodSeconds: "5"
        sidecar.istio.io/bootstrapOverride: web-bootstrap
        prometheus.io/port: "9090"
    spec:
      containers: [{name: web, image: "web:1", ports: [{containerPort: 8080, name: http}]}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}, annotations: {sidecar.istio.io/interceptionMode: TPROXY}}
    spec: {containers: [{name: db, image: "db:1"}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: agent, image: "agent:1"}]}
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: rs}
spec:
  selector: {matchLabels: {app: rs}}
  template:
    metadata: {labels: {app: rs}}
    spec: {containers: [{name: rs, image: "rs:1"}]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: once}
spec:
  template:
    metadata: {annotations: {sidecar.istio.io/nativeSidecar: "true"}}
    spec: {restartPolicy: Never, containers: [{name: once, image: "job:1"}]}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec: {restartPolicy: OnFailure, containers: [{name: nightly, image: "cron:1"}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: plain
  annotations: {sidecar.istio.io/inject: "false"}
spec: {containers: [{name: plain, image: "plain:1"}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80, targetPort: 8080}], selector: {app: web}}
"""


@pytest.fixture(scope="module")
def workloads():
    return inject_docs(WORKLOADS)


def test_every_workload_kind_is_injected_at_its_template(workloads):
    by_kind = {d["kind"]: d for d in workloads}
    for kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"):
        spec = pod_spec(by_kind[kind])
        assert container(spec, "skiff") is not None, kind
        assert container(spec, "skiff-init", ("initContainers",)) is not None, kind
        assert "sidecar.istio.io/status" in pod_meta(by_kind[kind])["annotations"], kind


def test_other_kinds_and_opted_out_pods_unchanged(workloads):
    original = [d for d in yaml.safe_load_all(WORKLOADS) if d]
    assert workloads[-2] == original[-2]  # the opted-out pod
    assert workloads[-1] == original[-1]  # the Service
    assert len(workloads) == len(original)


def test_annotations_reach_the_containers(workloads):
    dep = workloads[0]
    spec = pod_spec(dep)
    init = container(spec, "skiff-init")
    assert init["args"][init["args"].index("-o") + 1] == "5432"
    proxy = spec["containers"][0]  # holdApplicationUntilProxyStarts: first, with a postStart hook
    assert proxy["name"] == "skiff"
    assert proxy["lifecycle"]["postStart"]["exec"]["command"][:2] == ["skiff-inject", "wait"]
    # Any resource annotation replaces the defaults entirely (Istio's rule).
    assert proxy["resources"] == {"limits": {"memory": "512Mi"}, "requests": {"cpu": "250m"}}
    args = proxy["args"]
    assert args[args.index("--log-level") + 1] == "debug"
    assert args[args.index("--component-log-level") + 1] == "upstream:debug"
    assert args[args.index("--drain-time-s") + 1] == "20"
    assert args[:2] == ["--config-path", "/etc/istio/custom-bootstrap/custom_bootstrap.json"]
    assert "istiod.mesh.svc" in args[args.index("--config-yaml") + 1]
    assert proxy["readinessProbe"]["periodSeconds"] == 5
    vols = {v["name"]: v for v in spec["volumes"]}
    assert vols["custom-bootstrap-volume"]["configMap"]["name"] == "web-bootstrap"
    env = {e["name"]: e.get("value") for e in proxy["env"]}
    assert json.loads(env["ISTIO_PROMETHEUS_ANNOTATIONS"]) == {"port": "9090"}
    assert env["ISTIO_META_OWNER"] == "kubernetes://apis/apps/v1/namespaces/shop/deployments/web"
    assert env["ISTIO_BOOTSTRAP_OVERRIDE"] == "/etc/istio/custom-bootstrap/custom_bootstrap.json"
    assert json.loads(env["PROXY_CONFIG"])["terminationDrainDuration"] == "20s"
    assert pod_meta(dep)["labels"]["service.istio.io/canonical-revision"] == "v3"
    # TPROXY: the proxy runs as root in group 1337 with NET_ADMIN.
    sts_proxy = container(pod_spec(workloads[1]), "skiff")
    assert sts_proxy["securityContext"]["runAsUser"] == 0
    assert sts_proxy["securityContext"]["capabilities"]["add"] == ["NET_ADMIN"]
    assert "TPROXY" in container(pod_spec(workloads[1]), "skiff-init")["args"]


def test_native_sidecar_for_jobs(workloads):
    spec = pod_spec(workloads[4])
    assert [c["name"] for c in spec["initContainers"]] == ["skiff-init", "skiff"]
    assert spec["initContainers"][1]["restartPolicy"] == "Always"
    assert [c["name"] for c in spec["containers"]] == ["once"]
    # The flag turns it on for everything.
    docs = inject_docs(WORKLOADS, "--native-sidecars")
    assert container(pod_spec(docs[0]), "skiff", ("initContainers",))["restartPolicy"] == "Always"


def test_workloads_pass_kubectl_type_check(workloads):
    assert kubectl_typecheck(workloads[:-1]) == []
    assert kubectl_typecheck(inject_docs(WORKLOADS, "--native-sidecars")[:-1]) == []


def test_reinjecting_is_a_no_op(workloads):
    again = inject_docs(yaml.safe_dump_all(workloads))
    assert again == workloads


@pytest.mark.parametrize("key,value,needle", [
    ("traffic.sidecar.istio.io/excludeOutboundPorts", "7,x", "'x' is not a port"),
    ("traffic.sidecar.istio.io/includeOutboundIPRanges", "10.0.0.0/40", "not a CIDR"),
    ("sidecar.istio.io/interceptionMode", "MAGIC", "REDIRECT, TPROXY or NONE"),
    ("sidecar.istio.io/proxyMemory", "lots", "not a resource quantity"),
    ("sidecar.istio.io/userVolume", "[{", "not JSON"),
    ("proxy.istio.io/config", "holdApplicationUntilProxyStarts: sometimes", "must be true or false"),
    ("status.sidecar.istio.io/port", "99999", "want a port"),
    ("sidecar.istio.io/inject", "perhaps", "want \"true\" or \"false\""),
])
def test_invalid_annotation_fails_whole_stream(key, value, needle, tmp_path):
    bad = ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: broken, namespace: shop}\nspec:\n  template:\n"
           f"    metadata:\n      annotations: {{{json.dumps(key)}: {json.dumps(value)}}}\n"
           "    spec: {containers: [{name: a, image: b}]}\n")
    proc = run_inject(WORKLOADS + "---\n" + bad, check=False)
    assert proc.returncode == 1
    assert proc.stdout == ""  # nothing half-written
    assert key in proc.stderr and "Deployment shop/broken" in proc.stderr and needle in proc.stderr, proc.stderr
    # -o FILE: the file is not created.
    out = tmp_path / "out.yaml"
    src = tmp_path / "in.yaml"
    src.write_text(bad)
    proc = subprocess.run([str(need_inject_bin()), "inject", "-f", str(src), "-o", str(out)], capture_output=True,
                          text=True)
    assert proc.returncode == 1 and not out.exists() and not (tmp_path / "out.yaml.tmp").exists()


def test_usage_errors():
    binary = str(need_inject_bin())
    assert subprocess.run([binary], capture_output=True).returncode == 2
    assert subprocess.run([binary, "frobnicate"], capture_output=True).returncode == 2
    assert subprocess.run([binary, "inject", "--nope"], capture_output=True).returncode == 2
    proc = subprocess.run([binary, "inject", "-f", "/nonexistent.yaml"], capture_output=True, text=True)
    assert proc.returncode == 1 and "/nonexistent.yaml" in proc.stderr
    proc = subprocess.run([binary, "inject"], input="a: [", capture_output=True, text=True)
    assert proc.returncode == 1 and "not YAML" in proc.stderr


def test_config_file_and_configmap(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("proxyImage: registry.example/skiff:9\nnativeSidecars: true\ncpuRequest: 50m\n")
    pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, image: b}]}\n"
    doc = inject_docs(pod, "--config", str(cfg))[0]
    proxy = container(doc["spec"], "skiff", ("initContainers",))
    assert proxy["image"] == "registry.example/skiff:9"
    assert proxy["resources"]["requests"]["cpu"] == "50m"
    # The install manifests' ConfigMap works as --config too.
    cm = REPO / "manifests" / "injector-configmap.yaml"
    doc = inject_docs(pod, "--config", str(cm))[0]
    assert container(doc["spec"], "skiff") is not None
    cfg.write_text("proxyImag: typo\n")
    proc = run_inject(pod, "--config", str(cfg), check=False)
    assert proc.returncode == 1 and "unknown key proxyImag" in proc.stderr


def test_install_manifests_pass_kubectl_type_check():
    """manifests/*.yaml: every object of a kind kubectl can decode offline is checked field by field."""
    docs = []
    for path in sorted((REPO / "manifests").glob("*.yaml")) + sorted((REPO / "manifests" / "examples").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    kinds = {d["kind"] for d in docs}
    for needed in ("Namespace", "ServiceAccount", "Role", "RoleBinding", "Deployment", "Service",
                   "MutatingWebhookConfiguration", "ConfigMap", "Pod", "EnvoyFilter"):
        assert needed in kinds, needed
    workloads = [d for d in docs if d["kind"] in ("Deployment", "Pod")]
    assert kubectl_typecheck(workloads) == []
    # The example pod injects cleanly.
    example = (REPO / "manifests" / "examples" / "my-client.pod.yaml").read_text()
    assert container(inject_docs(example)[0]["spec"], "skiff") is not None
