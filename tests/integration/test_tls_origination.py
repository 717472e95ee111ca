"""TLS origination from plain HTTP (issue 5): auto_sni / auto_san_validation from the request's host against
nginx, the seed's origination cluster (wasm-demo.envoy.yaml: LOGICAL_DNS :443 with `sni`) run with only the
address, port and CA substituted, and tls-origination.istio.yaml as the Envoy config istiod generates for it
(ServiceEntry port 80 → targetPort 443, DestinationRule tls SIMPLE without sni: auto_sni + auto_san_validation
and a trusted CA, as Istio does when the DestinationRule names no SNI/SANs). Certificates from skiff-certs."""

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import (bootstrap, free_port, http_listener, read_access_log, request,
                     static_cluster, substitute, wait_until)
from tls_helpers import CERTS_BIN, EchoBackend, Pki, upstream_tls

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
HTTP_OPTIONS = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
WASM_TYPED_STRUCT = "type.googleapis.com/udpa.type.v1.TypedStruct"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if not CERTS_BIN.exists():
        pytest.skip(f"skiff-certs not built: {CERTS_BIN}")
    p = Pki(tmp_path_factory.mktemp("pki"))
    p.web = p.workload("web", "web", "web", "--dns", "a.example", "--dns", "b.example")
    p.whatsmyua = p.workload("ua", "ext", "ua", "--dns", "www.whatsmyua.info")
    p.foreign_ca = p.other_ca()
    return p


