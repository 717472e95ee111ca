"""Flow control on HTTP/1.1 downstreams: a request body the upstream is slow to take pauses reading from the
client, and the request still completes once the upstream drains it."""

import socket
import threading

from helpers import ResponseReader, bootstrap, http_listener, static_cluster, wait_until

BODY_BYTES = 48 * 1024 * 1024  # far beyond socket buffers and the connection buffer limit


class StalledBackend:
    """Accepts one request and reads nothing of it until release(); then reads it all and answers 200."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.released = threading.Event()
        self.received = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(60)
            self.released.wait(60)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, rest = data.split(b"\r\n\r\n", 1)
            length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0]
                         .split(b":")[1])
            self.received = len(rest)
            while self.received < length:
                chunk = conn.recv(1 << 20)
                if not chunk:
                    return
                self.received += len(chunk)
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nreceived")

    def close(self):
        self.released.set()
        self.sock.close()


def test_paused_downstream_survives_until_the_upstream_drains(skiff_factory):
    backend = StalledBackend()
    try:
        route = {"match": {"prefix": "/"}, "route": {"cluster": "slow", "timeout": "60s"}}
        skiff = skiff_factory(bootstrap([http_listener("fc", [route])], [static_cluster("slow", backend.port)]),
                              concurrency=1)
        client = socket.create_connection(("127.0.0.1", skiff.listener_port()))
        client.settimeout(60)
        sender_error = []

        def send():
            try:
                client.sendall(f"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: {BODY_BYTES}\r\n\r\n"
                               .encode())
                chunk = b"x" * (1 << 20)
                for _ in range(BODY_BYTES // len(chunk)):
                    client.sendall(chunk)
            except OSError as e:
                sender_error.append(e)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        # The upstream takes nothing, so the proxy must stop reading the client...
        assert wait_until(lambda: skiff.stats().get("http.fc.downstream_flow_control_paused_reading_total", 0) >= 1,
                          timeout=30), skiff.stats()
        # ...and keep the paused connection (and its request) alive meanwhile.
        assert skiff.stats().get("http.fc.downstream_cx_destroy_active_rq", 0) == 0
        assert skiff.stats().get("http.fc.downstream_cx_active", 0) == 1
        backend.released.set()
        sender.join(60)
        assert not sender_error, sender_error
        status, _, body = ResponseReader(client).read()
        assert status == 200 and body == b"received"
        assert backend.received == BODY_BYTES
        assert skiff.stats().get("http.fc.downstream_flow_control_resumed_reading_total", 0) >= 1
        client.close()
    finally:
        backend.close()
