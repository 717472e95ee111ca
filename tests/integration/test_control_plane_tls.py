"""Rotation of the control-plane channel's TLS files: Istio renews the workload certificate and can rotate
istiod's root in place; the sidecar must use the new files for its next connection to the control plane
without a restart."""

import json
import os
import shutil

import pytest

from helpers import wait_until
from test_xds_server import Lines, SERVER, CDS
from test_xds_tls import envoy_grpc_bootstrap
from tls_helpers import CERTS_BIN, Pki

pytestmark = pytest.mark.skipif(not SERVER.exists(), reason=f"build skiff-xds-server first ({SERVER})")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if not CERTS_BIN.exists():
        pytest.skip(f"skiff-certs not built: {CERTS_BIN}")
    p = Pki(tmp_path_factory.mktemp("pki"))
    p.new_ca = p.other_ca("new-ca")
    # The control plane and the sidecar's identity, once under the old root and once under the new one.
    p.istiod_old = p.workload("istiod-old", "istio-system", "istiod", "--dns", "localhost")
    p.istiod_new = p.workload("istiod-new", "istio-system", "istiod", "--dns", "localhost", ca=p.new_ca)
    p.client_old = p.workload("client-old", "shop", "cart")
    p.client_new = p.workload("client-new", "shop", "cart", ca=p.new_ca)
    return p


def start_server(identity, client_ca, tmp_path, address="127.0.0.1:0", version="1"):
    s = Lines([str(SERVER), "--address", address, "--tls-cert", str(identity / "cert-chain.pem"),
               "--tls-key", str(identity / "key.pem"), "--tls-client-ca", str(client_ca)])
    hello = s.read()
    assert hello["event"] == "listening", hello
    s.port = hello["port"]
    # Loaded until the server's version is `version`: a restarted control plane must not look up to date to
    # a sidecar that reconnects with the versions it already has, or it would send nothing to ACK.
    for step in range(1, int(version) + 1):
        name = f"from-cp-{version}" if step == int(version) else f"placeholder-{step}"
        snap = tmp_path / f"snap-{version}-{step}.json"
        snap.write_text(json.dumps({"clusters": [{"name": name, "type": "STATIC", "connect_timeout": "1s",
                                                  "load_assignment": {"cluster_name": name, "endpoints": []}}]}))
        reply = s.command(f"load {snap}")
        assert reply["ok"], reply
    assert reply["version"] == version, reply
    s.version = version
    return s


def acked(server):
    reqs = [r for r in server.command("requests")["requests"] if r["type_url"] == CDS]
    return any(r["version_info"] == server.version and r["error_detail"] is None and r["response_nonce"]
               for r in reqs)


def install(files, src_dir, root):
    """Replaces the sidecar's files the way a file-based agent does: each file renamed into place."""
    for name, src in (("key.pem", src_dir / "key.pem"), ("cert-chain.pem", src_dir / "cert-chain.pem"),
                      ("root-cert.pem", root)):
        tmp = files / f".{name}.tmp"
        shutil.copyfile(src, tmp)
        os.replace(tmp, files / name)


def files_tls_context(files):
    """The ADS cluster's UpstreamTlsContext, every credential read from `files` (so it can rotate)."""
    return {"sni": "localhost", "common_tls_context": {
        "tls_certificates": [{"certificate_chain": {"filename": str(files / "cert-chain.pem")},
                              "private_key": {"filename": str(files / "key.pem")}}],
        "validation_context": {"trusted_ca": {"filename": str(files / "root-cert.pem")}}}}


def test_rotated_files_are_used_for_the_next_control_plane_connection(pki, skiff_factory, tmp_path):
    files = tmp_path / "certs"
    files.mkdir()
    install(files, pki.client_old, pki.root)
    old = start_server(pki.istiod_old, pki.root, tmp_path)
    port = old.port
    new = None
    try:
        skiff = skiff_factory(envoy_grpc_bootstrap(port, files_tls_context(files)))
        assert wait_until(lambda: acked(old)), skiff.logs
        assert skiff.stats()["control_plane.connected_state"] == 1

        # Rotate to a new root and a certificate it signed; the old control plane goes away and comes back
        # on the same address with a chain only the new root verifies, accepting only new client certificates.
        install(files, pki.client_new, pki.new_ca / "root-cert.pem")
        old.close()
        old = None
        assert wait_until(lambda: skiff.stats()["control_plane.connected_state"] == 0, timeout=10)
        new = start_server(pki.istiod_new, pki.new_ca / "root-cert.pem", tmp_path, address=f"127.0.0.1:{port}",
                           version="2")
        assert wait_until(lambda: acked(new), timeout=30), skiff.logs
        assert wait_until(lambda: skiff.stats()["control_plane.connected_state"] == 1)
        assert wait_until(lambda: "from-cp-2" in skiff.admin_get("/clusters")[1])
    finally:
        if old is not None:
            old.close()
        if new is not None:
            new.close()


def test_a_control_plane_the_current_root_does_not_sign_is_refused(pki, skiff_factory, tmp_path):
    # The negative of the rotation: without new files the same restart never connects.
    files = tmp_path / "certs"
    files.mkdir()
    install(files, pki.client_old, pki.root)
    old = start_server(pki.istiod_old, pki.root, tmp_path)
    port = old.port
    new = None
    try:
        skiff = skiff_factory(envoy_grpc_bootstrap(port, files_tls_context(files)))
        assert wait_until(lambda: acked(old)), skiff.logs
        old.close()
        old = None
        new = start_server(pki.istiod_new, pki.new_ca / "root-cert.pem", tmp_path, address=f"127.0.0.1:{port}",
                           version="2")
        assert not wait_until(lambda: new.command("requests")["requests"], timeout=4)
        assert skiff.stats()["control_plane.connected_state"] == 0
    finally:
        if old is not None:
            old.close()
        if new is not None:
            new.close()
