"""TLS test helpers: a skiff-certs PKI in a temp dir, Envoy TLS config snippets, echo backends (plain and
HTTPS, recording SNI and client certificates) and TLS clients built on Python's ssl module."""

import json
import os
import socket
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BIN_DIR = Path(os.environ.get("SKIFF_BIN", Path(__file__).resolve().parents[2] / "build" / "bin" / "skiff")).parent
CERTS_BIN = Path(os.environ.get("SKIFF_CERTS_BIN", BIN_DIR / "skiff-certs"))
TD = "cluster.local"

DOWNSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
UPSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"


def spiffe(ns, sa):
    return f"spiffe://{TD}/ns/{ns}/sa/{sa}"


class Pki:
    """A root CA and workload credentials minted by skiff-certs (Istio's file layout per workload)."""

    def __init__(self, base):
        self.base = Path(base)
        self.ca = self.base / "ca"
        self.run("ca", "init", "--out", self.ca, "--trust-domain", TD)

    def run(self, *args):
        proc = subprocess.run([str(CERTS_BIN), *map(str, args)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"skiff-certs {args}: {proc.returncode}\n{proc.stderr}"
        return proc.stdout

    def workload(self, name, ns, sa, *extra, ca=None):
        out = self.base / name
        self.run("workload", "--ca-dir", ca or self.ca, "--out", out, "--ns", ns, "--sa", sa, *extra)
        return out

    def other_ca(self, name="other-ca"):
        out = self.base / name
        self.run("ca", "init", "--out", out, "--trust-domain", TD)
        return out

    @property
    def root(self):
        return self.ca / "root-cert.pem"


def cert_files(directory):
    d = Path(directory)
    return {"certificate_chain": {"filename": str(d / "cert-chain.pem")},
            "private_key": {"filename": str(d / "key.pem")}}


def uri_san_matchers(*exact):
    return [{"san_type": "URI", "matcher": {"exact": e}} for e in exact]


def downstream_tls(server_dir, *, root=None, require_client=False, sans=(), alpn=None, extra=None):
    ctx = {"common_tls_context": {"tls_certificates": [cert_files(server_dir)]}}
    if root:
        ctx["common_tls_context"]["validation_context"] = {"trusted_ca": {"filename": str(root)},
                                                            "match_typed_subject_alt_names": uri_san_matchers(*sans)}
    if alpn:
        ctx["common_tls_context"]["alpn_protocols"] = list(alpn)
    if require_client:
        ctx["require_client_certificate"] = True
    ctx.update(extra or {})
    return {"name": "envoy.transport_sockets.tls", "typed_config": {"@type": DOWNSTREAM_TLS, **ctx}}


def upstream_tls(*, client_dir=None, root=None, sni=None, sans=(), dns_sans=(), extra=None):
    common = {"tls_params": {"tls_maximum_protocol_version": "TLSv1_3"}}
    if client_dir:
        common["tls_certificates"] = [cert_files(client_dir)]
    if root:
        matchers = uri_san_matchers(*sans) + [{"san_type": "DNS", "matcher": {"exact": d}} for d in dns_sans]
        common["validation_context"] = {"trusted_ca": {"filename": str(root)}}
        if matchers:
            common["validation_context"]["match_typed_subject_alt_names"] = matchers
    ctx = {"common_tls_context": common}
    if sni:
        ctx["sni"] = sni
    ctx.update(extra or {})
    return {"name": "envoy.transport_sockets.tls", "typed_config": {"@type": UPSTREAM_TLS, **ctx}}


def with_transport_socket(listener, transport_socket):
    listener["filter_chains"][0]["transport_socket"] = transport_socket
    return listener


class EchoBackend:
    """HTTP/1.1 backend answering 200 with a JSON body {"headers": {...}, "path": ..., "tls": bool, "sni": ...};
    with `tls_files` (cert, key[, client CA]) it serves HTTPS and records each handshake's SNI and peer cert."""

    def __init__(self, tls_files=None, require_client_cert=False, name="backend"):
        self.sni_seen = []
        self.peer_certs = []
        self.requests = 0
        self.name = name
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                backend.requests += 1
                tls = isinstance(self.connection, ssl.SSLSocket)
                body = json.dumps({"headers": {k.lower(): v for k, v in self.headers.items()}, "path": self.path,
                                   "tls": tls, "backend": backend.name}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls_files:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls_files[0], tls_files[1])
            if len(tls_files) > 2:
                ctx.load_verify_locations(tls_files[2])
                ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL

            def on_sni(sock, name, _ctx):
                backend.sni_seen.append(name)

            ctx.sni_callback = on_sni
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def client_context(root=None, cert_dir=None, alpn=None, max_version=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    if root:
        ctx.load_verify_locations(str(root))
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE
    if cert_dir:
        ctx.load_cert_chain(str(Path(cert_dir) / "cert-chain.pem"), str(Path(cert_dir) / "key.pem"))
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if max_version:
        ctx.maximum_version = max_version
    return ctx


def tls_get(port, ctx, path="/", server_name="localhost", timeout=5.0, headers=None):
    """One HTTPS GET on a fresh connection: (status, headers dict, body bytes, ssl socket facts).
    Raises ssl.SSLError / OSError when the handshake or the exchange fails."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s = ctx.wrap_socket(raw, server_hostname=server_name)
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        s.sendall(f"GET {path} HTTP/1.1\r\nhost: {server_name}\r\n{extra}connection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        facts = {"version": s.version(), "alpn": s.selected_alpn_protocol(), "cert": s.getpeercert()}
    finally:
        raw.close()
    if not data:
        raise ConnectionError("connection closed without a response")
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, body, facts


def tls_fails(port, ctx, server_name="localhost"):
    """True when a TLS GET fails (handshake refused, or closed before any response)."""
    try:
        tls_get(port, ctx, server_name=server_name, timeout=5.0)
    except (ssl.SSLError, OSError, ConnectionError):
        return True
    return False


def plaintext_gets_nothing(port, timeout=5.0):
    """A plaintext HTTP request to a TLS-only listener: True when no HTTP response comes back."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        data = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        return not data.startswith(b"HTTP/")
    finally:
        s.close()
