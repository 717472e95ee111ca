"""End to end in the local netns mesh (issue 8, "Must be shown by tests" item 6): pods written as Kubernetes Pod
YAML with Istio annotations are run through skiff-inject by the mesh tool, which installs skiff-init with the
injected init container's flags and runs skiff with the injected container's ids; interception then follows the
annotations: excludeInboundPorts, excludeOutboundPorts, and sidecar.istio.io/inject: "false". Needs root; every
namespace is named skm-<run>-* and always deleted."""
import os
import re
import shutil
import subprocess
import sys

import pytest

from inject_helpers import REPO, need_inject_bin

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, str(REPO / "mesh"))

import skiff_mesh  # noqa: E402
from skiff_mesh import Mesh, load_pods  # noqa: E402

PYTHON = "/usr/bin/python3"
APPS = os.path.join(HERE, "mesh_apps.py")
CLIENT = os.path.join(HERE, "mesh_client.py")

PODS = f"""\
apiVersion: v1
kind: Pod
metadata:
  name: server
  labels: {{app: server}}
  annotations:
    traffic.sidecar.istio.io/excludeInboundPorts: "9002"
spec:
  containers:
    - name: server
      image: unused
      command: [{PYTHON}, {APPS}]
      args: ["9001:whoami", "9002:whoami", "9003:whoami"]
      ports: [{{containerPort: 9001}}, {{containerPort: 9002}}, {{containerPort: 9003}}]
---
apiVersion: v1
kind: Pod
metadata:
  name: client
  annotations:
    traffic.sidecar.istio.io/excludeOutboundPorts: "9003"
spec:
  containers:
    - name: client
      image: unused
      command: [sleep, infinity]
---
apiVersion: v1
kind: Pod
metadata:
  name: plain
  labels: {{sidecar.istio.io/inject: "false"}}
spec:
  containers:
    - name: plain
      image: unused
      command: [{PYTHON}, {APPS}, "9001:whoami"]
      ports: [{{containerPort: 9001}}]
"""


def _why_not():
    if os.geteuid() != 0:
        return "the mesh needs root (network namespaces, nftables)"
    if not shutil.which("ip") or not shutil.which("setpriv"):
        return "the ip and setpriv tools are needed"
    probe = f"skm-probe{os.getpid()}i"
    if subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode != 0:
        return "`ip netns add` is not permitted here"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    for name in ("skiff", "skiff-init"):
        if not skiff_mesh._default_bin(name).exists():
            return f"{name} not built"
    return ""


@pytest.fixture(scope="module")
def mesh(request):
    why = _why_not()
    if why:
        pytest.skip(why)
    need_inject_bin()
    m = Mesh(load_pods(PODS))
    try:
        m.up()
    except BaseException:
        m.down()
        raise
    request.addfinalizer(m.down)
    return m


def whoami(m, pod, host, port):
    proc = m.exec(pod, [PYTHON, CLIENT, host, str(port)])
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def outbound_cx(m, pod):
    stats = m.admin_stats(pod)
    pat = re.compile(r"^listener\.(0\.0\.0\.0|::|\[::\]|__)_(\d+)\.downstream_cx_total$")
    return sum(v for k, v in stats.items() if (mm := pat.match(k)) and mm.group(2) not in ("15006", "15021", "15090"))


def inbound_cx(m, pod):
    stats = m.admin_stats(pod)
    return sum(v for k, v in stats.items() if re.match(r"^listener\.(0\.0\.0\.0|::|\[::\]|__)_15006\."
                                                       r"downstream_cx_total$", k))


def test_pods_went_through_skiff_inject(mesh):
    client = mesh.injections["client"]
    assert client.init_args[client.init_args.index("-o") + 1] == "9003"
    server = mesh.injections["server"]
    assert server.init_args[server.init_args.index("-d") + 1] == "15090,15021,9002,15020"
    assert server.proxy["name"] == "skiff" and server.proxy_ids == (1337, 1337)
    assert mesh.injections["plain"].proxy is None and mesh.injections["plain"].init_args is None
    assert not mesh.injected("plain") and mesh.injected("client")
    # The rules in the client's namespace are the ones those flags make.
    proc = mesh.exec("client", ["nft", "list", "ruleset"], user=0)
    assert proc.returncode == 0 and "9003" in proc.stdout, proc.stdout[-2000:]
    assert mesh.exec("plain", ["nft", "list", "ruleset"], user=0).stdout.strip() == ""


def test_captured_both_ways(mesh):
    out0, in0 = outbound_cx(mesh, "client"), inbound_cx(mesh, "server")
    assert whoami(mesh, "client", mesh.ip("server"), 9001).startswith("peer=127.0.0.6 ")
    assert outbound_cx(mesh, "client") == out0 + 1
    assert inbound_cx(mesh, "server") == in0 + 1


def test_exclude_inbound_ports_annotation(mesh):
    out0, in0 = outbound_cx(mesh, "client"), inbound_cx(mesh, "server")
    # 9002 is excluded from the server's inbound capture: the app sees the client's own address.
    assert whoami(mesh, "client", mesh.ip("server"), 9002).startswith(f"peer={mesh.ip('client')} ")
    assert inbound_cx(mesh, "server") == in0
    assert outbound_cx(mesh, "client") == out0 + 1


def test_exclude_outbound_ports_annotation(mesh):
    out0, in0 = outbound_cx(mesh, "client"), inbound_cx(mesh, "server")
    # 9003 bypasses the client's sidecar but is still captured inbound at the server.
    assert whoami(mesh, "client", mesh.ip("server"), 9003).startswith("peer=127.0.0.6 ")
    assert outbound_cx(mesh, "client") == out0
    assert inbound_cx(mesh, "server") == in0 + 1


def test_opted_out_pod_has_no_sidecar(mesh):
    out0 = outbound_cx(mesh, "client")
    assert whoami(mesh, "client", mesh.ip("plain"), 9001).startswith(f"peer={mesh.ip('client')} ")
    assert outbound_cx(mesh, "client") == out0 + 1
    assert mesh.admin_status("plain", "/ready") is None  # nothing listens on 15000 there


def test_bad_annotation_stops_the_mesh_and_cleans_up():
    why = _why_not()
    if why:
        pytest.skip(why)
    need_inject_bin()
    bad = PODS.replace('excludeOutboundPorts: "9003"', 'excludeOutboundPorts: "9003,nope"')
    m = Mesh(load_pods(bad))
    with pytest.raises(skiff_mesh.MeshError, match="excludeOutboundPorts"):
        with m:
            pass
    assert skiff_mesh.leftovers(m.run_id) == []
