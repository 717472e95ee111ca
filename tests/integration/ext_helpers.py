"""Helpers for the ext_proc / ext_authz integration tests: the grpc++ test servers as processes, an HTTP
authorization server, an echo backend that understands chunked bodies and trailers, config builders."""

import json
import os
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from helpers import http_listener, static_cluster, bootstrap, wait_until  # noqa: F401

EXT_PROC_TYPE = "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor"
EXT_PROC_PER_ROUTE = "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute"
EXT_AUTHZ_TYPE = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"
EXT_AUTHZ_PER_ROUTE = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute"
ROUTER = {"name": "envoy.filters.http.router",
          "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}


def built_binary(skiff_bin, name):
    """A test server built next to skiff (build/bin)."""
    return Path(skiff_bin).parent / name


def dead_port():
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """One of the grpc++ test servers: started on a kernel-chosen port, its stdout kept in a file."""

    def __init__(self, binary, workdir, args=()):
        self.out_path = Path(workdir) / f"{Path(binary).name}-{id(self)}.out"
        self._out = open(self.out_path, "wb")
        self.proc = subprocess.Popen([str(binary), "--port", "0", *args], stdout=self._out,
                                     stderr=subprocess.STDOUT)
        line = wait_until(lambda: self._listening(), timeout=20)
        if not line:
            self.stop()
            raise RuntimeError(f"{binary} did not start:\n{self.output()}")
        self.port = int(line.split()[-1])

    def _listening(self):
        for line in self.output().splitlines():
            if line.startswith("listening on "):
                return line
        if self.proc.poll() is not None:
            raise RuntimeError(f"exited with {self.proc.returncode}:\n{self.output()}")
        return None

    def output(self):
        return self.out_path.read_text(errors="replace")

    def lines(self, prefix):
        return [line for line in self.output().splitlines() if line.startswith(prefix)]

    def messages(self, path=None):
        """ext_proc server: the kinds of messages received (optionally for one request path), in order."""
        out = []
        for line in self.lines("msg "):
            fields = dict(f.split("=", 1) for f in line.split()[2:] if "=" in f)
            if path is None or fields.get("path") == path:
                out.append((line.split()[1], fields))
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


# ---- HTTP backends --------------------------------------------------------------------------------------

def _read_body(handler):
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int(handler.rfile.readline().strip().split(b";")[0], 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return body
            body += handler.rfile.read(size)
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


class EchoBackend:
    """Answers every request with JSON {method, path, headers, body}; `x-drop: 1` on every response.
    /trailers answers chunked with a trailer; /big answers 64 KiB of 'a'."""

    def __init__(self):
        self.requests = []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                body = _read_body(self)
                record = {"method": self.command, "path": self.path,
                          "headers": {k.lower(): v for k, v in self.headers.items()},
                          "header_list": [[k.lower(), v] for k, v in self.headers.items()],
                          "body": body.decode("latin-1")}
                backend.requests.append(record)
                if self.path.startswith("/big"):
                    payload = b"a" * 65536
                else:
                    payload = json.dumps(record).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("x-drop", "1")
                if self.path.startswith("/trailers"):
                    self.send_header("Transfer-Encoding", "chunked")
                    self.send_header("Trailer", "x-backend-trailer")
                    self.end_headers()
                    self.wfile.write(b"%x\r\n%s\r\n0\r\nx-backend-trailer: 1\r\n\r\n" % (len(payload), payload))
                    return
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class HttpAuthzServer:
    """An HTTP authorization service. The verdict comes from the request path (after any path_prefix):
    .../deny → 401 with a body and headers, .../error → 500, .../slow → allowed after 2 s, else 200 with
    headers meant for the upstream, for appending, for removal and for the client."""

    def __init__(self):
        self.requests = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _reply(self, status, headers, body=b""):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self):
                body = _read_body(self)
                server.requests.append({"method": self.command, "path": self.path,
                                        "headers": {k.lower(): v for k, v in self.headers.items()},
                                        "body": body.decode("latin-1")})
                if "/deny" in self.path:
                    return self._reply(401, [("WWW-Authenticate", 'Basic realm="skiff"'),
                                             ("x-authz-denied", "yes"), ("x-authz-secret", "hidden")],
                                       b"denied by http authz")
                if "/error" in self.path:
                    return self._reply(500, [], b"authz broke")
                if "/slow" in self.path:
                    time.sleep(2)
                self._reply(200, [("x-authz-user", "alice"), ("x-authz-append", "from-authz"),
                                  ("x-envoy-auth-headers-to-remove", "x-remove-me"),
                                  ("x-authz-success", "yes"), ("x-authz-private", "no")])

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# ---- configs --------------------------------------------------------------------------------------------

def ext_proc_filter(cluster, processing_mode=None, **extra):
    config = {"@type": EXT_PROC_TYPE, "grpc_service": {"envoy_grpc": {"cluster_name": cluster}}}
    if processing_mode is not None:
        config["processing_mode"] = processing_mode
    config.update(extra)
    return {"name": "envoy.filters.http.ext_proc", "typed_config": config}


def ext_authz_grpc_filter(cluster, timeout="1s", **extra):
    config = {"@type": EXT_AUTHZ_TYPE, "transport_api_version": "V3",
              "grpc_service": {"envoy_grpc": {"cluster_name": cluster}, "timeout": timeout}}
    config.update(extra)
    return {"name": "envoy.filters.http.ext_authz", "typed_config": config}


def ext_authz_http_filter(cluster, timeout="1s", path_prefix="", authorization_request=None,
                          authorization_response=None, **extra):
    service = {"server_uri": {"uri": f"http://{cluster}", "cluster": cluster, "timeout": timeout},
               "path_prefix": path_prefix}
    if authorization_request:
        service["authorization_request"] = authorization_request
    if authorization_response:
        service["authorization_response"] = authorization_response
    config = {"@type": EXT_AUTHZ_TYPE, "http_service": service}
    config.update(extra)
    return {"name": "envoy.filters.http.ext_authz", "typed_config": config}


def proxy_config(backend_port, service_port, filters, routes=None, service_cluster="ext_service"):
    """A listener with `filters` + router to the backend, and a cluster for the external service."""
    routes = routes or [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]
    listener = http_listener("ingress", routes, http_filters=list(filters) + [ROUTER])
    return bootstrap([listener], [static_cluster("backend", backend_port),
                                  static_cluster(service_cluster, service_port)])


def prefix_stats(skiff, prefix):
    return {k[len(prefix):]: v for k, v in skiff.stats().items() if k.startswith(prefix)}
