"""Connection probe for test_mesh_mtls.py, run inside a pod:

    tls_mesh_probe.py HOST PORT COUNT plain
    tls_mesh_probe.py HOST PORT COUNT tls ROOT_CERT [CERT_DIR]

Makes COUNT fresh connections, each sending one `GET /` (over TLS with CERT_DIR's cert-chain.pem/key.pem
when given, ALPN istio/http1.1 as a sidecar offers). Prints JSON: {"served": n, "refused": n, "statuses":
[...], "errors": [first reasons]}. "served" = an HTTP status line came back; anything else (handshake alert,
reset, close without bytes, timeout) is "refused".
"""
import json
import socket
import ssl
import sys


def one(host, port, ctx):
    raw = socket.create_connection((host, port), timeout=5)
    try:
        s = ctx.wrap_socket(raw, server_hostname="server.default.svc.cluster.local") if ctx else raw
        s.sendall(f"GET / HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n".encode())
        data = b""
        while len(data) < 12:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        if data.startswith(b"HTTP/1.1 "):
            return int(data[9:12]), None
        return None, f"no HTTP response ({data[:40]!r})"
    finally:
        raw.close()


def main():
    host, port, count, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    ctx = None
    if mode == "tls":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.load_verify_locations(sys.argv[5])
        if len(sys.argv) > 6:
            ctx.load_cert_chain(f"{sys.argv[6]}/cert-chain.pem", f"{sys.argv[6]}/key.pem")
        ctx.set_alpn_protocols(["istio", "http/1.1"])
    served, statuses, errors = 0, [], []
    for _ in range(count):
        try:
            status, why = one(host, port, ctx)
        except (OSError, ssl.SSLError) as e:
            status, why = None, f"{type(e).__name__}: {e}"
        if status is not None:
            served += 1
            statuses.append(status)
        elif len(errors) < 5:
            errors.append(why)
    print(json.dumps({"served": served, "refused": count - served, "statuses": statuses, "errors": errors}))


if __name__ == "__main__":
    main()
