#!/usr/bin/python3
"""skiff-mesh: pods as network namespaces on a private bridge, each with skiff-init's capture rules, a skiff
sidecar (uid 1337) and its app (uid 1000). See mesh/README.md.

    skiff-mesh up FILE [--mode REDIRECT|TPROXY] [--ipv6]

Python API (what tests use):

    with Mesh(load_pods("mesh/examples/httpbin.yaml")) as m:
        m.exec("client", ["curl", "-s", f"http://{m.ip('server')}/headers"])
        m.admin_stats("server")["listener.0.0.0.0_15006.downstream_cx_total"]
"""
import argparse
import ctypes
import http.client
import ipaddress
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sidecar_config  # noqa: E402  (lives next to this file)

REPO = Path(__file__).resolve().parents[1]
PROXY_UID = 1337
APP_UID = 1000
NS_PREFIX = "skm-"
EXCLUDED_INBOUND = "15090,15021,15020"  # what Istio's injector always passes with -d (plus the status port)
ANNOTATION = "traffic.sidecar.istio.io/"


class MeshError(RuntimeError):
    pass


# ------------------------------------------------------------------ pod descriptions

class Pod:
    """One pod as described in the input file; addresses are filled in when a Mesh wires it."""

    def __init__(self, name, command=None, ports=(), labels=None, annotations=None, user=APP_UID, env=None):
        if not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?", name or ""):
            raise MeshError(f"bad pod name {name!r}: lower-case letters, digits and '-', at most 32")
        self.name = name
        self.command = shlex.split(command) if isinstance(command, str) else list(command or [])
        self.ports = [(int(p), proto) for p, proto in ports]
        for p, proto in self.ports:
            if not 0 < p < 65536 or proto not in ("http", "tcp"):
                raise MeshError(f"pod {name}: bad port {p}/{proto} (want 1..65535, http|tcp)")
        self.labels = dict(labels or {})
        self.annotations = {k: str(v) for k, v in (annotations or {}).items()}
        self.user = int(user)
        self.env = {k: str(v) for k, v in (env or {}).items()}
        self.k8s = None  # the Pod manifest it came from, if any: injected with skiff-inject at start-up
        self.v4 = None
        self.v6 = None

    def ips(self, ipv6=False):
        """Addresses the mesh routes to, the preferred family last."""
        return [self.v4, self.v6] if ipv6 and self.v6 else [self.v4]

    @property
    def interception_mode(self):
        return self.annotations.get("sidecar.istio.io/interceptionMode")


def _port_protocol(port):
    """Istio's protocol selection: appProtocol, else the port name's prefix (http, http2, grpc...)."""
    app = str(port.get("appProtocol", port.get("protocol", ""))).lower()
    name = str(port.get("name", "")).lower()
    if app in ("http", "http2", "grpc", "h2c") or re.match(r"^(http|http2|grpc|grpc-web|h2c)(-|$)", name):
        return "http"
    return "tcp"


def _pod_from_k8s(doc):
    meta = doc.get("metadata") or {}
    containers = (doc.get("spec") or {}).get("containers") or []
    if not containers:
        raise MeshError(f"pod {meta.get('name')}: spec.containers is empty")
    c = containers[0]
    ports = [(p["containerPort"], _port_protocol(p)) for c2 in containers for p in c2.get("ports") or []]
    env = {e["name"]: e.get("value", "") for e in c.get("env") or [] if "name" in e}
    pod = Pod(meta.get("name"), list(c.get("command") or []) + list(c.get("args") or []), ports,
              meta.get("labels"), meta.get("annotations"), env=env)
    pod.k8s = doc
    return pod


def _pod_from_simple(item):
    ports = []
    for p in item.get("ports") or []:
        ports.append((p, "tcp") if isinstance(p, int) else (p["port"], p.get("protocol", "tcp").lower()))
    return Pod(item.get("name"), item.get("command"), ports, item.get("labels"), item.get("annotations"),
               item.get("user", APP_UID), item.get("env"))