class Nginx:
    """nginx serving HTTPS on 127.0.0.1:<port>; the body names the SNI it got and the Host."""

    def __init__(self, base, cert_dir, http2=False):
        self.dir = Path(base)
        (self.dir / "tmp").mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        conf = self.dir / "nginx.conf"
        conf.write_text(f"""worker_processes 1;
daemon off;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {self.dir}/tmp; proxy_temp_path {self.dir}/tmp; fastcgi_temp_path {self.dir}/tmp;
  uwsgi_temp_path {self.dir}/tmp; scgi_temp_path {self.dir}/tmp;
  server {{
    listen 127.0.0.1:{self.port} ssl{" http2" if http2 else ""};
    ssl_certificate {cert_dir}/cert-chain.pem;
    ssl_certificate_key {cert_dir}/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {{ default_type text/plain; return 200 "sni=$ssl_server_name host=$host conn=$connection proto=$server_protocol\\n"; }}
  }}
}}
""")
        self.proc = subprocess.Popen([NGINX, "-p", str(self.dir), "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        if not wait_until(lambda: self.proc.poll() is not None or self._listening(), timeout=10):
            self.close()
            raise RuntimeError("nginx did not start")
        if self.proc.poll() is not None:
            raise RuntimeError(f"nginx exited: {self.proc.stderr.read().decode(errors='replace')}")

    def _listening(self):
        import socket
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def close(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture()
def nginx(pki, tmp_path):
    if NGINX is None:
        pytest.skip("nginx is not installed")
    n = Nginx(tmp_path / "nginx", pki.web)
    yield n
    n.close()


def parse(body):
    return dict(kv.split("=", 1) for kv in body.decode().split())


def auto_sni_cluster(name, port, root, *, san_validation=True, sni=None, typed=True, http2=False,
                     override_header=None):
    """A STATIC cluster to nginx with auto_sni in HttpProtocolOptions (Istio's place) or on the cluster."""
    ts = upstream_tls(root=root, sni=sni)
    options = {"auto_sni": True, "auto_san_validation": san_validation}
    if override_header:
        options["override_auto_sni_header"] = override_header
    extra = {"transport_socket": ts}
    if typed:
        extra["typed_extension_protocol_options"] = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": HTTP_OPTIONS, "upstream_http_protocol_options": options,
            "explicit_http_config": {"http2_protocol_options" if http2 else "http_protocol_options": {}}}}
    else:
        extra["upstream_http_protocol_options"] = options
    return static_cluster(name, port, extra=extra)


# ------------------------------------------------------------------ auto_sni / auto_san_validation

def test_auto_sni_follows_the_request_host_and_keys_the_pool(pki, nginx, skiff_factory, tmp_path):
    log = tmp_path / "access.log"
    listener = http_listener("out", [{"match": {"prefix": "/"}, "route": {"cluster": "web"}}], access_log_path=log,
                             log_format="%RESPONSE_CODE% %RESPONSE_FLAGS% %REQ(:AUTHORITY)% "
                                        "%UPSTREAM_TRANSPORT_FAILURE_REASON%\n")
    skiff = skiff_factory(bootstrap([listener], [auto_sni_cluster("web", nginx.port, pki.root,
                                                                  sni="fallback.example")]), concurrency=1)
    port = skiff.listener_port("out")

    def get(host):
        status, _, body = request(port, "/", headers={"Host": host})
        return status, body

    # The SNI nginx saw is the request's host (port stripped, lower-cased); the SAN check passes for both.
    status, body = get("a.example")
    assert status == 200 and parse(body)["sni"] == "a.example", body
    assert parse(get("B.Example:8443")[1])["sni"] == "b.example"
    # Connections are kept per SNI: a.example again reuses the first connection (no new handshake).
    handshakes = skiff.stats()["cluster.web.ssl.handshake"]
    again = parse(get("a.example")[1])
    assert again["sni"] == "a.example" and handshakes == 2
    assert skiff.stats()["cluster.web.ssl.handshake"] == 2
    # An IP literal is never an SNI: the context's `sni` is sent, no host SAN check.
    assert parse(get(f"127.0.0.1:{nginx.port}")[1])["sni"] == "fallback.example"
    # auto_san_validation: a host the certificate does not name is refused (503 UF, counted as a SAN failure).
    status, body = get("c.example")
    assert status == 503, body
    assert wait_until(lambda: skiff.stats().get("cluster.web.ssl.fail_verify_san", 0) >= 1)
    lines = read_access_log(log, 5)
    assert any(l.startswith("503 UF c.example TLS_error:") for l in lines), lines


def test_auto_sni_without_san_validation_and_on_the_cluster_field(pki, nginx, skiff_factory):
    cluster = auto_sni_cluster("web", nginx.port, pki.root, san_validation=False, typed=False)
    skiff = skiff_factory(bootstrap([http_listener("out", [{"match": {"prefix": "/"}, "route": {"cluster": "web"}}])],
                                    [cluster]))
    port = skiff.listener_port("out")
    # c.example is not in the certificate, but only the CA is checked without auto_san_validation.
    status, _, body = request(port, "/", headers={"Host": "c.example"})
    assert status == 200 and parse(body)["sni"] == "c.example", body


def test_override_auto_sni_header_falls_back_to_the_authority(pki, nginx, skiff_factory):
    """override_auto_sni_header names the SNI source; absent or empty, :authority is used (as Envoy)."""
    cluster = auto_sni_cluster("web", nginx.port, pki.root, sni="fallback.example", override_header="x-sni")
    skiff = skiff_factory(bootstrap([http_listener("out", [{"match": {"prefix": "/"}, "route": {"cluster": "web"}}])],
                                    [cluster]), concurrency=1)
    port = skiff.listener_port("out")
    status, _, body = request(port, "/", headers={"Host": "a.example", "x-sni": "b.example"})
    assert status == 200 and parse(body)["sni"] == "b.example", body
    status, _, body = request(port, "/", headers={"Host": "a.example"})
    assert status == 200 and parse(body)["sni"] == "a.example", body
    status, _, body = request(port, "/", headers={"Host": "b.example", "x-sni": ""})
    assert status == 200 and parse(body)["sni"] == "b.example", body


@pytest.fixture()
def nginx_h2(pki, tmp_path):
    if NGINX is None:
        pytest.skip("nginx is not installed")
    n = Nginx(tmp_path / "nginx-h2", pki.web, http2=True)
    yield n
    n.close()


def test_auto_sni_on_an_http2_cluster(pki, nginx_h2, skiff_factory):
    """HTTP/2 upstreams (ALPN h2) send the request's host as SNI too, one connection per SNI."""
    cluster = auto_sni_cluster("web", nginx_h2.port, pki.root, sni="fallback.example", http2=True)
    skiff = skiff_factory(bootstrap([http_listener("out", [{"match": {"prefix": "/"}, "route": {"cluster": "web"}}])],
                                    [cluster]), concurrency=1)
    port = skiff.listener_port("out")
    for host in ("a.example", "b.example", "a.example"):
        status, _, body = request(port, "/", headers={"Host": host})
        assert status == 200, body
        got = parse(body)
        assert got["sni"] == host and got["proto"] == "HTTP/2.0", body
    assert skiff.stats()["cluster.web.ssl.handshake"] == 2
    assert skiff.stats()["cluster.web.upstream_cx_http2_total"] == 2


def test_auto_sni_with_openssl_s_server(pki, skiff_factory, tmp_path):
    """The SNI as `openssl s_server` sees it: with -servername/-cert2 it switches context on a match."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    port = free_port()
    stdbuf = ["stdbuf", "-oL", "-eL"] if shutil.which("stdbuf") else []
    proc = subprocess.Popen([*stdbuf, openssl, "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(pki.web / "cert-chain.pem"),
                             "-key", str(pki.web / "key.pem"), "-servername", "b.example", "-cert2",
                             str(pki.web / "cert-chain.pem"), "-key2", str(pki.web / "key.pem"), "-www"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        import socket

        def up():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return True
            except OSError:
                return proc.poll() is not None
        assert wait_until(up, timeout=10) and proc.poll() is None, "s_server did not start"
        skiff = skiff_factory(bootstrap([http_listener("out", [{"match": {"prefix": "/"}, "route": {"cluster": "s"}}])],
                                        [auto_sni_cluster("s", port, pki.root)]), concurrency=1)
        status, _, body = request(skiff.listener_port("out"), "/", headers={"Host": "b.example"})
        assert status == 200, body
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out = proc.communicate(timeout=5)[0]
    # -servername b.example + -cert2: s_server prints "Switching server context." when the SNI matched.
    assert "Switching server context" in out, out


# ------------------------------------------------------------------ the seeds

def wasm_module():
    build = Path(os.environ.get("SKIFF_BIN", Path(__file__).resolve().parents[2] / "build/bin/skiff")).resolve()
    path = build.parent.parent / "wasm" / "demo_filter.wasm"
    return path if path.exists() else None


def seed_with_tls_backend(seeds, backend_port, root=None):
    """wasm-demo.envoy.yaml with the listener on loopback, the backend name → localhost (resolved by the
    LOGICAL_DNS cluster), port 443 → the local TLS backend's, and (optionally) a trusted CA added. The Wasm
    filter stays when its module is built (path substituted), else it is dropped (test_wasm.py covers it)."""
    text = substitute((seeds / "wasm-demo.envoy.yaml").read_text(), [
        (r"address: 0\.0\.0\.0", "address: 127.0.0.1"),
        (r"port_value: 10000\b", "port_value: 0"),
        (r"address: www\.whatsmyua\.info", "address: localhost"),
        (r"port_value: 443\b", f"port_value: {backend_port}"),
    ])
    module = wasm_module()
    if module:
        text = substitute(text, [(r"filename: /my-filter\.wasm", f"filename: {module}")])
    config = yaml.safe_load(text)
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    if not module:
        hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] != "my-wasm-filter"]
    if root:
        tls = config["static_resources"]["clusters"][0]["transport_socket"]["typed_config"]
        tls["common_tls_context"] = {"validation_context": {"trusted_ca": {"filename": str(root)}}}
    return config, module is not None


def test_seed_wasm_demo_originates_tls_with_its_sni(seeds, pki, skiff_factory):
    backend = EchoBackend(tls_files=(pki.whatsmyua / "cert-chain.pem", pki.whatsmyua / "key.pem"))
    try:
        config, with_wasm = seed_with_tls_backend(seeds, backend.port)
        cluster = config["static_resources"]["clusters"][0]
        assert cluster["type"] == "LOGICAL_DNS" and cluster["transport_socket"]["typed_config"]["sni"] == \
            "www.whatsmyua.info"
        skiff = skiff_factory(config)
        status, headers, body = request(skiff.listener_port(), "/ua", headers={"User-Agent": "curl/8"})
        assert status == 200, body
        seen = json.loads(body)
        assert seen["tls"] is True and seen["path"] == "/ua"
        assert seen["headers"]["host"] == "www.whatsmyua.info"  # host_rewrite_literal
        assert backend.sni_seen and set(backend.sni_seen) == {"www.whatsmyua.info"}
        if with_wasm:
            assert headers["x-proxy-wasm"] == "my-wasm-filter"
            assert seen["headers"]["user-agent"] in ("hello", "world")
        assert skiff.stats()["cluster.service_whatsmyua.ssl.handshake"] >= 1
    finally:
        backend.close()


def test_seed_wasm_demo_with_a_trusted_ca_checks_the_backend(seeds, pki, skiff_factory):
    backend = EchoBackend(tls_files=(pki.whatsmyua / "cert-chain.pem", pki.whatsmyua / "key.pem"))
    try:
        good, _ = seed_with_tls_backend(seeds, backend.port, root=pki.root)
        skiff = skiff_factory(good, name="good")
        assert request(skiff.listener_port(), "/")[0] == 200
        bad, _ = seed_with_tls_backend(seeds, backend.port, root=pki.foreign_ca / "root-cert.pem")
        skiff = skiff_factory(bad, name="bad")
        assert request(skiff.listener_port(), "/")[0] == 503
        assert wait_until(lambda: skiff.stats().get("cluster.service_whatsmyua.ssl.fail_verify_error", 0) >= 1)
    finally:
        backend.close()


def istio_tls_origination(seeds, backend_port, root):
    """The Envoy config istiod generates for tls-origination.istio.yaml, for the app's side (its outbound
    0.0.0.0_80 listener, here on loopback instead of behind iptables) with the external host resolved to
    localhost and the CA bundle replaced by the skiff-certs root. Shapes follow Istio's config dumps."""
    docs = [d for d in yaml.safe_load_all((seeds / "tls-origination.istio.yaml").read_text()) if d]
    se = next(d for d in docs if d["kind"] == "ServiceEntry")["spec"]
    dr = next(d for d in docs if d["kind"] == "DestinationRule")["spec"]
    host, port = se["hosts"][0], se["ports"][0]
    tls_port = next(p for p in dr["trafficPolicy"]["portLevelSettings"] if p["port"]["number"] == port["number"])
    assert tls_port["tls"]["mode"] == "SIMPLE" and "sni" not in tls_port["tls"]
    assert se["resolution"] == "DNS" and port["protocol"] == "HTTP"
    name = f"outbound|{port['number']}||{host}"
    cluster = {
        "name": name, "type": "STRICT_DNS", "connect_timeout": "10s", "dns_lookup_family": "V4_ONLY",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
            "socket_address": {"address": "localhost", "port_value": backend_port}}}}]}]},  # was host:targetPort
        # SIMPLE without sni/subjectAltNames: the CA bundle is checked and, as istiod does then, the SNI and
        # the SAN check come from the request's host (auto_sni + auto_san_validation).
        "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "common_tls_context": {"validation_context": {"trusted_ca": {"filename": str(root)}}}}},
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": HTTP_OPTIONS,
            "upstream_http_protocol_options": {"auto_sni": True, "auto_san_validation": True},
            "explicit_http_config": {"http_protocol_options": {}}}},
        "metadata": {"filter_metadata": {"istio": {"services": [{"host": host, "name": host,
                                                                   "namespace": "default"}]}}},
    }
    vhost = {"name": f"{host}:{port['number']}", "domains": [host, f"{host}:{port['number']}"],
             "routes": [{"name": "default", "match": {"prefix": "/"},
                         "route": {"cluster": name, "timeout": "0s"}}]}
    listener = http_listener(f"outbound_0.0.0.0_{port['number']}", [vhost])
    listener["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["name"] = str(port["number"])
    return bootstrap([listener], [cluster]), host, name


def test_istio_tls_origination_app_speaks_http_sidecar_speaks_tls(seeds, pki, skiff_factory):
    backend = EchoBackend(tls_files=(pki.whatsmyua / "cert-chain.pem", pki.whatsmyua / "key.pem"))
    try:
        config, host, cluster = istio_tls_origination(seeds, backend.port, pki.root)
        skiff = skiff_factory(config)
        port = skiff.listener_port()
        # The app: plain HTTP to http://www.whatsmyua.info/ (port 80 → the sidecar).
        status, _, body = request(port, "/useragent", headers={"Host": host})
        assert status == 200, body
        seen = json.loads(body)
        assert seen["tls"] is True and seen["headers"]["host"] == host
        assert seen["headers"]["x-forwarded-proto"] == "http"  # what the app sent
        assert set(backend.sni_seen) == {host}
        assert skiff.stats()[f"cluster.{cluster}.ssl.handshake"] >= 1
        # Another name routed there is not what the certificate names: auto_san_validation refuses it.
        config2, _, _ = istio_tls_origination(seeds, backend.port, pki.root)
        vhost = config2["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
            "route_config"]["virtual_hosts"][0]
        vhost["domains"].append("impostor.example")
        other = skiff_factory(config2, name="other")
        assert request(other.listener_port(), "/", headers={"Host": "impostor.example"})[0] == 503
        assert wait_until(lambda: other.stats().get(f"cluster.{cluster}.ssl.fail_verify_san", 0) >= 1)
    finally:
        backend.close()
