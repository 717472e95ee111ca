"""Server app for test_mesh_mtls.py: `tls_mesh_app.py PORT EXPECTED_URI`. Plain HTTP/1.1 on [::]:PORT.

It asserts what an Istio app relies on: the request carries x-forwarded-client-cert whose URI= is EXPECTED_URI
(the caller's SPIFFE ID, added by its own sidecar). Then 200 with a JSON body {"xfcc": ..., "headers": ...};
otherwise 403 with the reason, so a missing or wrong identity is a failed request, not a silent pass.
"""
import json
import re
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class DualStackServer(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def make_handler(expected_uri):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            xfcc = self.headers.get("x-forwarded-client-cert", "")
            # The element the server's sidecar appended is the last one (APPEND_FORWARD).
            last = xfcc.split(",")[-1] if xfcc else ""
            uris = re.findall(r"(?:^|;)URI=([^;,]*)", last)
            if expected_uri in uris:
                status, body = 200, {"xfcc": xfcc, "uri": expected_uri,
                                     "headers": {k.lower(): v for k, v in self.headers.items()}}
            else:
                status, body = 403, {"error": f"x-forwarded-client-cert {xfcc!r} lacks URI={expected_uri}"}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    return Handler


if __name__ == "__main__":
    port, expected = int(sys.argv[1]), sys.argv[2]
    DualStackServer(("::", port), make_handler(expected)).serve_forever()
