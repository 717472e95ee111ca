"""HTTP/2 regressions from review: upstream streams reset when the response beats the request, downstream
responses not cut off by an early reset, no CPU spin in the preface sniffer or the idle timer, XFCC
sanitised for h2c clients, bursts above the upstream's max_concurrent_streams, clean shutdown with h2
upstream pools."""

import signal
import socket
import struct
import time

import pytest

from helpers import bootstrap, http_listener, request, static_cluster, wait_until
from http2_helpers import (DATA, END_HEADERS, END_STREAM, HEADERS, RST_STREAM, WINDOW_UPDATE, QuickH2Server,
                           RawH2, curl_h2, frame, h2_cluster_options, request_block)


def proxy_to(skiff_factory, port, *, h2=True, hcm_extra=None, name="reg"):
    extra = h2_cluster_options("explicit") if h2 else None
    cluster = static_cluster("up", port, extra=extra)
    listener = http_listener(name, [{"match": {"prefix": "/"}, "route": {"cluster": "up"}}], hcm_extra=hcm_extra)
    skiff = skiff_factory(bootstrap([listener], [cluster]), concurrency=1)
    skiff.port = skiff.listener_port(name)
    return skiff


@pytest.fixture
def quick_server():
    servers = []

    def make(**kw):
        s = QuickH2Server(**kw)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


def read_until_end(conn, stream, timeout=5.0):
    """Frames of `stream` until its END_STREAM or RST_STREAM: (headers payloads, data bytes, ended, rst)."""
    deadline = time.monotonic() + timeout
    headers, data = [], b""
    while time.monotonic() < deadline:
        f = conn.read_frame(timeout=max(0.1, deadline - time.monotonic()))
        if f is None:
            break
        ftype, flags, sid, payload = f
        if sid != stream:
            continue
        if ftype == RST_STREAM:
            return headers, data, False, int.from_bytes(payload[:4], "big")
        if ftype == HEADERS:
            headers.append(payload)
        if ftype == DATA and payload:
            data += payload
            conn.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", len(payload))) +
                      frame(WINDOW_UPDATE, 0, stream, struct.pack(">I", len(payload))))
        if ftype in (HEADERS, DATA) and flags & END_STREAM:
            return headers, data, True, None
    return headers, data, False, None


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    import os
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_upstream_stream_reset_when_response_beats_request(skiff_factory, quick_server):
    # The upstream answers before the request body is done: the proxy must RST_STREAM (CANCEL) its
    # half-open stream, or the slot leaks and (max_concurrent_streams 1) every request needs a new connection.
    server = quick_server(max_streams=1)
    skiff = proxy_to(skiff_factory, server.port)
    conn = RawH2(skiff.port)
    assert conn.send(frame(HEADERS, END_HEADERS, 1, request_block("/upload")))
    _, _, ended, _ = read_until_end(conn, 1)
    assert ended
    assert wait_until(lambda: any(code == 8 for _, code in server.resets), timeout=5), server.resets
    assert conn.send(frame(HEADERS, END_HEADERS | END_STREAM, 3, request_block("/next")))
    headers, _, ended, _ = read_until_end(conn, 3)
    assert ended and headers and headers[0][:1] == b"\x88"
    assert server.connections == 1  # the second stream reused the freed slot
    conn.close()


def test_downstream_response_complete_before_request_is_not_cut(skiff_factory, quick_server):
    # 200000 bytes > the client's 64 KiB window: most DATA is still queued when the response ends upstream.
    body = bytes(range(256)) * 782
    server = quick_server(body=body)
    skiff = proxy_to(skiff_factory, server.port)
    conn = RawH2(skiff.port)
    assert conn.send(frame(HEADERS, END_HEADERS, 1, request_block("/big")))
    _, data, ended, rst = read_until_end(conn, 1, timeout=10)
    assert rst is None, f"reset {rst} after {len(data)} bytes"
    assert ended and data == body
    conn.close()


def test_preface_then_fin_does_not_spin(skiff_factory, httpbin):
    skiff = proxy_to(skiff_factory, httpbin, h2=False)
    before = cpu_seconds(skiff.proc.pid)
    s = socket.create_connection(("127.0.0.1", skiff.port), timeout=5)
    s.sendall(b"PRI * HTTP/2.0\r\n")
    s.shutdown(socket.SHUT_WR)
    deadline = time.monotonic() + 5
    closed = False
    while time.monotonic() < deadline and not closed:
        try:
            closed = s.recv(4096) == b""
        except (ConnectionResetError, OSError):
            closed = True
    s.close()
    assert closed, "the half-closed sniffed connection was never closed"
    assert cpu_seconds(skiff.proc.pid) - before < 1.0


def test_idle_timer_does_not_spin_while_streams_are_open(skiff_factory):
    # An upstream that never answers keeps the stream open well past the 200 ms idle timeout.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        skiff = proxy_to(skiff_factory, silent.getsockname()[1], h2=False,
                         hcm_extra={"common_http_protocol_options": {"idle_timeout": "0.2s"}})
        conn = RawH2(skiff.port)
        assert conn.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, request_block("/hang")))
        assert wait_until(lambda: skiff.stats().get("http.reg.downstream_rq_active", 0) == 1, timeout=5)
        time.sleep(0.5)  # past the idle timeout: the timer has fired at least once with the stream open
        before = cpu_seconds(skiff.proc.pid)
        time.sleep(1.5)  # measuring window, not synchronisation
        used = cpu_seconds(skiff.proc.pid) - before
        assert used < 0.3, f"skiff used {used:.2f}s CPU in 1.5s with one idle stream"
        conn.close()
    finally:
        silent.close()


