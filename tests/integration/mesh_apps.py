"""Tiny pod apps for test_mesh.py, knowing nothing of any proxy: `mesh_apps.py PORT:KIND ...`.

KIND echo: sends back every byte it receives. KIND whoami: answers "peer=<ip> local=<ip>:<port>\n" and closes.
Every port listens on [::] with IPV6_V6ONLY off, so IPv4 and IPv6 clients both reach it.
"""
import socket
import sys
import threading


def serve(port, kind):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    s.listen(64)
    while True:
        conn, peer = s.accept()
        threading.Thread(target=handle, args=(conn, peer, kind), daemon=True).start()


def plain(ip):
    return ip[7:] if ip.startswith("::ffff:") else ip


def handle(conn, peer, kind):
    with conn:
        if kind == "whoami":
            local = conn.getsockname()
            conn.sendall(f"peer={plain(peer[0])} local={plain(local[0])}:{local[1]}\n".encode())
            return
        while True:
            data = conn.recv(65536)
            if not data:
                return
            conn.sendall(data)


if __name__ == "__main__":
    threads = []
    for spec in sys.argv[1:]:
        port, kind = spec.split(":")
        t = threading.Thread(target=serve, args=(int(port), kind), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
