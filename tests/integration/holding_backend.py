"""An HTTP/1.1 backend that holds every request until released, and a way to send many requests at once:
for tests of requests waiting on connection limits."""

import http.client
import socket
import threading

from helpers import request


class HoldingBackend:
    """HTTP/1.1 backend that reads requests but answers none until release(); keep-alive after that."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.released = threading.Event()
        self.lock = threading.Lock()
        self.received = []  # request paths, in arrival order
        self.conns = []
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                path = head.split(b"\r\n", 1)[0].split(b" ")[1].decode()
                with self.lock:
                    self.received.append(path)
                while not self.released.wait(0.05):
                    if self.stopped:
                        return
                body = path.encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        except OSError:
            pass

    def release(self):
        self.released.set()

    def close(self):
        self.stopped = True
        self.sock.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass


def send_requests(port, count, timeout):
    """Starts `count` requests on their own connections; each result is a status code or an exception."""
    results = [None] * count
    threads = []

    def one(i):
        try:
            results[i] = request(port, f"/r{i}", timeout=timeout)[0]
        except (OSError, http.client.HTTPException) as e:
            results[i] = e

    for i in range(count):
        t = threading.Thread(target=one, args=(i,))
        t.start()
        threads.append(t)
    return threads, results
