"""The Lua HTTP filter (envoy.filters.http.lua) in the real binary, against httpbin and counting backends."""

import json

import pytest

from helpers import (CountingBackend, HttpBackend, bootstrap, http_listener, request, run_validate, static_cluster,
                     wait_until)
from conftest import SHARED

LUA_TYPE = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"
FIXTURES = SHARED / "fixtures" / "lua"


def lua_filter(code=None, *, inline_code=None, stat_prefix=None):
    config = {"@type": LUA_TYPE}
    if inline_code is not None:
        config["inline_code"] = inline_code
    if code is not None:
        config["default_source_code"] = {"inline_string": code}
    if stat_prefix:
        config["stat_prefix"] = stat_prefix
    return {"name": "envoy.filters.http.lua", "typed_config": config}


def lua_config(name, filter_entry, clusters, routes=None):
    routes = routes or [{"match": {"prefix": "/"}, "route": {"cluster": clusters[0]["name"]}}]
    filters = [filter_entry, {"name": "envoy.filters.http.router"}]
    return bootstrap([http_listener(name, routes, http_filters=filters)], clusters)


def fixture(name):
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"../shared not present ({path} is missing)")
    return path.read_text()


def test_gateway_policy_seed_unchanged(seeds, httpbin, skiff_factory):
    code = (seeds / "gateway-policy.lua").read_text()
    backend = CountingBackend()
    try:
        routes = [{"match": {"prefix": "/admin"}, "route": {"cluster": "counting"}},
                  {"match": {"prefix": "/"}, "route": {"cluster": "httpbin"}}]
        skiff = skiff_factory(lua_config("lua_gw", lua_filter(inline_code=code),
                                         [static_cluster("httpbin", httpbin),
                                          static_cluster("counting", backend.port)], routes))
        port = skiff.listener_port()

        status, headers, body = request(port, "/headers")
        assert status == 200, body
        assert json.loads(body)["headers"]["X-Lua-Processed"] == "true"
        assert headers["x-response-time"].isdigit()

        status, headers, body = request(port, "/admin/users")
        assert status == 403
        assert body == b"Forbidden"
        assert "x-response-time" in headers
        assert backend.hits == {}
        stats = skiff.stats()
        assert stats.get("http.lua_gw.lua.errors", 0) == 0
        assert stats["http.lua_gw.lua.executions"] == 4  # request and response scripts, two requests
        assert stats["http.lua_gw.lua.memory_bytes"] > 0
    finally:
        backend.close()


def chunks(*parts):
    # A generator body makes http.client send Transfer-Encoding: chunked.
    for p in parts:
        yield p


def test_request_body_of_a_chunked_upload_is_buffered_and_rewritten(httpbin, skiff_factory):
    code = """
function envoy_on_request(h)
  local body = h:body()
  h:headers():add("x-body-size", body:length())
  body:setBytes(string.upper(body:getBytes(0, body:length())))
end
"""
    skiff = skiff_factory(lua_config("lua_body", lua_filter(code), [static_cluster("httpbin", httpbin)]))
    port = skiff.listener_port()
    status, _, body = request(port, "/post", method="POST", body=chunks(b"hello ", b"chunked ", b"world"),
                              headers={"Content-Type": "text/plain"})
    assert status == 200, body
    echoed = json.loads(body)
    assert echoed["data"] == "HELLO CHUNKED WORLD"
    assert echoed["headers"]["X-Body-Size"] == "19"


def test_body_size_headers_fixture(httpbin, skiff_factory):
    skiff = skiff_factory(lua_config("lua_sizes", lua_filter(fixture("body_size_headers.lua")),
                                     [static_cluster("httpbin", httpbin)]))
    port = skiff.listener_port()
    status, headers, body = request(port, "/anything?foo=1", method="POST", body=b"helloworld")
    assert status == 200, body
    assert json.loads(body)["headers"]["Request-Body-Size"] == "10"
    assert headers["response_body_size"] == str(len(body))


def test_body_setbytes_fixture_replaces_the_response(httpbin, skiff_factory):
    skiff = skiff_factory(lua_config("lua_set", lua_filter(fixture("body_setbytes.lua")),
                                     [static_cluster("httpbin", httpbin)]))
    port = skiff.listener_port()
    status, headers, body = request(port, "/html")  # a body with content-length: it must be updated
    assert status == 200
    assert body == b"<html><b>Not Found<b></html>"
    assert headers["content-length"] == str(len(body))
    assert headers["content-type"] == "text/html"