def pods_from_docs(docs):
    """Our small format ({pods: [...]}), Kubernetes Pods, or a v1 List of them."""
    pods = []
    for doc in docs:
        if not doc:
            continue
        if not isinstance(doc, dict):
            raise MeshError("each YAML document must be a mapping")
        if "pods" in doc:
            pods += [_pod_from_simple(item) for item in doc["pods"]]
        elif doc.get("kind") == "Pod":
            pods.append(_pod_from_k8s(doc))
        elif doc.get("kind") == "List":
            pods += pods_from_docs(doc.get("items") or [])
        else:
            raise MeshError(f"unsupported document (kind {doc.get('kind')!r}); want `pods:` or kind: Pod")
    names = [p.name for p in pods]
    if len(set(names)) != len(names):
        raise MeshError(f"duplicate pod names in {names}")
    if not pods:
        raise MeshError("no pods described")
    return pods


def load_pods(source):
    """A path, a YAML string, or already-parsed data (dict or list of dicts)."""
    if isinstance(source, (dict, list)):
        return pods_from_docs(source if isinstance(source, list) else [source])
    text = Path(source).read_text() if "\n" not in str(source) and Path(source).exists() else str(source)
    return pods_from_docs(list(yaml.safe_load_all(text)))


def init_flags(pod, mode="REDIRECT"):
    """skiff-init flags from the pod's annotations, as Istio's injection template derives istio-iptables'."""
    a = pod.annotations
    mode = a.get("sidecar.istio.io/interceptionMode", mode)
    if mode not in ("REDIRECT", "TPROXY"):
        raise MeshError(f"pod {pod.name}: interceptionMode {mode!r} is not REDIRECT or TPROXY")
    status_port = a.get("status.sidecar.istio.io/port", "15020")
    exclude_in = "15090,15021"
    if a.get(ANNOTATION + "excludeInboundPorts"):
        exclude_in += "," + a[ANNOTATION + "excludeInboundPorts"]
    if status_port != "0":
        exclude_in += "," + status_port
    flags = ["-p", "15001", "-z", "15006", "-u", str(PROXY_UID), "-m", mode,
             "-i", a.get(ANNOTATION + "includeOutboundIPRanges", "*"),
             "-x", a.get(ANNOTATION + "excludeOutboundIPRanges", ""),
             "-b", a.get(ANNOTATION + "includeInboundPorts", "*"),
             "-d", exclude_in]
    for key, flag in (("includeOutboundPorts", "-q"), ("excludeOutboundPorts", "-o"),
                      ("kubevirtInterfaces", "-k"), ("excludeInterfaces", "-c")):
        if a.get(ANNOTATION + key):
            flags += [flag, a[ANNOTATION + key]]
    return flags


def inject_bin():
    """skiff-inject: SKIFF_INJECT_BIN, else next to SKIFF_BIN, else build/bin."""
    env = os.environ.get("SKIFF_BIN")
    base = Path(env).parent if env else REPO / "build" / "bin"
    return Path(os.environ.get("SKIFF_INJECT_BIN", base / "skiff-inject"))


class Injection:
    """What skiff-inject made of a Pod manifest: the injected pod, skiff-init's args (None: no init container,
    e.g. interceptionMode NONE) and the skiff container (None: the pod opted out)."""

    def __init__(self, pod_doc, init_args, proxy):
        self.pod = pod_doc
        self.init_args = init_args
        self.proxy = proxy

    @property
    def proxy_ids(self):
        sc = (self.proxy or {}).get("securityContext") or {}
        return sc.get("runAsUser", PROXY_UID), sc.get("runAsGroup", PROXY_UID)


def inject_pod(pod, mode="REDIRECT", binary=None):
    """Runs the pod's manifest (with its current, substituted annotations) through `skiff-inject inject`. The mesh's
    default mode applies when the pod does not choose one, as a mesh-wide interceptionMode would."""
    doc = json.loads(json.dumps(pod.k8s))
    meta = doc.setdefault("metadata", {})
    meta["annotations"] = dict(pod.annotations)
    if mode != "REDIRECT":
        meta["annotations"].setdefault("sidecar.istio.io/interceptionMode", mode)
    if not meta["annotations"]:
        del meta["annotations"]
    binary = binary or inject_bin()
    proc = subprocess.run([str(binary), "inject", "-f", "-"], input=yaml.safe_dump(doc), capture_output=True,
                          text=True, timeout=30)
    if proc.returncode != 0:
        raise MeshError(f"pod {pod.name}: skiff-inject refused it: {proc.stderr.strip()}")
    out = next(d for d in yaml.safe_load_all(proc.stdout) if d)
    spec = out.get("spec") or {}
    everything = (spec.get("initContainers") or []) + (spec.get("containers") or [])
    init = next((c for c in everything if c.get("command") == ["skiff-init"]), None)
    status = (out.get("metadata") or {}).get("annotations", {}).get("sidecar.istio.io/status")
    proxy = None
    if status:
        names = (json.loads(status).get("containers") or []) + (json.loads(status).get("initContainers") or [])
        proxy = next((c for c in everything if c["name"] in names and c is not init), None)
    return Injection(out, init["args"] if init else None, proxy)


