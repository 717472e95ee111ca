"""HTTP/2 abuse limits: rapid reset (CVE-2023-44487), CONTINUATION flood, oversized header lists, PING and
SETTINGS floods. Each case must end with the connection closed (GOAWAY and/or EOF), be counted in http2.*,
and leave the proxy's memory bounded; afterwards the proxy still serves requests."""

import pytest

from helpers import bootstrap, http_listener, wait_until
from http2_helpers import (CONTINUATION, END_HEADERS, END_STREAM, HEADERS, PING, RST_STREAM, SETTINGS, RawH2,
                           curl_h2, frame, hpack_literal, request_block, rss_kb)

RSS_GROWTH_LIMIT_KB = 64 * 1024


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