def test_body_chunks_fixture_rewrites_a_streamed_response(httpbin, skiff_factory):
    skiff = skiff_factory(lua_config("lua_chunks", lua_filter(fixture("body_chunks_rewrite.lua")),
                                     [static_cluster("httpbin", httpbin)]))
    port = skiff.listener_port()
    status, headers, body = request(port, "/stream/3")  # chunked, one JSON line per chunk
    assert status == 200
    assert body == b"<html><b>Not Found<b></html>"
    assert headers["content-type"] == "text/html"


def test_log_info_fixture_logs_through_the_lua_logger(httpbin, skiff_factory):
    skiff = skiff_factory(lua_config("lua_log", lua_filter(fixture("log_info.lua")),
                                     [static_cluster("httpbin", httpbin)]))
    port = skiff.listener_port()
    assert request(port, "/get")[0] == 200
    assert wait_until(lambda: "script log: Path: /get" in skiff.logs and "script log: Status: 200" in skiff.logs,
                      timeout=5), skiff.logs


def test_runtime_error_is_counted_and_the_request_continues(httpbin, skiff_factory):
    code = """
function envoy_on_request(h)
  h:headers():add("x-before-error", "1")
  local missing = nil
  return missing.field
end
"""
    skiff = skiff_factory(lua_config("lua_err", lua_filter(code, stat_prefix="pfx"),
                                     [static_cluster("httpbin", httpbin)]))
    port = skiff.listener_port()
    status, _, body = request(port, "/headers")
    assert status == 200
    assert json.loads(body)["headers"]["X-Before-Error"] == "1"
    stats = skiff.stats()
    assert stats["http.lua_err.lua.pfx.errors"] == 1
    assert "attempt to index" in skiff.logs and "default:5:" in skiff.logs


def test_compile_error_fails_validation_naming_the_line(skiff_bin, tmp_path):
    config = lua_config("lua_bad", lua_filter("function envoy_on_request(h)\n  local = 1\nend\n"),
                        [static_cluster("nowhere", 9)])
    code, out = run_validate(skiff_bin, json.dumps(config), tmp_path, name="bad.json")
    assert code != 0
    assert "default:2:" in out, out


def test_per_route_disabled_and_named_scripts(httpbin, skiff_factory):
    filter_entry = lua_filter('function envoy_on_request(h) h:headers():add("x-script", "default") end')
    filter_entry["typed_config"]["source_codes"] = {
        "other": {"inline_string": 'function envoy_on_request(h) h:headers():add("x-script", "other") end'}}
    per_route = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute"
    routes = [
        {"match": {"prefix": "/anything/off"}, "route": {"cluster": "httpbin"},
         "typed_per_filter_config": {"envoy.filters.http.lua": {"@type": per_route, "disabled": True}}},
        {"match": {"prefix": "/anything/other"}, "route": {"cluster": "httpbin"},
         "typed_per_filter_config": {"envoy.filters.http.lua": {"@type": per_route, "name": "other"}}},
        {"match": {"prefix": "/"}, "route": {"cluster": "httpbin"}},
    ]
    skiff = skiff_factory(lua_config("lua_route", filter_entry, [static_cluster("httpbin", httpbin)], routes))
    port = skiff.listener_port()

    def script_for(path):
        status, _, body = request(port, path)
        assert status == 200, body
        return json.loads(body)["headers"].get("X-Script")

    assert script_for("/anything/default") == "default"
    assert script_for("/anything/other") == "other"
    assert script_for("/anything/off") is None


# ---- httpCall ----------------------------------------------------------------------------------------

class FooBackend(HttpBackend):
    """Envoy's lua_cluster from its integration test: answers 200 with `foo: bar` and body "good"."""

    def __init__(self):
        from http.server import BaseHTTPRequestHandler
        self.requests = []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                backend.requests.append((self.command, self.path, self.headers.get_all("Set-Cookie") or [],
                                         self.rfile.read(length)))
                self.send_response(200)
                self.send_header("foo", "bar")
                self.send_header("Content-Length", "4")
                self.end_headers()
                self.wfile.write(b"good")

            do_GET = do_POST

            def log_message(self, *args):
                pass

        self._serve(Handler)


@pytest.fixture
def foo_backend():
    backend = FooBackend()
    yield backend
    backend.close()


