"""Client side of test_mesh.py, run inside a pod as its app: `mesh_client.py HOST PORT [PAYLOAD_BYTES]`.

With PAYLOAD_BYTES: sends that many pseudo-random bytes, half-closes, and checks the echo is byte-exact
(prints "ok <n>" or "mismatch ..."). Without: prints the first line the server sends.
"""
import hashlib
import socket
import sys

host, port = sys.argv[1], int(sys.argv[2])
conn = socket.create_connection((host, port), timeout=10)
if len(sys.argv) > 3:
    n = int(sys.argv[3])
    payload = b"".join(hashlib.sha256(str(i).encode()).digest() for i in range(n // 32 + 1))[:n]
    conn.sendall(payload)
    conn.shutdown(socket.SHUT_WR)
    got = bytearray()
    while chunk := conn.recv(65536):
        got += chunk
    print(f"ok {n}" if bytes(got) == payload else f"mismatch: sent {n} bytes, got {len(got)}")
else:
    print(conn.makefile().readline().strip())
