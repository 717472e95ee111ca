"""TLS configuration delivered over ADS (issue 5).
- SDS ("Must be shown" 4, the pushed-Secret half): a new version of an ADS-pushed Secret rotates the
  listener's certificate while traffic runs. New TLS connections keep arriving during the push and none fails;
  a keep-alive connection opened before the push keeps working; new handshakes present the new
  serial. (The file half, `skiff-certs renew` under load, is
  test_tls.py::test_file_sds_rotation_keeps_live_connections.)
- transport_socket_matches over EDS: an endpoint without labels takes the match its locality's metadata
  (LocalityLbEndpoints.metadata) names, as Envoy falls back to it after every endpoint-level match failed.
"""
import socket
import threading
import time

import json

from helpers import free_port, http_listener, request, wait_until
from test_xds_sds import (ADS, SDS, acked, backend_cluster, bootstrap, cert_secret, echo, leaf_serial,  # noqa: F401
                          pki, push, served_serial, tls_listener, xds_server)
from tls_helpers import EchoBackend, client_context, tls_get, upstream_tls


def keep_alive_get(conn):
    """One GET on an open TLS connection; the status line's code."""
    conn.sendall(b"GET /live HTTP/1.1\r\nhost: localhost\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, "the keep-alive connection was closed"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int([l for l in head.decode().split("\r\n") if l.lower().startswith("content-length")][0]
                 .split(":")[1])
    while len(rest) < length:
        rest += conn.recv(65536)
    return head.split(b" ")[1]


def test_pushed_secret_rotates_under_load_without_failures(pki, echo, xds_server, skiff_factory, tmp_path):
    port = free_port()
    push(xds_server, tmp_path / "v1.json",
         {"listeners": [tls_listener(port)], "clusters": [backend_cluster(echo.port)],
          "secrets": [cert_secret("server-cert", pki.a)]}, "load")
    skiff = skiff_factory(bootstrap(xds_server.port), wait_ready=False)
    assert wait_until(lambda: served_serial(port, pki) == leaf_serial(pki.a), timeout=20), skiff.logs

    live = client_context(pki.root).wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                                                server_hostname="localhost")
    stop, outcomes = threading.Event(), []

    def load():
        while not stop.is_set():
            try:
                outcomes.append(tls_get(port, client_context(pki.root))[0])
            except (OSError, ConnectionError) as e:
                outcomes.append(repr(e))

    loader = threading.Thread(target=load)
    try:
        assert keep_alive_get(live) == b"200"
        loader.start()
        assert wait_until(lambda: len(outcomes) >= 5)
        v2 = push(xds_server, tmp_path / "v2.json", {"secrets": [cert_secret("server-cert", pki.b)]})
        pushed = time.monotonic()
        assert wait_until(lambda: served_serial(port, pki) == leaf_serial(pki.b)), skiff.logs
        took = time.monotonic() - pushed
        assert wait_until(lambda: acked(xds_server, SDS, v2["version"]))
        count = len(outcomes)
        assert wait_until(lambda: len(outcomes) >= count + 5)
    finally:
        stop.set()
        if loader.is_alive():
            loader.join()
    try:
        assert len(outcomes) >= 10 and set(outcomes) == {200}, outcomes
        assert keep_alive_get(live) == b"200"  # opened before the push, still served
    finally:
        live.close()
    assert took < 5, f"the pushed certificate took {took:.2f} s to reach new handshakes"
    assert skiff.proc.poll() is None, skiff.logs


def test_eds_locality_metadata_selects_the_transport_socket(pki, xds_server, skiff_factory, tmp_path):
    tls_backend = EchoBackend(tls_files=(pki.a / "cert-chain.pem", pki.a / "key.pem"), name="tls")
    plain_backend = EchoBackend(name="plain")
    try:
        def locality(zone, port, labels):
            group = {"locality": {"zone": zone}, "lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}
            if labels:
                group["metadata"] = {"filter_metadata": {"envoy.transport_socket_match": labels}}
            return group

        cluster = {"name": "mesh", "type": "EDS", "connect_timeout": "1s",
                   "eds_cluster_config": {"eds_config": ADS},
                   # No catch-all entry (Istio's `match: {}` would take every unlabelled endpoint first).
                   "transport_socket_matches": [{"name": "tlsMode-istio", "match": {"tlsMode": "istio"},
                                                 "transport_socket": upstream_tls(root=pki.root)}]}
        endpoints = {"cluster_name": "mesh", "endpoints": [
            locality("z-mesh", tls_backend.port, {"tlsMode": "istio"}),
            locality("z-legacy", plain_backend.port, None)]}
        listener = http_listener("out", [{"match": {"prefix": "/"}, "route": {"cluster": "mesh"}}])
        port = free_port()
        listener["address"]["socket_address"]["port_value"] = port
        push(xds_server, tmp_path / "v1.json",
             {"listeners": [listener], "clusters": [cluster], "endpoints": [endpoints]}, "load")
        skiff = skiff_factory(bootstrap(xds_server.port), wait_ready=False, concurrency=1)
        assert wait_until(lambda: request(port, "/")[0] == 200, timeout=20), skiff.logs
        seen = {}
        for _ in range(8):
            r = request(port, "/")
            assert r[0] == 200, r
            body = json.loads(r[2])
            seen.setdefault(body["backend"], set()).add(body["tls"])
        assert seen == {"tls": {True}, "plain": {False}}, seen
        assert skiff.stats().get("cluster.mesh.ssl.handshake", 0) >= 1
    finally:
        tls_backend.close()
        plain_backend.close()