def test_httpcall_add_headers_fixture(httpbin, foo_backend, skiff_factory):
    skiff = skiff_factory(lua_config("lua_call", lua_filter(fixture("httpcall_add_headers.lua")),
                                     [static_cluster("httpbin", httpbin),
                                      static_cluster("lua_cluster", foo_backend.port)]))
    port = skiff.listener_port()
    status, _, body = request(port, "/headers")
    assert status == 200, body
    headers = json.loads(body)["headers"]
    assert headers["Upstream-Foo"] == "bar"
    assert headers["Upstream-Body-Size"] == "4"
    assert foo_backend.requests == [("POST", "/", [], b"hello world")]


def test_httpcall_respond_fixture(httpbin, foo_backend, skiff_factory):
    skiff = skiff_factory(lua_config("lua_call_respond", lua_filter(fixture("httpcall_respond.lua")),
                                     [static_cluster("httpbin", httpbin),
                                      static_cluster("lua_cluster", foo_backend.port)]))
    port = skiff.listener_port()
    status, headers, body = request(port, "/get")
    assert status == 403
    assert body == b"nope"
    assert headers["upstream_foo"] == "bar"
    assert sorted(foo_backend.requests[0][2]) == ["lang=lua; Path=/", "type=binding; Path=/"]


CALLER = """
function envoy_on_request(h)
  local path = h:headers():get("x-call-path")
  if path == nil then return end
  local headers, body = h:httpCall(h:headers():get("x-call-cluster") or "httpbin",
    {[":method"] = "GET", [":path"] = path, [":authority"] = "httpbin"}, nil,
    tonumber(h:headers():get("x-call-timeout") or "5000"))
  h:headers():add("x-call-status", headers[":status"])
  h:headers():add("x-call-body", body and string.sub(body, 1, 16) or "nil")
end
"""


def caller_skiff(skiff_factory, httpbin, name):
    skiff = skiff_factory(lua_config(name, lua_filter(CALLER), [static_cluster("httpbin", httpbin)]),
                          concurrency=1)
    return skiff, skiff.listener_port()


def test_httpcall_to_a_slow_cluster_does_not_block_the_worker(httpbin, skiff_factory):
    import threading
    import time
    skiff, port = caller_skiff(skiff_factory, httpbin, "lua_slow")
    slow = {}

    def slow_request():
        # The request body arrives while the call is pending: it is held, then forwarded intact.
        slow["result"] = request(port, "/anything", method="POST", body=b"held body",
                                 headers={"x-call-path": "/delay/3"}, timeout=15)

    t = threading.Thread(target=slow_request)
    started = time.monotonic()
    t.start()
    # One worker: these requests share it with the waiting script.
    for _ in range(5):
        assert request(port, "/get", timeout=5)[0] == 200
    assert t.is_alive() and time.monotonic() - started < 2.8
    t.join(15)
    status, _, body = slow["result"]
    assert status == 200, body
    echoed = json.loads(body)
    assert echoed["data"] == "held body"
    assert echoed["headers"]["X-Call-Status"] == "200"


def test_httpcall_timeout_answers_the_script_with_503(httpbin, skiff_factory):
    skiff, port = caller_skiff(skiff_factory, httpbin, "lua_timeout")
    status, _, body = request(port, "/headers", headers={"x-call-path": "/delay/3", "x-call-timeout": "200"})
    assert status == 200, body
    headers = json.loads(body)["headers"]
    assert headers["X-Call-Status"] == "503"
    assert headers["X-Call-Body"] == "upstream failure"


def test_httpcall_unknown_cluster_is_a_script_error(httpbin, skiff_factory):
    skiff, port = caller_skiff(skiff_factory, httpbin, "lua_nocluster")
    status, _, body = request(port, "/headers", headers={"x-call-path": "/get", "x-call-cluster": "nope"})
    assert status == 200, body
    assert "X-Call-Status" not in json.loads(body)["headers"]
    assert skiff.stats()["http.lua_nocluster.lua.errors"] == 1
    assert "http call cluster invalid" in skiff.logs


def test_httpcall_asynchronous_does_not_wait(httpbin, foo_backend, skiff_factory):
    code = """
function envoy_on_request(h)
  local r = h:httpCall("lua_cluster", {[":method"] = "POST", [":path"] = "/async",
                                        [":authority"] = "lua_cluster"}, "fire", 5000, true)
  h:headers():add("x-async-result", tostring(r))
end
"""
    skiff = skiff_factory(lua_config("lua_async", lua_filter(code),
                                     [static_cluster("httpbin", httpbin),
                                      static_cluster("lua_cluster", foo_backend.port)]))
    port = skiff.listener_port()
    status, _, body = request(port, "/headers")
    assert status == 200
    assert json.loads(body)["headers"]["X-Async-Result"] == "nil"
    assert wait_until(lambda: foo_backend.requests == [("POST", "/async", [], b"fire")], timeout=5)


