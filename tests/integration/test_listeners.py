"""Listeners as Envoy runs them inside a pod: several filter chains chosen by FilterChainMatch, listener
filters (tls_inspector, http_inspector, original_dst) and the use_original_dst hand-off to bind_to_port:false
listeners. Loopback only, except the hand-off test, which runs skiff in a network namespace it creates."""

import itertools
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from helpers import Skiff, free_port, raw_exchange, request, status_of, wait_until

_names = itertools.count()

HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
TLS_INSPECTOR = {"name": "envoy.filters.listener.tls_inspector", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}}
HTTP_INSPECTOR = {"name": "envoy.filters.listener.http_inspector", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"}}


def hcm(stat_prefix, body):
    """An HTTP connection manager whose only route answers `body` and names the chain in a header."""
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": HCM_TYPE,
        "stat_prefix": stat_prefix,
        "route_config": {"name": stat_prefix, "virtual_hosts": [{
            "name": "all", "domains": ["*"],
            "response_headers_to_add": [{"header": {"key": "x-chain", "value": stat_prefix}}],
            "routes": [{"match": {"prefix": "/"},
                        "direct_response": {"status": 200, "body": {"inline_string": body}}}]}]},
        "http_filters": [{"name": "envoy.filters.http.router"}],
    }}


def chain(name, stat_prefix, match=None):
    c = {"name": name, "filters": [hcm(stat_prefix, name)]}
    if match is not None:
        c["filter_chain_match"] = match
    return c


def listener(name, address, port, chains, **extra):
    l = {"name": name, "address": {"socket_address": {"address": address, "port_value": port}},
         "filter_chains": chains}
    l.update(extra)
    return l


def config(*listeners):
    return {"static_resources": {"listeners": list(listeners), "clusters": []}}


