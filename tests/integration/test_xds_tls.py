"""TLS to the control plane: the ADS channel takes its credentials from the xDS cluster's transport_socket
(UpstreamTlsContext: trusted CA, client certificate, SNI) or from google_grpc ssl_credentials."""

import json

import pytest

from helpers import wait_until
from test_xds_server import Lines, SERVER, CDS
from tls_helpers import CERTS_BIN, Pki

UPSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
ADS = {"ads": {}, "resource_api_version": "V3"}

pytestmark = pytest.mark.skipif(not SERVER.exists(), reason=f"build skiff-xds-server first ({SERVER})")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if not CERTS_BIN.exists():
        pytest.skip(f"skiff-certs not built: {CERTS_BIN}")
    p = Pki(tmp_path_factory.mktemp("pki"))
    p.istiod = p.workload("istiod", "istio-system", "istiod", "--dns", "localhost", "--dns", "istiod.local")
    p.client = p.workload("client", "shop", "cart")
    p.foreign_ca = p.other_ca()
    return p


def tls_server(pki, tmp_path, mtls=False):
    args = [str(SERVER), "--tls-cert", str(pki.istiod / "cert-chain.pem"), "--tls-key", str(pki.istiod / "key.pem")]
    if mtls:
        args += ["--tls-client-ca", str(pki.root)]
    s = Lines(args)
    hello = s.read()
    assert hello["event"] == "listening", hello
    s.port = hello["port"]
    snap = tmp_path / "snap.json"
    snap.write_text(json.dumps({"clusters": [{"name": "from-cp", "type": "STATIC", "connect_timeout": "1s",
                                              "load_assignment": {"cluster_name": "from-cp", "endpoints": []}}]}))
    assert s.command(f"load {snap}")["ok"]
    return s


def envoy_grpc_bootstrap(port, tls_context):
    cluster = {"name": "xds-grpc", "type": "STATIC", "connect_timeout": "1s",
               "load_assignment": {"cluster_name": "xds-grpc", "endpoints": [{"lb_endpoints": [{"endpoint": {
                   "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]},
               "transport_socket": {"name": "envoy.transport_sockets.tls",
                                    "typed_config": {"@type": UPSTREAM_TLS, **tls_context}}}
    return {"node": {"id": "sidecar~127.0.0.1~tls.default~default.svc.cluster.local", "cluster": "tls"},
            "dynamic_resources": {"ads_config": {"api_type": "GRPC", "transport_api_version": "V3",
                                                 "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}]},
                                  "cds_config": {**ADS, "initial_fetch_timeout": "1s"}},
            "static_resources": {"clusters": [cluster]}}


def got_clusters(server):
    reqs = [r for r in server.command("requests")["requests"] if r["type_url"] == CDS]
    return any(r["version_info"] == "1" and r["error_detail"] is None for r in reqs)


def test_envoy_grpc_cluster_transport_socket_with_sni(pki, skiff_factory, tmp_path):
    server = tls_server(pki, tmp_path)
    try:
        skiff = skiff_factory(envoy_grpc_bootstrap(server.port, {
            "sni": "istiod.local",
            "common_tls_context": {"validation_context": {"trusted_ca": {"filename": str(pki.root)}}}}))
        assert wait_until(lambda: got_clusters(server)), skiff.logs
        assert skiff.stats()["control_plane.connected_state"] == 1
        assert "from-cp" in skiff.admin_get("/clusters")[1]
    finally:
        server.close()


def test_mutual_tls_with_a_client_certificate(pki, skiff_factory, tmp_path):
    server = tls_server(pki, tmp_path, mtls=True)
    try:
        skiff = skiff_factory(envoy_grpc_bootstrap(server.port, {
            "sni": "localhost",
            "common_tls_context": {
                "tls_certificates": [{"certificate_chain": {"filename": str(pki.client / "cert-chain.pem")},
                                      "private_key": {"filename": str(pki.client / "key.pem")}}],
                "validation_context": {"trusted_ca": {"filename": str(pki.root)}}}}))
        assert wait_until(lambda: got_clusters(server)), skiff.logs
    finally:
        server.close()


def test_google_grpc_ssl_credentials(pki, skiff_factory, tmp_path):
    server = tls_server(pki, tmp_path)
    try:
        config = envoy_grpc_bootstrap(server.port, {})
        config["static_resources"]["clusters"] = []
        config["dynamic_resources"]["ads_config"]["grpc_services"] = [{"google_grpc": {
            "target_uri": f"localhost:{server.port}", "stat_prefix": "xds",
            "channel_credentials": {"ssl_credentials": {"root_certs": {"filename": str(pki.root)}}}}}]
        skiff = skiff_factory(config)
        assert wait_until(lambda: got_clusters(server)), skiff.logs
    finally:
        server.close()


def test_untrusted_control_plane_is_never_talked_to(pki, skiff_factory, tmp_path):
    server = tls_server(pki, tmp_path)
    try:
        skiff = skiff_factory(envoy_grpc_bootstrap(server.port, {
            "sni": "localhost",
            "common_tls_context": {"validation_context": {
                "trusted_ca": {"filename": str(pki.foreign_ca / "root-cert.pem")}}}}))
        # Ready after the CDS initial_fetch_timeout, never connected, and the server saw no request.
        assert skiff.stats()["control_plane.connected_state"] == 0
        assert not wait_until(lambda: server.command("requests")["requests"], timeout=1.5)
    finally:
        server.close()


def test_unusable_control_plane_tls_is_a_config_error(pki, skiff_bin, tmp_path):
    import subprocess
    config = envoy_grpc_bootstrap(1, {"common_tls_context": {"validation_context": {
        "trusted_ca": {"filename": str(tmp_path / "missing.pem")}}}})
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(config))
    proc = subprocess.run([str(skiff_bin), "--mode", "validate", "-c", str(path)], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode != 0
    assert "transport_socket.typed_config.common_tls_context.validation_context.trusted_ca.filename" in \
        proc.stdout + proc.stderr
