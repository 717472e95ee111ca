"""The Wasm HTTP filter (envoy.extensions.filters.http.wasm.v3.Wasm) on V8 in the real binary: the documents'
wasm-demo.envoy.yaml (TypedStruct and plain typed forms) against a plain-HTTP backend, and the failure policy
on traps. The test modules are C sources built by CMake into <build>/wasm."""

import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import yaml

from helpers import (CountingBackend, HttpBackend, bootstrap, http_listener, replace_block, request,
                     static_cluster, substitute)

WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"


def module(name):
    build = Path(os.environ.get("SKIFF_BIN", "../../build/bin/skiff")).resolve().parent.parent
    path = build / "wasm" / f"{name}.wasm"
    if not path.exists():
        pytest.skip(f"wasm test module {path} not built (no clang-14/wasm-ld)")
    return path


def demo_seed(seeds, backend_port):
    """wasm-demo.envoy.yaml with only the module path and the backend changed (plain HTTP on loopback)."""
    text = substitute((seeds / "wasm-demo.envoy.yaml").read_text(), [
        (r"filename: /my-filter\.wasm", f"filename: {module('demo_filter')}"),
        (r"address: 0\.0\.0\.0", "address: 127.0.0.1"),
        (r"port_value: 10000\b", "port_value: 0"),
        (r"address: www\.whatsmyua\.info", "address: 127.0.0.1"),
        (r"port_value: 443\b", f"port_value: {backend_port}"),
    ])
    return replace_block(text, "transport_socket:", "")  # TLS origination: the plain-HTTP variant


def check_demo(skiff, backend):
    port = skiff.listener_port()
    seen = set()
    for i in range(40):
        status, headers, body = request(port, f"/?n={i}", headers={"User-Agent": "curl/8"})
        assert status == 200, body
        assert headers["x-proxy-wasm"] == "my-wasm-filter"
        seen.add(backend.headers[f"/?n={i}"]["user-agent"])
        if seen == {"hello", "world"}:
            break
    assert seen == {"hello", "world"}


def test_documents_filter_typed_struct_form(seeds, skiff_factory):
    backend = CountingBackend()
    try:
        skiff = skiff_factory(demo_seed(seeds, backend.port))
        check_demo(skiff, backend)
        assert "replaced header User-Agent with" in skiff.logs
    finally:
        backend.close()


def test_documents_filter_plain_typed_form(seeds, skiff_factory):
    backend = CountingBackend()
    try:
        config = yaml.safe_load(demo_seed(seeds, backend.port))
        hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        entry = hcm["http_filters"][0]
        assert entry["typed_config"]["@type"] == "type.googleapis.com/udpa.type.v1.TypedStruct"
        entry["typed_config"] = {"@type": WASM_TYPE, **entry["typed_config"]["value"]}
        entry["typed_config"]["config"]["name"] = "my-plugin"
        skiff = skiff_factory(config)
        check_demo(skiff, backend)
        assert "wasm log my-plugin " in skiff.logs
    finally:
        backend.close()


class AgentBackend(HttpBackend):
    """Answers 404 to User-Agent: hello and 200 otherwise; records the agents it saw, in order."""

    def __init__(self):
        self.agents = []
        self.lock = threading.Lock()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                agent = self.headers.get("User-Agent", "")
                with backend.lock:
                    backend.agents.append(agent)
                code = 404 if agent == "hello" else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._serve(Handler)


def test_stateful_variant_evicts_a_value_for_every_worker(skiff_factory):
    backend = AgentBackend()
    try:
        wasm = {"name": "stateful", "typed_config": {"@type": WASM_TYPE, "config": {
            "name": "stateful",
            "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": "User-Agent"},
            "vm_config": {"vm_id": "stateful", "runtime": "envoy.wasm.runtime.v8",
                          "code": {"local": {"filename": str(module("stateful_filter"))}}}}}}
        routes = [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]
        listener = http_listener("wasm_state", routes, http_filters=[wasm, {"name": "envoy.filters.http.router"}])
        skiff = skiff_factory(bootstrap([listener], [static_cluster("backend", backend.port)]), concurrency=2)
        port = skiff.listener_port()
        statuses = []
        for i in range(60):  # a new connection each time: the kernel spreads them over both workers
            status, headers, _ = request(port, f"/{i}")
            assert headers["x-proxy-wasm"] == "my-wasm-filter"
            statuses.append(status)
            if status == 404:
                break
        assert 404 in statuses, backend.agents
        after = len(backend.agents)
        for i in range(30):
            status, _, _ = request(port, f"/after/{i}")
            assert status == 200
        assert backend.agents[after:] == ["world"] * 30
        assert backend.agents.count("hello") == 1
        assert skiff.stats()["wasm_demo_evictions"] == 1
        _, text = skiff.admin_get("/stats")
        assert "http.wasm_state.wasm.stateful.request_headers_us: " in text  # time inside the plugin
        # Both workers ran the plugin (the log pattern carries the thread id): the eviction crossed VMs.
        started = {line.split("]")[1] for line in skiff.logs.splitlines()
                   if "wasm plugin stateful: VM started on this worker" in line}
        assert len(started) == 2, skiff.logs
    finally:
        backend.close()