def tls_hello(port, server_name, alpn=None):
    """Sends a real ClientHello (Python's ssl) and gives up on the handshake, whatever comes back."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname=server_name) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError):
            pass


def test_chains_by_sni_and_transport_protocol(skiff_factory):
    port = free_port()
    s = skiff_factory(config(listener(
        "edge", "127.0.0.1", port,
        [chain("exact", "exact", {"server_names": ["api.example.com"]}),
         chain("wildcard", "wildcard", {"server_names": ["*.example.com"]}),
         chain("plain", "plain", {"transport_protocol": "raw_buffer"})],
        stat_prefix="edge", listener_filters=[TLS_INSPECTOR])))

    tls_hello(port, "api.example.com", ["h2", "http/1.1"])
    tls_hello(port, "www.example.com")
    tls_hello(port, "www.example.com")
    tls_hello(port, "elsewhere.org")  # TLS, but no chain takes it: no raw_buffer, no name
    status, headers, body = request(port, "/")
    assert (status, headers.get("x-chain"), body) == (200, "plain", b"plain")

    def counted():
        st = s.stats()
        return st if st.get("listener.edge.no_filter_chain_match") == 1 else None

    st = wait_until(counted)
    assert st, s.stats()
    assert st["http.exact.downstream_cx_total"] == 1
    assert st["http.wildcard.downstream_cx_total"] == 2
    assert st["http.plain.downstream_cx_total"] == 1
    assert st["tls_inspector.tls_found"] == 4
    assert st["tls_inspector.sni_found"] == 4
    assert st["tls_inspector.alpn_found"] == 1
    assert st["tls_inspector.tls_not_found"] == 1
    # The listener counts the connections it served; the unmatched one never became a connection.
    assert wait_until(lambda: s.stats()["listener.edge.downstream_cx_total"] == 4)


def test_http_inspector_no_match_and_listener_filter_timeout(skiff_factory):
    strict, lenient = free_port(), free_port()
    s = skiff_factory(config(
        listener("strict", "127.0.0.1", strict,
                 [chain("h11", "h11", {"application_protocols": ["http/1.1"]}),
                  chain("h10", "h10", {"application_protocols": ["http/1.0"]})],
                 stat_prefix="strict", listener_filters=[HTTP_INSPECTOR], listener_filters_timeout="0.3s"),
        listener("lenient", "127.0.0.1", lenient, [chain("h11", "lenient_h11", {"application_protocols": ["http/1.1"]})],
                 default_filter_chain=chain("fallback", "fallback"), stat_prefix="lenient",
                 listener_filters=[HTTP_INSPECTOR], listener_filters_timeout="0.3s",
                 continue_on_listener_filters_timeout=True)))

    status, headers, body = request(strict, "/")
    assert (status, headers.get("x-chain")) == (200, "h11")
    raw, _ = raw_exchange(strict, b"GET / HTTP/1.0\r\n\r\n")
    # The h10 chain took it (its HCM refuses HTTP/1.0 with 426, as Envoy's does by default).
    assert status_of(raw) == 426
    assert s.stats()["http.h10.downstream_cx_total"] == 1
    # Not HTTP: no chain matches and the connection is closed without a byte.
    raw, closed = raw_exchange(strict, b"\x00\x01hello there\r\n")
    assert (raw, closed) == (b"", True)

    # A client that says nothing: closed when listener_filters_timeout runs out.
    with socket.create_connection(("127.0.0.1", strict), timeout=5) as quiet:
        assert quiet.recv(10) == b""
    st = s.stats()
    assert st["listener.strict.no_filter_chain_match"] == 1
    assert st["listener.strict.downstream_pre_cx_timeout"] == 1
    assert st["http_inspector.http11_found"] >= 1 and st["http_inspector.http10_found"] == 1
    assert st["http_inspector.http_not_found"] == 1

    # continue_on_listener_filters_timeout: after the timeout the connection goes on to chain matching
    # (nothing detected, so the default chain) and is served when the client finally speaks.
    with socket.create_connection(("127.0.0.1", lenient), timeout=5) as late:
        assert wait_until(lambda: s.stats().get("http.fallback.downstream_cx_total") == 1)
        late.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := late.recv(4096):
            data += chunk
    assert status_of(data) == 200 and b"x-chain: fallback" in data.lower()
    assert s.stats()["listener.lenient.downstream_pre_cx_timeout"] == 0


def test_peer_closing_during_inspection_is_counted(skiff_factory):
    port = free_port()
    s = skiff_factory(config(listener("edge", "127.0.0.1", port, [chain("any", "any")], stat_prefix="edge",
                                      listener_filters=[TLS_INSPECTOR])))
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    assert wait_until(lambda: s.stats()["listener.edge.downstream_listener_filter_remote_close"] == 1)
    assert s.stats()["listener.edge.downstream_cx_total"] == 0
    assert s.stats()["listener.edge.downstream_pre_cx_active"] == 0


# ---- use_original_dst hand-off inside a network namespace ----------------------------------------------

def _run(args, **kw):
    proc = subprocess.run(args, capture_output=True, text=True, timeout=30, **kw)
    if proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}): {proc.stderr}")
    return proc


class NetnsSkiff(Skiff):
    """A skiff running inside network namespace `ns`; its admin API is reached from inside too."""

    def __init__(self, ns, *args, **kw):
        self.ns = ns
        super().__init__(*args, **kw)

    def start(self, wait_ready=True):
        binary = self.binary
        try:
            # Skiff.start builds [binary, -c, ...]; prefix the namespace by swapping the binary for a wrapper.
            wrapper = self.workdir / "in-netns.sh"
            wrapper.write_text(f"#!/bin/sh\nexec ip netns exec {self.ns} {binary} \"$@\"\n")
            wrapper.chmod(0o755)
            self.binary = wrapper
            return super().start(wait_ready)
        finally:
            self.binary = binary

    def admin_request(self, method, path, timeout=5.0):
        proc = subprocess.run(["ip", "netns", "exec", self.ns, "curl", "-s", "-m", str(timeout), "-X", method,
                               "-w", "\n%{http_code}", f"http://127.0.0.1:{self.admin_port}{path}"],
                              capture_output=True, text=True, timeout=timeout + 5)
        body, _, code = proc.stdout.rpartition("\n")
        if not code.isdigit() or code == "000":
            raise OSError(f"admin unreachable: {proc.stderr}")
        return int(code), body


@pytest.fixture
def netns():
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    if not shutil.which("ip") or not shutil.which("nft") or not shutil.which("curl"):
        pytest.skip("needs ip, nft and curl")
    name = f"skiff-lst-{os.getpid()}-{next(_names)}"
    if subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode != 0:
        pytest.skip("`ip netns add` is not permitted here")
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_use_original_dst_hands_off_to_bind_to_port_false_listener(netns, tmp_path, skiff_bin):
    ns = ["ip", "netns", "exec", netns]
    _run([*ns, "ip", "link", "set", "lo", "up"])
    # Make the service range routable (no dummy NIC needed: the redirect rewrites it before delivery).
    _run([*ns, "ip", "route", "add", "local", "10.77.0.0/16", "dev", "lo"])
    # What istio-iptables does for outbound traffic, narrowed to the test's service range.
    rules = ("table ip skiff_lst {\n chain out {\n  type nat hook output priority -100;\n"
             "  ip daddr 10.77.0.0/16 meta l4proto tcp redirect to :15001\n }\n}\n")
    proc = subprocess.run([*ns, "nft", "-f", "-"], input=rules, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"this kernel cannot run nftables nat redirect rules: {proc.stderr.strip()}")

    cfg = config(
        listener("virtualOutbound", "0.0.0.0", 15001,
                 [chain("virtualOutbound-blackhole", "blackhole", {"destination_port": 15001}),
                  chain("virtualOutbound-catchall", "catchall")],
                 use_original_dst=True, traffic_direction="OUTBOUND"),
        listener("0.0.0.0_80", "0.0.0.0", 80,
                 [chain("http-80", "svc80", {"transport_protocol": "raw_buffer",
                                              "application_protocols": ["http/1.1", "h2c"]})],
                 bind_to_port=False, listener_filters=[TLS_INSPECTOR, HTTP_INSPECTOR],
                 listener_filters_timeout="0s", continue_on_listener_filters_timeout=True,
                 traffic_direction="OUTBOUND"),
        listener("10.77.0.9_80", "10.77.0.9", 80, [chain("exact-80", "exact80")], bind_to_port=False))
    s = NetnsSkiff(netns, skiff_bin, tmp_path / "skiff", cfg, concurrency=2)
    try:
        s.start()

        def curl(url):
            out = _run([*ns, "curl", "-s", "-i", "-m", "5", url]).stdout
            return out.lower()

        out = curl("http://10.77.1.2/")
        assert out.startswith("http/1.1 200") and "x-chain: svc80" in out and out.endswith("http-80"), out
        out = curl("http://10.77.0.9/")  # the exact ip:port listener beats the wildcard one
        assert "x-chain: exact80" in out, out
        out = curl("http://10.77.1.2:8080/")  # no listener for :8080: the capturing listener's own chains
        assert "x-chain: catchall" in out, out
        out = curl("http://127.0.0.1:15001/")  # straight at the capture port: the blackhole chain
        assert "x-chain: blackhole" in out, out

        st = s.stats()
        assert st["listener.0.0.0.0_80.downstream_cx_total"] == 1
        assert st["listener.10.77.0.9_80.downstream_cx_total"] == 1
        assert st["listener.0.0.0.0_15001.downstream_cx_total"] == 2
        assert st["http_inspector.http11_found"] == 1
        status, body = s.admin_get("/listeners")
        assert "0.0.0.0_80::0.0.0.0:80" in body and "virtualOutbound::0.0.0.0:15001" in body, body
    except Exception:
        print(s.logs)
        raise
    finally:
        s.stop()
