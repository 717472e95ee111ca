"""skiff-inject against Istio's own kube-inject golden files (issue 8, "Must be shown by tests" item 2).

For each `X.yaml` with an `X.yaml.injected` in ../shared/fixtures/inject/, the init flags, ports, volumes, mounts
(and the security contexts, probes, resources and env that carry the same meaning) we produce are compared field
by field with what istiod produced. Istio's test values use native sidecars, so we inject with --native-sidecars
(the pod annotation sidecar.istio.io/nativeSidecar: "false" still wins, as in Istio).

Intended differences, each asserted below rather than ignored:
  D1 names: our containers are `skiff-init` / `skiff` (Istio: `istio-init` / `istio-proxy`); the status annotation
     lists those names.
  D2 init args: Istio's start with the `istio-iptables` subcommand and end with `--log_output_level=...`; skiff-init
     is its own binary (command [skiff-init]) and has no Istio logging flags. Every other flag is identical.
  D3 ports: we also declare 15021 (`http-health`, the readiness port) besides 15090.
  D4 volumes: Istio's golden output writes `{name: workload-socket}` with no source (the API server defaults it to
     emptyDir); we write `emptyDir: {}` explicitly.
  D5 proxy args: skiff takes Envoy's flags, so `--proxyLogLevel=L` is `--log-level L` and `--proxyComponentLogLevel=C`
     is `--component-log-level C`; pilot-agent's `proxy sidecar --domain ...` has no counterpart (skiff gets the
     node id and a bootstrap instead).
  D6 env: no GOMEMLIMIT (a Go runtime knob; skiff is C++); we add ISTIO_METAJSON_LABELS (node metadata the agent
     would read from the downward API). ISTIO_META_POD_PORTS and PROXY_CONFIG are compared as JSON.
  D7 no preStop `pilot-agent request POST drain`: skiff drains by itself on SIGTERM (--drain-time-s).
  D8 prometheus.io/port is 15090 (skiff's /stats/prometheus), not 15020: there is no agent to merge metrics.
  D9 app containers: Istio's serializer adds `resources: {}` to them; we leave the app containers byte-identical.
The CNI variant (`*.cni.injected`) is not compared: skiff-inject has no CNI mode.
"""
import json

import pytest
import yaml

from inject_helpers import SHARED, container, inject_docs, need_inject_bin, pod_meta, pod_spec

FIXTURES = SHARED / "fixtures" / "inject"
PAIRS = sorted(p.name[:-len(".injected")] for p in FIXTURES.glob("*.yaml.injected")) if FIXTURES.is_dir() else []


@pytest.fixture(scope="module", autouse=True)
def _needs():
    need_inject_bin()
    if not FIXTURES.is_dir():
        pytest.skip(f"../shared not present ({FIXTURES} is missing)")


def _workload(text):
    return next(d for d in yaml.safe_load_all(text) if d and d.get("kind") != "List")


@pytest.fixture(scope="module", params=PAIRS or ["(none)"])
def pair(request):
    name = request.param
    if name == "(none)":
        pytest.skip("no fixture pairs")
    src = (FIXTURES / name).read_text()
    istio = _workload((FIXTURES / (name + ".injected")).read_text())
    ours = inject_docs(src, "--native-sidecars")
    assert len(ours) == 1
    return name, _workload(src), istio, ours[0]


def _containers(obj, init_name, proxy_name):
    spec = pod_spec(obj)
    return container(spec, init_name, ("initContainers",)), container(spec, proxy_name)


def test_proxy_placement_matches(pair):
    name, _, istio, ours = pair
    i_spec, o_spec = pod_spec(istio), pod_spec(ours)
    i_native = container(i_spec, "istio-proxy", ("initContainers",)) is not None
    o_native = container(o_spec, "skiff", ("initContainers",)) is not None
    assert i_native == o_native, name
    rename = {"istio-init": "skiff-init", "istio-proxy": "skiff"}  # D1
    assert [rename.get(c["name"], c["name"]) for c in i_spec.get("initContainers", [])] == \
           [c["name"] for c in o_spec.get("initContainers", [])]
    assert [rename.get(c["name"], c["name"]) for c in i_spec["containers"]] == [c["name"] for c in o_spec["containers"]]
    if i_native:
        assert container(o_spec, "skiff")["restartPolicy"] == container(i_spec, "istio-proxy")["restartPolicy"]


def test_init_flags(pair):
    name, _, istio, ours = pair
    i_init, _ = _containers(istio, "istio-init", "istio-proxy")
    o_init, _ = _containers(ours, "skiff-init", "skiff")
    assert i_init["args"][0] == "istio-iptables"  # D2
    assert i_init["args"][-1].startswith("--log_output_level=")
    assert o_init["command"] == ["skiff-init"]
    assert o_init["args"] == i_init["args"][1:-1], name
    for field in ("securityContext", "resources", "env"):
        assert o_init.get(field) == i_init.get(field), f"{name}: init {field}"