def trap_config(fail_open):
    backend = CountingBackend()
    wasm = {"name": "trapper", "typed_config": {"@type": WASM_TYPE, "config": {
        "name": "trapper", "fail_open": fail_open,
        "vm_config": {"vm_id": "trap", "runtime": "envoy.wasm.runtime.v8",
                      "code": {"local": {"filename": str(module("trap_filter"))}}}}}}
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]
    listener = http_listener("wasm_trap", routes, http_filters=[wasm, {"name": "envoy.filters.http.router"}])
    return backend, bootstrap([listener], [static_cluster("backend", backend.port)])


def test_trap_fail_closed_answers_503_then_a_new_vm_serves(skiff_factory):
    backend, config = trap_config(False)
    try:
        skiff = skiff_factory(config, concurrency=1)
        port = skiff.listener_port()
        status, _, _ = request(port, "/trap", headers={"x-trap": "1"})
        assert status == 503
        assert "/trap" not in backend.hits
        status, headers, _ = request(port, "/after")
        assert status == 200
        assert headers["x-trap-module"] == "ok"
        assert "proxy_on_request_headers trapped" in skiff.logs
        assert "wasm plugin trapper" in skiff.logs
    finally:
        backend.close()


def test_trap_fail_open_lets_the_request_through(skiff_factory):
    backend, config = trap_config(True)
    try:
        skiff = skiff_factory(config, concurrency=1)
        status, _, _ = request(skiff.listener_port(), "/trap", headers={"x-trap": "1"})
        assert status == 200
        assert backend.hits["/trap"] == 1
    finally:
        backend.close()


def test_unknown_runtime_is_a_config_error(skiff_factory, tmp_path, skiff_bin):
    from helpers import run_validate
    config = {"static_resources": {"listeners": [http_listener("w", [
        {"match": {"prefix": "/"}, "route": {"cluster": "c"}}], http_filters=[
        {"name": "w", "typed_config": {"@type": WASM_TYPE, "config": {"vm_config": {
            "runtime": "envoy.wasm.runtime.wavm", "code": {"local": {"inline_string": "x"}}}}}},
        {"name": "envoy.filters.http.router"}])], "clusters": [static_cluster("c", 1)]}}
    code, out = run_validate(skiff_bin, json.dumps(config), tmp_path, name="bad.json")
    assert code != 0
    assert "config.vm_config.runtime" in out


# ---- the V8 engine is a module loaded on demand ----------------------------------------------------------

def mapped_libraries(pid):
    """The file names of the shared objects mapped into a process."""
    names = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].startswith("/"):
            names.add(Path(parts[5]).name)
    return names


def has_lib(names, prefix):
    return any(name.startswith(prefix) for name in names)


def test_without_wasm_filters_libnode_is_not_mapped(skiff_factory, skiff_bin):
    backend = CountingBackend()
    try:
        routes = [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]
        listener = http_listener("plain", routes, http_filters=[{"name": "envoy.filters.http.router"}])
        skiff = skiff_factory(bootstrap([listener], [static_cluster("backend", backend.port)]), concurrency=1)
        status, _, _ = request(skiff.listener_port(), "/plain")
        assert status == 200
        names = mapped_libraries(skiff.pid)
        assert has_lib(names, "libstdc++"), names  # the listing itself works
        assert not has_lib(names, "libnode"), names
        assert not has_lib(names, "libicu"), names
        assert not has_lib(names, "libskiff_wasm_v8"), names
    finally:
        backend.close()


def test_wasm_filter_loads_the_engine_module_and_works(skiff_factory):
    backend, config = trap_config(False)
    try:
        skiff = skiff_factory(config, concurrency=1)
        status, headers, _ = request(skiff.listener_port(), "/ok")
        assert status == 200
        assert headers["x-trap-module"] == "ok"
        names = mapped_libraries(skiff.pid)
        assert has_lib(names, "libskiff_wasm_v8.so"), names
        assert has_lib(names, "libnode.so"), names
    finally:
        backend.close()


def missing_engine_config(fail_open):
    wasm = {"name": "w", "typed_config": {"@type": WASM_TYPE, "config": {
        "name": "w", "fail_open": fail_open,
        "vm_config": {"runtime": "envoy.wasm.runtime.v8", "code": {"local": {"inline_string": "x"}}}}}}
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]
    return [http_listener("w", routes, http_filters=[wasm, {"name": "envoy.filters.http.router"}])]


def test_engine_that_cannot_be_loaded_is_a_config_error(tmp_path, skiff_bin):
    missing = tmp_path / "nowhere" / "libskiff_wasm_v8.so"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bootstrap(missing_engine_config(False), [static_cluster("backend", 1)])))
    env = dict(os.environ, SKIFF_WASM_ENGINE=str(missing))
    proc = subprocess.run([str(skiff_bin), "--mode", "validate", "-c", str(path)], capture_output=True, text=True,
                          timeout=30, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "config.vm_config.runtime" in out
    assert str(missing) in out  # dlerror() names the file it could not open


def test_engine_that_cannot_be_loaded_fail_open_bypasses_the_filter(skiff_factory, tmp_path, monkeypatch):
    backend = CountingBackend()
    try:
        monkeypatch.setenv("SKIFF_WASM_ENGINE", str(tmp_path / "nowhere.so"))
        skiff = skiff_factory(bootstrap(missing_engine_config(True), [static_cluster("backend", backend.port)]),
                              concurrency=1)
        status, _, _ = request(skiff.listener_port(), "/open")
        assert status == 200
        assert backend.hits["/open"] == 1
        assert "config.vm_config.runtime" in skiff.logs
        assert not has_lib(mapped_libraries(skiff.pid), "libnode")
    finally:
        backend.close()
