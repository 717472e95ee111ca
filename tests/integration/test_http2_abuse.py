"""HTTP/2 abuse limits: rapid reset (CVE-2023-44487), CONTINUATION flood, oversized header lists, PING and
SETTINGS floods, and Envoy's Http2ProtocolOptions flood limits (max_outbound_frames, max_outbound_control_frames,
max_consecutive_inbound_frames_with_empty_payload, max_inbound_priority_frames_per_stream,
max_inbound_window_update_frames_per_data_frame_sent). Each case must end with the connection closed (GOAWAY
and/or EOF), be counted in http2.*, and leave the proxy's memory bounded; afterwards the proxy still serves
requests."""

import struct
import time

import pytest

from helpers import bootstrap, http_listener, wait_until
from http2_helpers import (CONTINUATION, DATA, END_HEADERS, END_STREAM, HEADERS, PING, PRIORITY, RST_STREAM,
                           SETTINGS, WINDOW_UPDATE, RawH2, built_with_asan, curl_h2, frame, hpack_literal,
                           request_block, rss_kb)

RSS_GROWTH_LIMIT_KB = 64 * 1024
# Under ASan, freed memory sits in its quarantine (256 MiB by default) and every block carries redzones, so RSS
# says little there; only a gross leak is caught (LeakSanitizer covers the rest at exit).
if built_with_asan():
    RSS_GROWTH_LIMIT_KB = 512 * 1024