# ------------------------------------------------------------------ namespaces

def _run(args, check=True, timeout=30, **kw):
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise MeshError(f"`{shlex.join(map(str, args))}` failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def ns_socket(netns, family=socket.AF_INET, kind=socket.SOCK_STREAM):
    """A socket created inside `netns` (setns on a short-lived thread; the socket stays in that namespace)."""
    out = {}

    def make():
        try:
            with open(f"/run/netns/{netns}") as f:
                if _libc().setns(f.fileno(), 0x40000000) != 0:  # CLONE_NEWNET
                    raise OSError(ctypes.get_errno(), f"setns {netns}")
            out["sock"] = socket.socket(family, kind)
        except OSError as e:
            out["error"] = e

    t = threading.Thread(target=make)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["sock"]


class _NsHTTPConnection(http.client.HTTPConnection):
    def __init__(self, netns, host, port, timeout=5):
        super().__init__(host, port, timeout=timeout)
        self._netns = netns

    def connect(self):
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self.sock = ns_socket(self._netns, family)
        self.sock.settimeout(self.timeout)
        self.sock.connect((self.host, self.port))


def leftovers(run_id=None):
    """Namespaces of ours still present (of one run, or of any)."""
    names = _run(["ip", "netns", "list"]).stdout.split()
    prefix = NS_PREFIX + (f"{run_id}-" if run_id else "")
    return [n for n in names if n.startswith(prefix)]


def wait_until(cond, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def _default_bin(name):
    env = os.environ.get("SKIFF_BIN")
    base = Path(env).parent if env else REPO / "build" / "bin"
    return Path(os.environ.get("SKIFF_INIT_BIN" if name == "skiff-init" else "SKIFF_BIN", base / name))


class Mesh:
    """Context manager: `with Mesh(pods) as m:` builds every pod; leaving (or an error) tears it all down."""

    def __init__(self, pods, mode="REDIRECT", ipv6=False, skiff_bin=None, init_bin=None, skiff_args=(),
                 validate=True, inject=True, sidecar=True, log=None, config_hook=None):
        """inject=False: plain pods (no rules, no sidecar; the "direct" baseline). sidecar=False: capture
        rules but no skiff (what is captured then has nowhere to go). A pod annotated
        sidecar.istio.io/inject: "false" is always plain. config_hook(pod, bootstrap) -> bootstrap edits each
        sidecar's config before it is written (mesh/mtls_config.py: Istio-style mTLS)."""
        if not (isinstance(pods, list) and pods and all(isinstance(p, Pod) for p in pods)):
            pods = load_pods(pods)
        self.pods = {p.name: p for p in pods}
        self.mode = mode
        self.ipv6 = ipv6
        self.skiff_bin = Path(skiff_bin) if skiff_bin else _default_bin("skiff")
        self.init_bin = Path(init_bin) if init_bin else _default_bin("skiff-init")
        self.skiff_args = list(skiff_args)
        self.validate = validate
        self.inject = inject
        self.sidecar = sidecar
        self.log = log or (lambda msg: None)
        self.config_hook = config_hook
        self.run_id = None
        self.workdir = None
        self.procs = []  # (pod, role, Popen)
        self.injections = {}  # pod name -> Injection, for pods given as Kubernetes manifests
        self._namespaces = []
        for b in (self.skiff_bin, self.init_bin):
            if not b.exists():
                raise MeshError(f"{b} not found (build it, or set SKIFF_BIN / SKIFF_INIT_BIN)")

    # ---- naming and addressing
    def netns(self, pod):
        return f"{NS_PREFIX}{self.run_id}-{pod}"

    @property
    def bridge_ns(self):
        return f"{NS_PREFIX}{self.run_id}--net"

    def ip(self, pod, v6=None):
        p = self.pods[pod]
        return p.v6 if (self.ipv6 if v6 is None else v6) else p.v4

    def _pick_run(self):
        taken = {n.split("-")[1] for n in leftovers()}
        while True:
            run_id = secrets.token_hex(3)
            if run_id not in taken:
                return run_id

    def _subnets(self):
        n = int(self.run_id, 16)
        v4 = ipaddress.ip_network(f"10.{64 + (n >> 16) % 128}.{(n >> 8) & 255}.0/24")
        g = f"{n:06x}{secrets.token_hex(2)}"  # ULA: fd + 40-bit global id
        v6 = ipaddress.ip_network(f"fd{g[:2]}:{g[2:6]}:{g[6:10]}::/64")
        return v4, v6

    # ---- lifecycle
    def __enter__(self):
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc):
        self.down()

    def up(self):
        self.run_id = self._pick_run()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"skiff-mesh-{self.run_id}-"))
        os.chmod(self.workdir, 0o755)
        v4net, v6net = self._subnets()
        hosts4, hosts6 = v4net.hosts(), v6net.hosts()
        gw4, gw6 = str(next(hosts4)), str(next(hosts6))
        self.subnet4, self.subnet6 = str(v4net), str(v6net)
        for pod in self.pods.values():
            pod.v4 = str(next(hosts4))
            pod.v6 = str(next(hosts6)) if self.ipv6 else None
        self._add_ns(self.bridge_ns)
        self._ns_run(self.bridge_ns, "ip", "link", "add", "br0", "type", "bridge")
        self._ns_run(self.bridge_ns, "ip", "addr", "add", f"{gw4}/{v4net.prefixlen}", "dev", "br0")
        if self.ipv6:
            self._ns_run(self.bridge_ns, "ip", "addr", "add", f"{gw6}/64", "dev", "br0", "nodad")
        self._ns_run(self.bridge_ns, "ip", "link", "set", "br0", "up")
        for i, pod in enumerate(self.pods.values()):
            self._wire(pod, i, gw4, gw6, v4net.prefixlen)
        for pod in self.pods.values():
            self._substitute(pod)
            pod_dir = self.workdir / pod.name
            pod_dir.mkdir()
            os.chmod(pod_dir, 0o755)
            self._start_pod(pod)
        return self

    def _add_ns(self, name):
        _run(["ip", "netns", "add", name])
        self._namespaces.append(name)
        self._ns_run(name, "ip", "link", "set", "lo", "up")

    def _ns_run(self, ns, *args, check=True, **kw):
        return _run(["ip", "netns", "exec", ns, *map(str, args)], check=check, **kw)

    def _wire(self, pod, index, gw4, gw6, prefixlen):
        ns = self.netns(pod.name)
        self._add_ns(ns)
        host_if = f"v{index}"
        self._ns_run(self.bridge_ns, "ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0",
                     "netns", ns)
        self._ns_run(self.bridge_ns, "ip", "link", "set", host_if, "master", "br0", "up")
        self._ns_run(ns, "ip", "addr", "add", f"{pod.v4}/{prefixlen}", "dev", "eth0")
        self._ns_run(ns, "ip", "link", "set", "eth0", "up")
        self._ns_run(ns, "ip", "route", "add", "default", "via", gw4)
        # Apps bind their declared ports (80...) as uid 1000, as containers may.
        self._ns_run(ns, "sysctl", "-qw", "net.ipv4.ip_unprivileged_port_start=0")
        if self.ipv6:
            self._ns_run(ns, "ip", "addr", "add", f"{pod.v6}/64", "dev", "eth0", "nodad")
            self._ns_run(ns, "ip", "-6", "route", "add", "default", "via", gw6)
            # The inbound passthrough source for IPv6 must be bindable.
            self._ns_run(ns, "ip", "addr", "add", "::6/128", "dev", "lo", "nodad")

    def _substitute(self, pod):
        """{{ip:NAME}}, {{ip6:NAME}} and {{subnet}} in annotations, command and env (addresses are per run)."""
        def sub(text):
            text = text.replace("{{subnet}}", self.subnet4).replace("{{subnet6}}", self.subnet6)
            return re.sub(r"\{\{(ip6?):([a-z0-9-]+)\}\}",
                          lambda m: str(self.ip(m.group(2), m.group(1) == "ip6")), text)
        pod.annotations = {k: sub(v) for k, v in pod.annotations.items()}
        pod.command = [sub(c) for c in pod.command]
        pod.env = {k: sub(v) for k, v in pod.env.items()}

    def injected(self, pod):
        if pod in self.injections:
            return self.inject and self.injections[pod].proxy is not None
        return self.inject and self.pods[pod].annotations.get("sidecar.istio.io/inject", "true") != "false"

    def _start_pod(self, pod):
        # Kubernetes manifests go through skiff-inject (when built): the init flags and the proxy's ids come from
        # the injected pod, so interception follows the annotations exactly as in a cluster.
        if self.inject and pod.k8s is not None and inject_bin().exists():
            self.injections[pod.name] = inject_pod(pod, self.mode)
            self.log(f"[{pod.name}] injected by skiff-inject")
        if self.injected(pod.name):
            self._start_sidecar(pod)
        if pod.command:
            self._start_app(pod)

    def _start_sidecar(self, pod):
        ns = self.netns(pod.name)
        injection = self.injections.get(pod.name)
        flags = list(injection.init_args) if injection and injection.init_args is not None else \
            None if injection else init_flags(pod, self.mode)
        if flags is not None:
            if self.validate:
                flags += ["--run-validation"]
            self.log(f"[{pod.name}] skiff-init {shlex.join(flags)}")
            self._ns_run(ns, self.init_bin, *flags)
        tproxy = flags is not None and "TPROXY" in flags
        if not self.sidecar:
            return
        config = self.workdir / pod.name / "skiff.json"
        bootstrap = sidecar_config.bootstrap(pod, self.pods.values(), tproxy, self.ipv6)
        if self.config_hook:
            bootstrap = self.config_hook(pod, bootstrap)
        config.write_text(json.dumps(bootstrap, indent=1))
        os.chmod(config, 0o644)
        # REDIRECT: uid/gid 1337. TPROXY: uid 0 (IP_TRANSPARENT needs it) with gid 1337, as Istio runs it. An
        # injected pod says so itself (the skiff container's runAsUser/runAsGroup).
        uid, gid = injection.proxy_ids if injection else (0 if tproxy else PROXY_UID, PROXY_UID)
        ids = (["--reuid", str(uid)] if uid != 0 else []) + ["--regid", str(gid)]
        self._spawn(pod, "skiff", ["setpriv", *ids, "--clear-groups", str(self.skiff_bin), "-c", str(config),
                                   "--concurrency", "1", "--service-node", pod.name, *self.skiff_args])
        ready = lambda: self.admin_status(pod.name, "/ready") == 200  # noqa: E731
        wait_until(lambda: not self._alive(pod, "skiff") or ready(), timeout=20)
        if not self._alive(pod, "skiff") or not ready():
            raise MeshError(f"[{pod.name}] skiff did not become ready:\n{self.logs(pod.name, 'skiff')}")

    def _start_app(self, pod):
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/tmp", "POD_NAME": pod.name,
               "POD_IP": self.ip(pod.name), **pod.env}
        self._spawn(pod, "app", ["setpriv", "--reuid", str(pod.user), "--regid", str(pod.user), "--clear-groups",
                                 *pod.command], env=env)
        for port, _ in pod.ports:
            wait_until(lambda: not self._alive(pod, "app") or self._listening(pod.name, port), timeout=30)
            if not self._alive(pod, "app") or not self._listening(pod.name, port):
                raise MeshError(f"[{pod.name}] app is not listening on {port}:\n{self.logs(pod.name, 'app')}")

    def _spawn(self, pod, role, argv, env=None):
        log = open(self.workdir / pod.name / f"{role}.log", "wb")
        proc = subprocess.Popen(["ip", "netns", "exec", self.netns(pod.name), *argv], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                env=env)
        log.close()
        self.procs.append((pod.name, role, proc))
        return proc

    def _proc(self, pod, role):
        return next((p for n, r, p in self.procs if n == pod.name and r == role), None)

    def _alive(self, pod, role):
        proc = self._proc(pod, role)
        return proc is not None and proc.poll() is None

    def _listening(self, pod, port):
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            s = ns_socket(self.netns(pod), family)
            try:
                s.settimeout(1)
                s.connect((host, port))
                return True
            except OSError:
                pass
            finally:
                s.close()
        return False

    def logs(self, pod, role):
        path = self.workdir / pod / f"{role}.log" if self.workdir else None
        return path.read_text(errors="replace")[-4000:] if path and path.exists() else ""

    def down(self):
        for _, _, proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for _, _, proc in reversed(self.procs):
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        self.procs = []
        for ns in reversed(self._namespaces):
            _run(["ip", "netns", "del", ns], check=False)
        self._namespaces = []
        if self.workdir and not os.environ.get("SKIFF_MESH_KEEP"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    # ---- using the pods
    def exec(self, pod, cmd, user=None, check=False, timeout=30, **kw):
        """Runs cmd in the pod as its app (uid 1000 by default; user=0 for root)."""
        uid = self.pods[pod].user if user is None else user
        prefix = [] if uid == 0 else ["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups"]
        cmd = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
        return _run(["ip", "netns", "exec", self.netns(pod), *prefix, *cmd], check=check, timeout=timeout, **kw)

    def spawn(self, pod, cmd, user=None, role=None):
        """Starts a background process in the pod (stopped on teardown); output in the pod's workdir."""
        uid = self.pods[pod].user if user is None else user
        prefix = [] if uid == 0 else ["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups"]
        cmd = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
        return self._spawn(self.pods[pod], role or f"extra{len(self.procs)}", [*prefix, *cmd])

    def admin_get(self, pod, path, port=sidecar_config.ADMIN_PORT, host="127.0.0.1"):
        conn = _NsHTTPConnection(self.netns(pod), host, port)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read().decode(errors="replace")
        finally:
            conn.close()

    def admin_status(self, pod, path):
        try:
            return self.admin_get(pod, path)[0]
        except OSError:
            return None

    def admin_stats(self, pod):
        """Counters and gauges as {name: int} (admin /stats text: `name: value`)."""
        status, body = self.admin_get(pod, "/stats")
        if status != 200:
            raise MeshError(f"[{pod}] /stats answered {status}")
        out = {}
        for line in body.splitlines():
            name, _, value = line.rpartition(": ")
            if name and value.strip().lstrip("-").isdigit():
                out[name] = int(value)
        return out

    def describe(self):
        lines = [f"skiff-mesh run {self.run_id} ({self.mode}{', IPv6' if self.ipv6 else ''}); "
                 f"files in {self.workdir}"]
        for pod in self.pods.values():
            addrs = " ".join(a for a in (pod.v4, pod.v6) if a)
            ports = ",".join(f"{p}/{proto}" for p, proto in pod.ports) or "-"
            lines.append(f"  {pod.name:<12} {addrs:<40} ports {ports:<14} ip netns exec {self.netns(pod.name)} bash")
        return "\n".join(lines)


# ------------------------------------------------------------------ command line

def main(argv=None):
    p = argparse.ArgumentParser(prog="skiff-mesh", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="build the mesh, run until SIGINT/SIGTERM, tear it down")
    up.add_argument("file", help="pods YAML (our `pods:` format or Kubernetes Pod manifests)")
    up.add_argument("--mode", choices=["REDIRECT", "TPROXY"], default="REDIRECT",
                    help="default interception mode (a pod's sidecar.istio.io/interceptionMode wins)")
    up.add_argument("--ipv6", action="store_true", help="also give pods IPv6 (ULA) addresses; mesh over IPv6")
    up.add_argument("--no-validation", action="store_true", help="skip skiff-init --run-validation")
    up.add_argument("--plain", action="store_true", help="no capture rules and no sidecars (a baseline)")
    sub.add_parser("leftovers", help="list skm-* namespaces left by crashed runs")
    a = p.parse_args(argv)
    if a.cmd == "leftovers":
        print("\n".join(leftovers()))
        return 0
    if os.geteuid() != 0:
        print("skiff-mesh: needs root (network namespaces, nftables)", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        mesh = Mesh(load_pods(a.file), mode=a.mode, ipv6=a.ipv6, validate=not a.no_validation, inject=not a.plain,
                    log=lambda msg: print(msg, flush=True))
        with mesh:
            print(mesh.describe(), flush=True)
            print("ready; Ctrl-C tears everything down", flush=True)
            while not stop.wait(0.5):
                dead = [(n, r) for n, r, proc in mesh.procs if proc.poll() is not None and r in ("skiff", "app")]
                if dead:
                    for n, r in dead:
                        print(f"[{n}] {r} exited:\n{mesh.logs(n, r)}", file=sys.stderr)
                    return 1
        print("torn down", flush=True)
        return 0
    except (MeshError, OSError, yaml.YAMLError) as e:
        print(f"skiff-mesh: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