def test_ports(pair):
    name, _, istio, ours = pair
    _, i_proxy = _containers(istio, "istio-init", "istio-proxy")
    _, o_proxy = _containers(ours, "skiff-init", "skiff")
    extra = {"containerPort": 15021, "name": "http-health", "protocol": "TCP"}  # D3
    assert o_proxy["ports"] == i_proxy["ports"] + [extra], name


def _normalize_volume(v):
    if set(v) == {"name"}:  # D4
        return {"name": v["name"], "emptyDir": {}}
    return v


def test_volumes(pair):
    name, src, istio, ours = pair
    i_vols = [_normalize_volume(v) for v in pod_spec(istio)["volumes"]]
    assert pod_spec(ours)["volumes"] == i_vols, name
    status_i = json.loads(pod_meta(istio)["annotations"]["sidecar.istio.io/status"])
    status_o = json.loads(pod_meta(ours)["annotations"]["sidecar.istio.io/status"])
    assert status_o["volumes"] == status_i["volumes"]
    assert status_o["revision"] == status_i["revision"]


def test_mounts(pair):
    name, _, istio, ours = pair
    _, i_proxy = _containers(istio, "istio-init", "istio-proxy")
    _, o_proxy = _containers(ours, "skiff-init", "skiff")
    assert o_proxy["volumeMounts"] == i_proxy["volumeMounts"], name


def test_proxy_security_probes_resources(pair):
    name, _, istio, ours = pair
    _, i_proxy = _containers(istio, "istio-init", "istio-proxy")
    _, o_proxy = _containers(ours, "skiff-init", "skiff")
    for field in ("securityContext", "readinessProbe", "startupProbe", "resources"):
        assert o_proxy.get(field) == i_proxy.get(field), f"{name}: {field}"
    assert "lifecycle" not in o_proxy and "preStop" in i_proxy.get("lifecycle", {"preStop": 1})  # D7


def test_proxy_args_carry_the_same_settings(pair):
    name, _, istio, ours = pair
    _, i_proxy = _containers(istio, "istio-init", "istio-proxy")
    _, o_proxy = _containers(ours, "skiff-init", "skiff")
    i_args = i_proxy["args"]
    assert i_args[:2] == ["proxy", "sidecar"]  # D5
    flags = dict(a.split("=", 1) for a in i_args if a.startswith("--") and "=" in a)
    o_args = o_proxy["args"]
    assert o_args[o_args.index("--log-level") + 1] == flags["--proxyLogLevel"]
    assert o_args[o_args.index("--component-log-level") + 1] == flags["--proxyComponentLogLevel"]


def test_env(pair):
    name, _, istio, ours = pair
    _, i_proxy = _containers(istio, "istio-init", "istio-proxy")
    _, o_proxy = _containers(ours, "skiff-init", "skiff")
    i_env = {e["name"]: e for e in i_proxy["env"]}
    o_env = {e["name"]: e for e in o_proxy["env"]}
    assert set(i_env) - set(o_env) == {"GOMEMLIMIT"}, name  # D6
    assert set(o_env) - set(i_env) <= {"ISTIO_METAJSON_LABELS", "ISTIO_PROMETHEUS_ANNOTATIONS"}
    for key in set(i_env) - {"GOMEMLIMIT"}:
        if key in ("ISTIO_META_POD_PORTS", "PROXY_CONFIG"):
            assert json.loads(o_env[key]["value"]) == json.loads(i_env[key]["value"]), f"{name}: {key}"
        else:
            assert o_env[key] == i_env[key], f"{name}: {key}"
    # Same order for the variables both have (proxyMetadata last, as Istio).
    common = [k for k in i_env if k in o_env]
    assert [k for k in o_env if k in i_env] == common


def test_metadata(pair):
    name, src, istio, ours = pair
    i_meta, o_meta = pod_meta(istio), pod_meta(ours)
    assert o_meta["labels"] == i_meta["labels"], name
    i_ann = dict(i_meta["annotations"])
    o_ann = dict(o_meta["annotations"])
    assert o_ann.pop("prometheus.io/port") == "15090" and i_ann.pop("prometheus.io/port") == "15020"  # D8
    status_i = json.loads(i_ann.pop("sidecar.istio.io/status"))
    status_o = json.loads(o_ann.pop("sidecar.istio.io/status"))
    rename = {"istio-init": "skiff-init", "istio-proxy": "skiff"}  # D1
    for key in ("initContainers", "containers"):
        assert status_o[key] == ([rename[n] for n in status_i[key]] if status_i[key] else None)
    assert o_ann == i_ann


def test_app_containers_untouched(pair):
    name, src, istio, ours = pair
    src_apps = pod_spec(src)["containers"]
    o_apps = [c for c in pod_spec(ours)["containers"] if c["name"] != "skiff"]
    i_apps = [c for c in pod_spec(istio)["containers"] if c["name"] != "istio-proxy"]
    assert o_apps == src_apps
    assert [dict(c, resources={}) for c in o_apps] == i_apps  # D9