def test_change_route_fixture_reroutes_the_request(skiff_factory):
    primary, alt = CountingBackend(), CountingBackend()
    try:
        routes = [{"match": {"prefix": "/alt/route"}, "route": {"cluster": "alt"}},
                  {"match": {"prefix": "/"}, "route": {"cluster": "primary"}}]
        skiff = skiff_factory(lua_config("lua_reroute", lua_filter(fixture("it_change_route.lua")),
                                         [static_cluster("primary", primary.port),
                                          static_cluster("alt", alt.port)], routes))
        port = skiff.listener_port()
        status, _, _ = request(port, "/test/long/url")
        assert status == 200
        assert alt.hits == {"/alt/route": 1}
        assert primary.hits == {}
    finally:
        primary.close()
        alt.close()


def test_set_http1_reason_phrase(httpbin, skiff_factory):
    import socket
    code = """
function envoy_on_response(handle)
  handle:headers():setHttp1ReasonPhrase("Totally Fine")
end
"""
    skiff = skiff_factory(lua_config("lua_reason", lua_filter(code), [static_cluster("httpbin", httpbin)]))
    with socket.create_connection(("127.0.0.1", skiff.listener_port()), timeout=5) as s:
        s.sendall(b"GET /get HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while b"\r\n" not in data:
            data += s.recv(4096)
    assert data.split(b"\r\n", 1)[0] == b"HTTP/1.1 200 Totally Fine"


# ---- route metadata ----------------------------------------------------------------------------------

class RecordingBackend(HttpBackend):
    """Envoy's RequestAndResponse upstream: records each request's headers, answers `foo: bar` + "goodbye"."""

    def __init__(self):
        from http.server import BaseHTTPRequestHandler
        self.headers = []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                self.rfile.read(length)
                backend.headers.append(self.headers)
                self.send_response(200)
                self.send_header("foo", "bar")
                self.send_header("Content-Length", "7")
                self.end_headers()
                self.wfile.write(b"goodbye")

            def log_message(self, *args):
                pass

        self._serve(Handler)


def test_request_and_response_fixture_reads_route_metadata(skiff_factory):
    import http.client
    code = fixture("it_request_and_response.lua")
    backend = RecordingBackend()
    try:
        routes = [{"match": {"prefix": "/"}, "route": {"cluster": "upstream"},
                   "metadata": {"filter_metadata": {"envoy.filters.http.lua": {
                       "foo.bar": {"foo": "bar", "baz": "bat"}}}}}]
        skiff = skiff_factory(lua_config("lua_md", lua_filter(code),
                                         [static_cluster("upstream", backend.port)], routes))
        conn = http.client.HTTPConnection("127.0.0.1", skiff.listener_port(), timeout=10)
        try:
            conn.putrequest("POST", "/test/long/url", skip_accept_encoding=True)
            for name, value in [("x-forwarded-for", "10.0.0.1"), ("x-test-header", "foo"),
                                ("x-test-header", "bar"), ("set-cookie", "foo;bar;"),
                                ("set-cookie", "1,3;2,5;"), ("content-length", "10")]:
                conn.putheader(name, value)
            conn.endheaders(b"helloworld")
            resp = conn.getresponse()
            body = resp.read()
            got = {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()
        assert resp.status == 200, body
        assert body == b"goodbye"
        assert got["response_metadata_foo"] == "bar"
        assert got["response_metadata_baz"] == "bat"
        assert got["response_body_size"] == "7"
        assert got["request_protocol"] == "HTTP/1.1"
        assert "foo" not in got
        up = backend.headers[0]
        expected = {"test_header_value_0": "foo", "test_header_value_1": "bar",
                    "test_header_value_2": "nil_value", "test_header_value_size": "2",
                    "cookie_0": "foo;bar;", "cookie_1": "1,3;2,5;", "cookie_size": "2",
                    "request_body_size": "10", "request_metadata_foo": "bar", "request_metadata_baz": "bat",
                    "request_secure": "false", "request_protocol": "HTTP/1.1",
                    "request_dynamic_metadata_value": "bar"}
        assert {k: up.get(k) for k in expected} == expected
        # An address from x-forwarded-for has port 0, as in Envoy.
        assert up["request_downstream_remote_address_value"] == "10.0.0.1:0"
        assert "127.0.0.1:" in up["request_downstream_local_address_value"]
        assert "127.0.0.1:" in up["request_downstream_directremote_address_value"]
        assert up.get("request_requested_server_name", "") == ""
        assert skiff.stats().get("http.lua_md.lua.errors", 0) == 0
    finally:
        backend.close()


SKIFF_LUA_TYPE = "type.googleapis.com/skiff.extensions.filters.http.lua.v1.Lua"

FAILING = """
function envoy_on_request(h)
  if h:headers():get("x-fail") then error("request boom") end
  if h:headers():get("x-spin") then while true do end end
end
"""


def test_skiff_type_fails_closed_and_envoy_type_stays_open(httpbin, skiff_factory):
    closed = {"name": "envoy.filters.http.lua",
              "typed_config": {"@type": SKIFF_LUA_TYPE, "fail_closed": True, "instruction_budget": 500000,
                               "lua": {"default_source_code": {"inline_string": FAILING}}}}
    skiff = skiff_factory(lua_config("lua_closed", closed, [static_cluster("httpbin", httpbin)]))
    port = skiff.listener_port()
    assert request(port, "/headers")[0] == 200
    status, _, _ = request(port, "/headers", headers={"x-fail": "1"})
    assert status == 500
    status, _, _ = request(port, "/headers", headers={"x-spin": "1"})
    assert status == 500
    stats = skiff.stats()
    assert stats["http.lua_closed.lua.errors"] == 2
    assert stats["http.lua_closed.lua.instruction_budget_exceeded"] == 1
    assert "request boom" in skiff.logs

    open_skiff = skiff_factory(lua_config("lua_open", lua_filter(FAILING), [static_cluster("httpbin", httpbin)]))
    status, _, _ = request(open_skiff.listener_port(), "/headers", headers={"x-fail": "1"})
    assert status == 200
    assert open_skiff.stats()["http.lua_open.lua.errors"] == 1


def test_verify_signature_with_keys_made_by_the_openssl_cli(httpbin, skiff_factory, tmp_path):
    import shutil
    import subprocess
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed")
    key, pub, data = tmp_path / "key.pem", tmp_path / "pub.der", tmp_path / "data"
    data.write_bytes(b"signed by the test")
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                    "-out", str(key)], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-outform", "DER", "-out", str(pub)],
                   check=True, capture_output=True)
    sig = subprocess.run(["openssl", "dgst", "-sha384", "-sign", str(key), str(data)], check=True,
                         capture_output=True).stdout
    code = f"""
local function unhex(s) return (s:gsub("..", function(h) return string.char(tonumber(h, 16)) end)) end
local KEY = unhex("{pub.read_bytes().hex()}")
local SIG = unhex("{sig.hex()}")
function envoy_on_request(h)
  local data = h:headers():get("x-data")
  local key = h:importPublicKey(KEY, string.len(KEY)):get()
  local ok, err = h:verifySignature("sha384", key, SIG, string.len(SIG), data, string.len(data))
  h:headers():add("x-verified", tostring(ok) .. "/" .. tostring(err))
end
"""
    skiff = skiff_factory(lua_config("lua_sig", lua_filter(code), [static_cluster("httpbin", httpbin)]))
    port = skiff.listener_port()
    _, _, body = request(port, "/headers", headers={"x-data": "signed by the test"})
    assert json.loads(body)["headers"]["X-Verified"] == "true/nil"
    _, _, body = request(port, "/headers", headers={"x-data": "signed by someone else"})
    assert json.loads(body)["headers"]["X-Verified"] == "false/Failed to verify digest. Error code: 0"


def test_metadata_is_found_under_the_filters_configured_name(httpbin, skiff_factory):
    code = 'function envoy_on_request(h) h:headers():add("x-who", tostring(h:metadata():get("who"))) end'
    entry = lua_filter(code)
    entry["name"] = "my-lua"
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "httpbin"},
               "metadata": {"filter_metadata": {"my-lua": {"who": "configured"},
                                                "envoy.filters.http.lua": {"who": "well-known"}}}}]
    skiff = skiff_factory(lua_config("lua_name", entry, [static_cluster("httpbin", httpbin)], routes))
    _, _, body = request(skiff.listener_port(), "/headers")
    assert json.loads(body)["headers"]["X-Who"] == "configured"