@pytest.fixture
def proxy(skiff_factory):
    routes = [{"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}]
    skiff = skiff_factory(bootstrap([http_listener("abuse", routes)], []), concurrency=1)
    skiff.port = skiff.listener_port("abuse")
    skiff.rss_start = rss_kb(skiff.pid)
    yield skiff
    # Whatever happened, the proxy still answers and its memory stayed bounded.
    assert curl_h2(skiff.port, "/after")[:2] == (200, "2")
    assert rss_kb(skiff.pid) - skiff.rss_start < RSS_GROWTH_LIMIT_KB


def assert_closed(conn, expect_code=None):
    code, closed = conn.wait_goaway_or_close(timeout=15)
    assert closed, "the connection must be closed"
    if expect_code is not None:
        assert code == expect_code
    conn.close()


def test_rapid_reset_closes_connection(proxy):
    conn = RawH2(proxy.port)
    burst = b""
    sent_ok = True
    for i in range(2000):
        sid = 1 + 2 * i
        burst += frame(HEADERS, END_HEADERS | END_STREAM, sid, request_block("/x"))
        burst += frame(RST_STREAM, 0, sid, (8).to_bytes(4, "big"))  # CANCEL
        if len(burst) > 16384:
            sent_ok = conn.send(burst)
            burst = b""
            if not sent_ok:
                break
    if sent_ok:
        conn.send(burst)
    assert_closed(conn, expect_code=0xB)  # ENHANCE_YOUR_CALM
    assert wait_until(lambda: proxy.stats()["http2.premature_resets"] >= 1)
    assert proxy.stats()["http2.rx_reset"] >= 250


def test_continuation_flood_closes_connection(proxy):
    conn = RawH2(proxy.port)
    data = frame(HEADERS, 0, 1, request_block("/x"))
    for i in range(200):
        data += frame(CONTINUATION, 0, 1, hpack_literal(f"x-c{i}", "v"))
    conn.send(data)
    assert_closed(conn, expect_code=0xB)
    assert wait_until(lambda: proxy.stats()["http2.too_many_header_frames"] >= 1)


def test_header_list_too_large_closes_connection(proxy):
    conn = RawH2(proxy.port)
    # 75 KB of headers > 60 KiB (max_request_headers_kb default); each field stays under HPACK's own limits.
    block = request_block("/x", extra=[(f"x-big-{i}", "a" * 25000) for i in range(3)])
    chunks = [block[i:i + 16000] for i in range(0, len(block), 16000)]
    data = frame(HEADERS, 0, 1, chunks[0])
    for i, c in enumerate(chunks[1:], start=1):
        data += frame(CONTINUATION, END_HEADERS if i == len(chunks) - 1 else 0, 1, c)
    conn.send(data)
    assert_closed(conn)
    assert wait_until(lambda: proxy.stats()["http2.header_overflow"] >= 1)


@pytest.mark.parametrize("kind", ["ping", "settings"])
def test_control_frame_flood_closes_connection(proxy, kind):
    # The client never reads: the proxy's ACKs pile up until the outbound control-frame limit (1000) trips.
    conn = RawH2(proxy.port, rcvbuf=4096)
    one = frame(PING, 0, 0, b"12345678") if kind == "ping" else frame(SETTINGS, 0, 0)
    burst = one * 2000
    for _ in range(400):
        if not conn.send(burst):
            break
    assert wait_until(lambda: proxy.stats()["http2.outbound_control_flood"] >= 1, timeout=20)
    assert_closed(conn)


def cx_active(proxy):
    return proxy.stats()["http.abuse.downstream_cx_active"]


def flood_without_reading(conn, next_burst, done, seconds=60):
    """Sends bursts and never reads until `done()` or the proxy stops taking bytes."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not done():
        if not conn.send(next_burst()):
            break


def test_requests_from_a_client_that_never_reads_trip_outbound_flood(proxy):
    # Answers pile up in the proxy's output; past max_outbound_frames (10000) the connection is closed, and
    # the proxy does not wait for the client to read a GOAWAY first.
    conn = RawH2(proxy.port, rcvbuf=4096)
    block = request_block("/x")
    next_id = [1]

    def burst():
        out = []
        for _ in range(500):
            out.append(frame(HEADERS, END_HEADERS | END_STREAM, next_id[0], block))
            next_id[0] += 2
        return b"".join(out)

    flood_without_reading(conn, burst, lambda: proxy.stats()["http2.outbound_flood"] >= 1)
    assert wait_until(lambda: proxy.stats()["http2.outbound_flood"] >= 1, timeout=20)
    assert wait_until(lambda: cx_active(proxy) == 0, timeout=10), "closed without the client reading"
    # Every stream it held (answers waiting for a flow-control window the client never opened) is gone.
    assert wait_until(lambda: proxy.stats()["http2.streams_active"] == 0, timeout=10)
    conn.close()


def test_pings_from_a_client_that_never_reads_trip_outbound_control_flood(proxy):
    conn = RawH2(proxy.port, rcvbuf=4096)
    burst = frame(PING, 0, 0, b"12345678") * 2000
    flood_without_reading(conn, lambda: burst, lambda: proxy.stats()["http2.outbound_control_flood"] >= 1)
    assert wait_until(lambda: proxy.stats()["http2.outbound_control_flood"] >= 1, timeout=20)
    assert wait_until(lambda: cx_active(proxy) == 0, timeout=10), "closed without the client reading"
    conn.close()


def test_empty_frames_flood_closes_connection(proxy):
    conn = RawH2(proxy.port)
    conn.send(frame(HEADERS, END_HEADERS, 1, request_block("/x")) + frame(DATA, 0, 1) * 3)
    assert_closed(conn, expect_code=0xB)
    assert wait_until(lambda: proxy.stats()["http2.inbound_empty_frames_flood"] >= 1)


def test_priority_flood_closes_connection(proxy):
    conn = RawH2(proxy.port)
    # max_inbound_priority_frames_per_stream (100) per stream opened, plus one stream's worth.
    conn.send(frame(PRIORITY, 0, 3, struct.pack(">IB", 0, 16)) * 150)
    assert_closed(conn, expect_code=0xB)
    assert wait_until(lambda: proxy.stats()["http2.inbound_priority_frames_flood"] >= 1)


def test_window_update_flood_closes_connection(proxy):
    conn = RawH2(proxy.port)
    # Nothing was sent to the client: only a handful of WINDOW_UPDATEs are reasonable.
    conn.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1)) * 50)
    assert_closed(conn, expect_code=0xB)
    assert wait_until(lambda: proxy.stats()["http2.inbound_window_update_frames_flood"] >= 1)


def test_window_updates_while_downloading_are_fine(proxy):
    # A normal client acknowledging DATA with WINDOW_UPDATEs stays within the limit.
    for _ in range(3):
        assert curl_h2(proxy.port, "/normal")[:2] == (200, "2")
    assert proxy.stats()["http2.inbound_window_update_frames_flood"] == 0
