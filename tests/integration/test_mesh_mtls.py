"""Issue 5, "Must be shown" 3: mutual TLS in the netns mesh, in the shape istiod sends for STRICT mTLS.

Pods (mesh/skiff_mesh.py, REDIRECT interception by skiff-init, a skiff sidecar each) with skiff-certs
identities spiffe://cluster.local/ns/default/sa/<pod>; mesh/mtls_config.py adds Istio's auto-mTLS cluster
shape (transport_socket_matches tlsMode istio, SDS-named secrets default/ROOTCA, the peer's SPIFFE ID checked)
and a STRICT virtualInbound (client certificate required, URI SAN matcher, XFCC APPEND_FORWARD).
- client → server: the client app speaks plain HTTP/TCP; its sidecar originates mTLS and checks the server's
  ID; the server's sidecar checks the client's ID and the server app asserts XFCC carries the client's URI.
- impostor: a pod whose certificate names another service account: the client's sidecar refuses it (503 UF).
- outsider (no sidecar) → STRICT inbound: plaintext, a wrong SAN, another trust domain, an expired
  certificate, a foreign CA and no certificate are refused in every one of 20 attempts each; the same probe
  with the client's credentials is served (so the probe itself can succeed).
Namespaces are skm-<run>-*, always deleted (checked after teardown).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = Path(os.environ.get("SKIFF_SOURCE_DIR", HERE.parents[1]))
sys.path.insert(0, str(REPO / "mesh"))

import skiff_mesh  # noqa: E402
from mtls_config import MeshMtls  # noqa: E402
from skiff_mesh import Mesh, load_pods  # noqa: E402
from tls_helpers import CERTS_BIN, Pki  # noqa: E402

PYTHON = "/usr/bin/python3"
APP = str(HERE / "tls_mesh_app.py")
APPS = str(HERE / "mesh_apps.py")
PROBE = str(HERE / "tls_mesh_probe.py")
CLIENT = str(HERE / "mesh_client.py")
TD = "cluster.local"
ATTEMPTS = 20
PROXY_UID = 1337


def sid(sa, ns="default", td=TD):
    return f"spiffe://{td}/ns/{ns}/sa/{sa}"


def _why_not():
    if os.geteuid() != 0:
        return "the mesh needs root (network namespaces, nftables)"
    if not shutil.which("ip") or not shutil.which("setpriv") or not shutil.which("curl"):
        return "ip, setpriv and curl are needed"
    probe = f"skm-probe{os.getpid()}m"
    if subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode != 0:
        return "`ip netns add` is not permitted here"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    for name in ("skiff", "skiff-init"):
        if not skiff_mesh._default_bin(name).exists():
            return f"{name} not built: {skiff_mesh._default_bin(name)}"
    if not CERTS_BIN.exists():
        return f"skiff-certs not built: {CERTS_BIN}"
    return ""


def make_pki(base):
    """Credentials readable by the sidecars (uid 1337) through a world-traversable directory."""
    pki = Pki(base / "pki")
    pki.client = pki.workload("client", "default", "client")
    pki.server = pki.workload("server", "default", "server")
    pki.impostor = pki.workload("impostor", "default", "not-impostor")
    pki.intruder = pki.workload("intruder", "default", "intruder")
    pki.other_td = pki.workload("other-td", "default", "client", "--trust-domain", "evil.example")
    pki.expired = pki.workload("expired", "default", "client", "--hours", "1", "--backdate", "2h")
    pki.foreign_ca = pki.other_ca()
    pki.foreign = pki.workload("foreign", "default", "client", ca=pki.foreign_ca)
    for d in [base, *base.rglob("*")]:
        if d.is_dir():
            os.chmod(d, 0o755)
    for d in (pki.client, pki.server, pki.impostor):
        for f in d.iterdir():
            os.chown(f, PROXY_UID, PROXY_UID)
    return pki


def pods():
    return load_pods({"pods": [
        {"name": "server",
         "command": ["sh", "-c", f"{PYTHON} {APPS} 9000:echo & exec {PYTHON} {APP} 80 {sid('client')}"],
         "ports": [{"port": 80, "protocol": "http"}, 9000]},
        {"name": "impostor", "command": [PYTHON, APP, "80", sid("client")],
         "ports": [{"port": 80, "protocol": "http"}]},
        {"name": "client", "command": ["sleep", "infinity"]},
        {"name": "outsider", "annotations": {"sidecar.istio.io/inject": "false"}, "command": ["sleep", "infinity"]},
    ]})


@pytest.fixture(scope="module")
def mesh():
    why = _why_not()
    if why:
        pytest.skip(why)
    base = Path(tempfile.mkdtemp(prefix="skiff-mtls-"))
    m = None
    try:
        pki = make_pki(base)
        hook = MeshMtls({"client": pki.client, "server": pki.server, "impostor": pki.impostor}, pki.root,
                        allowed_peers=[sid("client")])
        m = Mesh(pods(), config_hook=hook)
        m.pki = pki
        try:
            m.up()
        except BaseException:
            m.down()
            raise
        yield m
    finally:
        run_id = m.run_id if m else None
        if m:
            m.down()
        shutil.rmtree(base, ignore_errors=True)
        if run_id:
            assert skiff_mesh.leftovers(run_id) == [], "namespaces left behind"


def stat(stats, suffix, prefix=""):
    return sum(v for k, v in stats.items() if k.startswith(prefix) and k.endswith(suffix))


def curl(m, pod, url):
    proc = m.exec(pod, ["curl", "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}", url])
    assert proc.returncode == 0, proc.stderr
    body, _, code = proc.stdout.rpartition("\n")
    return int(code), body


def probe(m, *args, count=ATTEMPTS):
    proc = m.exec("outsider", [PYTHON, PROBE, m.ip("server"), *map(str, args[:1]), str(count), *map(str, args[1:])],
                  user=0, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_config_has_istios_auto_mtls_shape(tmp_path):
    import sidecar_config
    ps = pods()
    for i, p in enumerate(ps):
        p.v4 = f"10.0.0.{i + 2}"
    hook = MeshMtls({"client": "/c", "server": "/s"}, "/root.pem", allowed_peers=[sid("client")])
    client = hook(ps[2], sidecar_config.bootstrap(ps[2], ps))
    clusters = {c["name"]: c for c in client["static_resources"]["clusters"]}
    out = clusters["outbound|80||server"]
    assert [m["name"] for m in out["transport_socket_matches"]] == ["tlsMode-istio", "tlsMode-disabled"]
    ctx = out["transport_socket_matches"][0]["transport_socket"]["typed_config"]
    assert ctx["sni"] == "outbound_.80_._.server.default.svc.cluster.local"
    assert ctx["common_tls_context"]["combined_validation_context"]["default_validation_context"] == {
        "match_subject_alt_names": [{"exact": sid("server")}]}
    ep = out["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert ep["metadata"]["filter_metadata"]["envoy.transport_socket_match"] == {"tlsMode": "istio"}
    assert {s["name"] for s in client["static_resources"]["secrets"]} == {"default", "ROOTCA"}
    server = hook(ps[0], sidecar_config.bootstrap(ps[0], ps))
    inbound = next(l for l in server["static_resources"]["listeners"] if l["name"] == "virtualInbound")
    assert all(c["filter_chain_match"]["transport_protocol"] == "tls" for c in inbound["filter_chains"])
    assert all(c["transport_socket"]["typed_config"]["require_client_certificate"] for c in inbound["filter_chains"])
    hcm = inbound["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["forward_client_cert_details"] == "APPEND_FORWARD"
    # The generated config is valid for skiff.
    cfg = tmp_path / "server.json"
    cfg.write_text(json.dumps(server))
    skiff = skiff_mesh._default_bin("skiff")
    if not skiff.exists():
        pytest.skip("skiff not built")
    proc = subprocess.run([str(skiff), "--mode", "validate", "-c", str(cfg)], capture_output=True, text=True,
                          timeout=30)
    # Files /s/... do not exist: validation names them (the shape itself parsed).
    assert proc.returncode != 0 and "/s/cert-chain.pem" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_client_to_server_over_mtls_with_spiffe_ids_and_xfcc(mesh):
    server = mesh.ip("server")
    before_c = mesh.admin_stats("client")
    before_s = mesh.admin_stats("server")
    for _ in range(ATTEMPTS):
        code, body = curl(mesh, "client", f"http://{server}/")
        assert code == 200, body  # the app answers 403 unless XFCC names the client
        seen = json.loads(body)
        assert seen["uri"] == sid("client")
        assert f"By={sid('server')}" in seen["xfcc"] and f"URI={sid('client')}" in seen["xfcc"]
    after_c = mesh.admin_stats("client")
    after_s = mesh.admin_stats("server")
    # The client's sidecar made TLS connections (handshakes) to the server's inbound, which saw TLS.
    assert stat(after_c, "outbound|80||server.ssl.handshake") > stat(before_c, "outbound|80||server.ssl.handshake")
    assert stat(after_s, ".ssl.handshake", "listener.") > stat(before_s, ".ssl.handshake", "listener.")
    assert stat(after_s, ".ssl.no_certificate", "listener.") == stat(before_s, ".ssl.no_certificate", "listener.")


def test_tcp_over_mtls_is_byte_exact(mesh):
    before = stat(mesh.admin_stats("client"), "outbound|9000||server.ssl.handshake")
    proc = mesh.exec("client", [PYTHON, CLIENT, mesh.ip("server"), "9000", "300007"])
    assert proc.returncode == 0 and proc.stdout.strip() == "ok 300007", proc.stdout + proc.stderr
    assert stat(mesh.admin_stats("client"), "outbound|9000||server.ssl.handshake") == before + 1


def test_client_refuses_a_server_with_another_identity(mesh):
    before = stat(mesh.admin_stats("client"), "outbound|80||impostor.ssl.fail_verify_san")
    for _ in range(3):
        code, body = curl(mesh, "client", f"http://{mesh.ip('impostor')}/")
        assert code == 503, body
    assert stat(mesh.admin_stats("client"), "outbound|80||impostor.ssl.fail_verify_san") >= before + 3


@pytest.mark.parametrize("case", ["plaintext", "no-cert", "wrong-san", "other-trust-domain", "expired", "foreign-ca"])
def test_strict_inbound_refuses_every_attempt(mesh, case):
    pki = mesh.pki
    root = pki.root
    args = {"plaintext": (80, "plain"), "no-cert": (80, "tls", root), "wrong-san": (80, "tls", root, pki.intruder),
            "other-trust-domain": (80, "tls", root, pki.other_td), "expired": (80, "tls", root, pki.expired),
            "foreign-ca": (80, "tls", root, pki.foreign)}[case]
    before = mesh.admin_stats("server")
    result = probe(mesh, *args)
    assert result["served"] == 0 and result["refused"] == ATTEMPTS, result
    after = mesh.admin_stats("server")
    counter = {"plaintext": "listener.0.0.0.0_15006.no_filter_chain_match",
               "no-cert": "listener.0.0.0.0_15006.ssl.fail_verify_no_cert",
               "wrong-san": "listener.0.0.0.0_15006.ssl.fail_verify_san",
               "other-trust-domain": "listener.0.0.0.0_15006.ssl.fail_verify_san",
               "expired": "listener.0.0.0.0_15006.ssl.fail_verify_error",
               "foreign-ca": "listener.0.0.0.0_15006.ssl.fail_verify_error"}[case]
    assert after.get(counter, 0) - before.get(counter, 0) >= ATTEMPTS, (counter, after.get(counter))
    # Plaintext to a declared TCP port is refused too.
    if case == "plaintext":
        tcp = mesh.exec("outsider", [PYTHON, "-c", PLAINTEXT_TCP_PROBE, mesh.ip("server"), "9000"], user=0)
        assert tcp.returncode == 0, (tcp.stdout, tcp.stderr)
        # The sidecar must close (or reset/refuse) the connection without echoing a byte.
        assert tcp.stdout.strip() in ("closed 0", "reset", "refused"), (tcp.stdout, tcp.stderr)


# Plaintext to a TCP port: sends bytes, half-closes, reports how the connection ended ("closed <bytes read>",
# "reset", "refused" or "timeout"); any other outcome is a crash with a traceback and a non-zero status.
PLAINTEXT_TCP_PROBE = """
import errno, socket, sys
try:
    conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
    conn.sendall(b"x" * 1000)
    conn.shutdown(socket.SHUT_WR)
    got = 0
    while chunk := conn.recv(65536):
        got += len(chunk)
    print(f"closed {got}")
except ConnectionRefusedError:
    print("refused")
except socket.timeout:
    print("timeout")
except (ConnectionResetError, BrokenPipeError):
    print("reset")
except OSError as e:  # ENOTCONN from shutdown(): the peer already reset the connection
    if e.errno != errno.ENOTCONN:
        raise
    print("reset")
"""


def test_the_probe_with_the_clients_credentials_is_served(mesh):
    """Control for the refusals above: same probe, right certificate → every attempt served by the app.

    The probe closes each connection as soon as it has the status line, with the rest of the response
    unread (a reset): the server's sidecar must take that as a write error. It once died of SIGPIPE there
    (OpenSSL's socket BIO wrote with write(2)), which under ASan's slowdown cost about half the attempts."""
    for _ in range(3):
        result = probe(mesh, 80, "tls", mesh.pki.root, mesh.pki.client)
        assert mesh.admin_status("server", "/ready") == 200, ("the server's sidecar died", result,
                                                               mesh.logs("server", "skiff"))
        assert result["served"] == ATTEMPTS and set(result["statuses"]) == {200}, result