def test_spoofed_xfcc_stripped_for_h2c_client(skiff_factory, httpbin):
    skiff = proxy_to(skiff_factory, httpbin, h2=False)
    code, version, body = curl_h2(skiff.port, "/headers", headers=("x-forwarded-client-cert: By=spoof",))
    assert (code, version) == (200, "2")
    assert b"spoof" not in body and b"Forwarded-Client-Cert" not in body


def test_burst_above_upstream_max_concurrent_streams_waits(skiff_factory, quick_server):
    server = quick_server(max_streams=2)
    skiff = proxy_to(skiff_factory, server.port)
    status, _, _ = request(skiff.port, "/warm")  # the pool's connection is up and knows the limit
    assert status == 200
    conn = RawH2(skiff.port)
    ids = list(range(1, 21, 2))
    assert conn.send(b"".join(frame(HEADERS, END_HEADERS | END_STREAM, i, request_block(f"/b{i}")) for i in ids))
    statuses = {}
    deadline = time.monotonic() + 10
    while len(statuses) < len(ids) and time.monotonic() < deadline:
        f = conn.read_frame(timeout=max(0.1, deadline - time.monotonic()))
        if f is None:
            break
        if f[0] == HEADERS and f[2] in ids:
            statuses[f[2]] = f[3][:1]
    assert statuses == {i: b"\x88" for i in ids}  # all 200 (a 503 is not HPACK index 8)
    conn.close()


def test_waiters_behind_a_full_connection_survive_its_close(skiff_factory, quick_server):
    # 110 streams at once on a fresh pool: the first 100 fill the new connection (the default limit before the
    # server's SETTINGS), 10 wait for a slot. The server then drops that connection: the 100 fail, and the 10
    # must get a new connection rather than wait for the route timeout.
    server = quick_server(close_first_after=100)
    skiff = proxy_to(skiff_factory, server.port)
    conn = RawH2(skiff.port)
    ids = list(range(1, 221, 2))
    assert conn.send(b"".join(frame(HEADERS, END_HEADERS | END_STREAM, i, request_block(f"/w{i}")) for i in ids))
    statuses = {}
    deadline = time.monotonic() + 8
    while len(statuses) < len(ids) and time.monotonic() < deadline:
        f = conn.read_frame(timeout=max(0.1, deadline - time.monotonic()))
        if f is None:
            break
        if f[0] == HEADERS and f[2] in ids:
            statuses[f[2]] = f[3][:1]
    assert len(statuses) == len(ids), f"{len(ids) - len(statuses)} streams got no response"
    assert sum(1 for v in statuses.values() if v == b"\x88") >= 10
    assert server.connections >= 2
    conn.close()


def test_clean_exit_with_h2_upstream_connections_open(skiff_factory, quick_server):
    # Pools die with the worker thread while their connections are still held by the stopped loop's
    # handlers: under ASan a use-after-free there fails this exit.
    server = quick_server()
    skiff = proxy_to(skiff_factory, server.port)
    for _ in range(3):
        assert request(skiff.port, "/x")[0] == 200
    skiff.proc.send_signal(signal.SIGTERM)
    assert skiff.wait_exit(15) == 0, skiff.logs()


def test_h2_upstream_over_tls(skiff_factory, tmp_path):
    import shutil
    import subprocess
    from tls_helpers import CERTS_BIN, Pki, upstream_tls
    nghttpd = shutil.which("nghttpd") or "/usr/sbin/nghttpd"
    if not __import__("os").path.exists(nghttpd):
        pytest.skip("nghttpd (Debian package nghttp2-server) is not installed")
    if not CERTS_BIN.exists():
        pytest.skip(f"skiff-certs not built: {CERTS_BIN}")
    pki = Pki(tmp_path / "pki")
    server_dir = pki.workload("server", "shop", "cart", "--dns", "localhost")
    docroot = tmp_path / "www"
    docroot.mkdir()
    (docroot / "index.html").write_text("hello over h2 and tls\n")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    log = open(tmp_path / "nghttpd.log", "w+")
    proc = subprocess.Popen([nghttpd, "-a", "127.0.0.1", "-d", str(docroot), str(port),
                             str(server_dir / "key.pem"), str(server_dir / "cert-chain.pem")], stdout=log, stderr=log)
    try:
        def listening():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return True
            except OSError:
                return False
        assert wait_until(listening, timeout=5)
        extra = {**h2_cluster_options("explicit"),
                 "transport_socket": upstream_tls(root=pki.root, sni="localhost")}
        cluster = static_cluster("up", port, extra=extra)
        listener = http_listener("tlsh2", [{"match": {"prefix": "/"}, "route": {"cluster": "up"}}])
        skiff = skiff_factory(bootstrap([listener], [cluster]), concurrency=1)
        status, _, body = request(skiff.listener_port("tlsh2"), "/index.html")
        assert (status, body) == (200, b"hello over h2 and tls\n")
        assert skiff.stats()["cluster.up.upstream_cx_http2_total"] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        log.close()
