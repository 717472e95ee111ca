"""skiff-inject webhook (issue 8, "Must be shown by tests" item 3): a real HTTPS round trip with an AdmissionReview
(certificate from skiff-certs, verified by the client), the returned JSONPatch applied to the pod equals the CLI's
output, a malformed review gets 400 with a message, an opted-out pod is allowed with no patch."""
import base64
import http.client
import json
import re
import signal
import ssl
import subprocess
import time

import pytest
import yaml

from inject_helpers import CERTS_BIN, apply_patch, inject_docs, need_inject_bin, need_shared

SEED_FALLBACK = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "my-client", "labels": {"app": "my-client"}, "annotations": {
        "sidecar.istio.io/userVolume": '[{"name":"my-wasm-filter","configMap":{"name":"my-wasm-filter"}}]',
        "sidecar.istio.io/userVolumeMount": '[{"name":"my-wasm-filter","mountPath":"/var/local/wasm"}]'}},
    "spec": {"containers": [{"name": "my-client", "image": "nicolaka/netshoot:v0.13",
                             "command": ["sleep", "infinity"]}]},
}


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if not CERTS_BIN.exists():
        pytest.skip(f"skiff-certs not built: {CERTS_BIN}")
    d = tmp_path_factory.mktemp("webhook-certs")
    subprocess.run([str(CERTS_BIN), "ca", "init", "--out", str(d / "ca")], check=True, capture_output=True)
    subprocess.run([str(CERTS_BIN), "workload", "--ca-dir", str(d / "ca"), "--out", str(d / "webhook"), "--ns",
                    "skiff-system", "--sa", "skiff-injector", "--dns", "localhost", "--dns",
                    "skiff-injector.skiff-system.svc", "--ip", "127.0.0.1"], check=True, capture_output=True)
    return d


@pytest.fixture(scope="module")
def webhook(certs, tmp_path_factory):
    binary = need_inject_bin()
    log = tmp_path_factory.mktemp("webhook-log") / "stderr"
    with open(log, "wb") as err:
        proc = subprocess.Popen([str(binary), "webhook", "--cert", str(certs / "webhook" / "cert-chain.pem"),
                                 "--key", str(certs / "webhook" / "key.pem"), "--listen", "127.0.0.1:0"],
                                stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 10
    port = None
    while time.monotonic() < deadline and port is None and proc.poll() is None:
        m = re.search(r"listening on https://127\.0\.0\.1:(\d+)", log.read_text())
        port = int(m.group(1)) if m else None
        if port is None:
            time.sleep(0.05)  # polling the log with a deadline
    if port is None:
        proc.kill()
        proc.wait()
        pytest.fail(f"webhook did not start: {log.read_text()}")
    ctx = ssl.create_default_context(cafile=str(certs / "ca" / "root-cert.pem"))
    yield port, ctx
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def post(webhook, body, path="/inject", conn=None):
    port, ctx = webhook
    own = conn is None
    conn = conn or http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
    try:
        conn.request("POST", path, body=body if isinstance(body, (bytes, str)) else json.dumps(body),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type"), resp.read().decode()
    finally:
        if own:
            conn.close()


def review(pod, uid="3f1c", namespace="default"):
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": uid, "kind": {"group": "", "version": "v1", "kind": "Pod"},
                        "resource": {"group": "", "version": "v1", "resource": "pods"}, "namespace": namespace,
                        "operation": "CREATE", "object": pod}}


def seed_pod():
    path = need_shared("fixtures", "seeds", "my-client.pod.yaml")
    return next(d for d in yaml.safe_load_all(path.read_text()) if d)


def test_round_trip_patch_equals_cli(webhook):
    pod = seed_pod()
    status, ctype, body = post(webhook, review(pod))
    assert status == 200 and ctype == "application/json", body
    resp = json.loads(body)
    assert resp["apiVersion"] == "admission.k8s.io/v1" and resp["kind"] == "AdmissionReview"
    r = resp["response"]
    assert r["uid"] == "3f1c" and r["allowed"] is True and r["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(r["patch"]))
    assert all(op["op"] in ("add", "replace", "remove") for op in patch)
    patched = apply_patch(pod, patch)
    cli = inject_docs(yaml.safe_dump(pod))[0]
    assert patched == cli


def test_namespace_comes_from_the_request(webhook):
    pod = dict(SEED_FALLBACK)
    _, _, body = post(webhook, review(pod, namespace="shop"))
    patched = apply_patch(pod, json.loads(base64.b64decode(json.loads(body)["response"]["patch"])))
    proxy = next(c for c in patched["spec"]["containers"] if c["name"] == "skiff")
    env = {e["name"]: e.get("value") for e in proxy["env"]}
    assert env["ISTIO_META_OWNER"] == "kubernetes://apis/v1/namespaces/shop/pods/my-client"
    assert "namespace" not in patched["metadata"]  # the patch does not invent fields the API server sets


def test_opted_out_pod_is_allowed_without_patch(webhook):
    pod = json.loads(json.dumps(SEED_FALLBACK))
    pod["metadata"]["labels"]["sidecar.istio.io/inject"] = "false"
    status, _, body = post(webhook, review(pod, uid="opt-out"))
    assert status == 200
    r = json.loads(body)["response"]
    assert r == {"uid": "opt-out", "allowed": True}


def test_bad_annotation_is_denied_naming_it(webhook):
    pod = json.loads(json.dumps(SEED_FALLBACK))
    pod["metadata"]["annotations"]["traffic.sidecar.istio.io/includeInboundPorts"] = "80,http"
    status, _, body = post(webhook, review(pod))
    assert status == 200
    r = json.loads(body)["response"]
    assert r["allowed"] is False and "patch" not in r
    assert "traffic.sidecar.istio.io/includeInboundPorts" in r["result"]["message"]
    assert "Pod default/my-client" in r["result"]["message"]


@pytest.mark.parametrize("body,needle", [
    ("", "empty body"),
    ("{not json", "not JSON"),
    (json.dumps({"apiVersion": "v1", "kind": "Pod"}), "not an AdmissionReview"),
    (json.dumps({"apiVersion": "admission.k8s.io/v2", "kind": "AdmissionReview", "request": {}}), "apiVersion"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}), "no request"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"object": {}}}),
     "uid"),
])
def test_malformed_review_is_400(webhook, body, needle):
    status, ctype, text = post(webhook, body)
    assert status == 400, text
    assert ctype.startswith("text/plain") and needle in text


def test_keep_alive_and_health(webhook):
    port, ctx = webhook
    conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
    try:
        for uid in ("a", "b", "c"):
            status, _, body = post(webhook, review(json.loads(json.dumps(SEED_FALLBACK)), uid=uid), conn=conn)
            assert status == 200 and json.loads(body)["response"]["uid"] == uid
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == b"ok\n"
    finally:
        conn.close()


def test_untrusted_client_ca_fails_the_handshake(webhook):
    """The certificate really is checked: a client trusting another CA refuses the server."""
    port, _ = webhook
    ctx = ssl.create_default_context()  # system CAs only
    conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
    with pytest.raises(ssl.SSLError):
        conn.request("GET", "/healthz")
    conn.close()


def test_bad_certificate_is_a_startup_error(tmp_path):
    binary = need_inject_bin()
    (tmp_path / "c.pem").write_text("not a certificate\n")
    proc = subprocess.run([str(binary), "webhook", "--cert", str(tmp_path / "c.pem"), "--key",
                           str(tmp_path / "c.pem"), "--listen", "127.0.0.1:0"], capture_output=True, text=True,
                          timeout=10)
    assert proc.returncode == 1 and "c.pem" in proc.stderr
