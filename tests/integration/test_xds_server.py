"""skiff-xds-server serves snapshots from files; skiff-xds-driver (the skiff_xds library) ACKs and NACKs them."""

import json
import os
import select
import subprocess
import time
from pathlib import Path

import pytest

from conftest import SHARED, SKIFF_BIN

BIN = Path(SKIFF_BIN).parent
SERVER = BIN / "skiff-xds-server"
DRIVER = BIN / "skiff-xds-driver"
CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
EDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LDS = "type.googleapis.com/envoy.config.listener.v3.Listener"
RDS = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
ISTIO = SHARED / "fixtures" / "istio"

pytestmark = pytest.mark.skipif(not SERVER.exists() or not DRIVER.exists(),
                                reason=f"build skiff-xds-server and skiff-xds-driver first ({BIN})")


class Lines:
    """A child process speaking JSON lines on stdout; reads with a deadline."""

    def __init__(self, args, env=None):
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env)
        self.seen = []
        self.buf = b""

    def read(self, timeout=10.0):
        # Own line buffer over os.read: select() cannot see lines already sitting in a file object's buffer.
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, left))
            if not ready:
                raise TimeoutError(f"no output from {self.proc.args[0]} in {timeout}s")
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise EOFError(f"{self.proc.args[0]} exited: {self.proc.stderr.read()}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        event = json.loads(line)
        self.seen.append(event)
        return event

    def command(self, text):
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        return self.read()

    def wait_for(self, pred, timeout=10.0):
        for event in self.seen:
            if pred(event):
                return event
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = self.read(max(0.01, deadline - time.monotonic()))
            if pred(event):
                return event
        raise TimeoutError("event not seen")

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (subprocess.TimeoutExpired, BrokenPipeError):
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def server():
    s = Lines([str(SERVER)])
    hello = s.read()
    assert hello["event"] == "listening"
    s.port = hello["port"]
    yield s
    s.close()


def start_driver(port, *subscriptions, delta=False):
    args = [str(DRIVER), "--target", f"127.0.0.1:{port}", "--backoff-ms", "50", "--node-id", "sidecar~10.0.0.1~p.ns~ns.svc.cluster.local"]
    if delta:
        args.append("--delta")
    for sub in subscriptions:
        args += ["--subscribe", sub]
    env = dict(os.environ, ISTIO_META_CLUSTER_ID="Kubernetes")
    return Lines(args, env=env)


def requests(server, type_url):
    return [r for r in server.command("requests")["requests"] if r["type_url"] == type_url]


def wait_requests(server, pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [r for r in server.command("requests")["requests"] if pred(r)]
        if found:
            return found
        time.sleep(0.02)
    raise TimeoutError("request not received")


SNAPSHOT_V1 = """
clusters:
- name: backend
  type: EDS
  connect_timeout: 1s
  eds_cluster_config: {eds_config: {ads: {}}}
endpoints:
- cluster_name: backend
  endpoints:
  - lb_endpoints:
    - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8080}}}
"""

PUSH = """
clusters:
- name: second
  type: STATIC
  connect_timeout: 2s
"""


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
def test_serves_files_pushes_updates_and_records_ack_nack(server, tmp_path, delta):
    (tmp_path / "snap.yaml").write_text(SNAPSHOT_V1)
    (tmp_path / "push.yaml").write_text(PUSH)
    loaded = server.command(f"load {tmp_path / 'snap.yaml'}")
    assert loaded["ok"] and loaded["errors"] == [], loaded
    assert loaded["counts"] == {CDS: 1, EDS: 1}

    driver = start_driver(server.port, CDS, f"{EDS}=backend", delta=delta)
    try:
        update = driver.wait_for(lambda e: e.get("event") == "update" and e["type_url"] == CDS)
        assert update["resources"] == ["backend"] and update["accepted"]
        driver.wait_for(lambda e: e.get("event") == "update" and e["type_url"] == EDS)
        ack = wait_requests(server, lambda r: r["type_url"] == CDS and r["response_nonce"])[0]
        assert ack["error_detail"] is None
        if not delta:
            assert ack["version_info"] == loaded["version"]
        first = requests(server, CDS)[0]
        assert first["node_id"] == "sidecar~10.0.0.1~p.ns~ns.svc.cluster.local"

        # A pushed file adds a cluster, keeping the others.
        pushed = server.command(f"push {tmp_path / 'push.yaml'}")
        update = driver.wait_for(lambda e: e.get("event") == "update" and "second" in e["resources"])
        assert update["accepted"]
        if not delta:
            assert sorted(update["resources"]) == ["backend", "second"]  # SotW CDS: the complete set
            wait_requests(server, lambda r: r["type_url"] == CDS and r["version_info"] == pushed["version"])

        # An undecodable resource: NACKed with error_detail; for SotW the version stays the last good one.
        server.command(f"invalid {CDS} broken")
        nack = wait_requests(server, lambda r: r["type_url"] == CDS and r["error_detail"])[0]
        assert "broken" in nack["error_detail"]["message"], nack
        assert nack["error_detail"]["code"] == 13
        responses = [r for r in server.command("responses")["responses"] if r["type_url"] == CDS]
        assert nack["response_nonce"] == responses[-1]["nonce"]
        if not delta:
            assert nack["version_info"] == pushed["version"]

        # The next good update is ACKed.
        fixed = server.command(f"remove {CDS} broken")
        wait_requests(server, lambda r: r["type_url"] == CDS and r["error_detail"] is None
                      and r["response_nonce"] and (delta or r["version_info"] == fixed["version"]))
    finally:
        driver.close()


def test_drop_and_restart_reconnects_with_versions(server, tmp_path):
    (tmp_path / "snap.yaml").write_text(SNAPSHOT_V1)
    loaded = server.command(f"load {tmp_path / 'snap.yaml'}")
    driver = start_driver(server.port, CDS)
    try:
        wait_requests(server, lambda r: r["type_url"] == CDS and r["response_nonce"])
        assert server.command("drop")["ok"]
        again = wait_requests(server, lambda r: r["type_url"] == CDS and r["stream"] > 1)[0]
        assert again["version_info"] == loaded["version"] and again["response_nonce"] == ""
        assert server.command("stop")["ok"]
        driver.wait_for(lambda e: e.get("event") == "connected" and e["value"] is False)
        assert server.command("start")["ok"]
        wait_requests(server, lambda r: r["type_url"] == CDS and r["stream"] > 2)
        driver.wait_for(lambda e: e.get("event") == "connected" and e["value"] is True
                        and len([x for x in driver.seen if x.get("event") == "connected"]) >= 3)
    finally:
        driver.close()


@pytest.mark.parametrize("dump", ["sidecar-1.10-full-dump/configdump.json", "sidecar-lds-dump/configdump.yaml",
                                  "sidecar-eds-dump/configdump.json"])
def test_istio_fixtures_are_served_and_acked(server, dump):
    if not (ISTIO / dump).exists():
        pytest.skip(f"no Istio fixtures at {ISTIO}")
    loaded = server.command(f"load {ISTIO / dump}")
    assert loaded["ok"] and loaded["errors"] == [], loaded["errors"]
    types = list(loaded["counts"])
    subs = [t if t in (CDS, LDS) else f"{t}=" + ",".join(_dump_names(ISTIO / dump, t)) for t in types]
    driver = start_driver(server.port, *subs)
    try:
        for type_url in types:
            update = driver.wait_for(lambda e, t=type_url: e.get("event") == "update" and e["type_url"] == t)
            assert update["accepted"], update["error"]
            assert len(update["resources"]) == loaded["counts"][type_url]
            wait_requests(server, lambda r, t=type_url: r["type_url"] == t and r["response_nonce"]
                          and r["error_detail"] is None)
    finally:
        driver.close()


def _dump_names(path, type_url):
    """Names of the dynamic RDS/EDS resources in a config dump (either JSON spelling)."""
    def get(d, snake):
        camel = snake.split("_")[0] + "".join(w.title() for w in snake.split("_")[1:])
        return d.get(snake, d.get(camel))
    names = []
    for config in json.loads(Path(path).read_text())["configs"]:
        if type_url == RDS and config["@type"].endswith("RoutesConfigDump"):
            names += [get(r, "route_config")["name"] for r in get(config, "dynamic_route_configs") or []]
        if type_url == EDS and config["@type"].endswith("EndpointsConfigDump"):
            names += [get(get(e, "endpoint_config"), "cluster_name")
                      for e in get(config, "dynamic_endpoint_configs") or []]
    return names
