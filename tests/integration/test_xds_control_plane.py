"""Control-plane facts Envoy exposes: control_plane.identifier (a text readout from the responses), the
rate_limit_settings token bucket (control_plane.rate_limit_enforced), and the version gauges rendered
unsigned like Envoy's uint64 gauges."""

import json

import pytest

from helpers import wait_until
from test_xds import skiff_config, snapshot, load, acked
from test_xds_server import Lines, SERVER, CDS, EDS

pytestmark = pytest.mark.skipif(not SERVER.exists(), reason=f"build skiff-xds-server first ({SERVER})")


@pytest.fixture
def xds_server():
    s = Lines([str(SERVER)])
    hello = s.read()
    assert hello["event"] == "listening"
    s.port = hello["port"]
    yield s
    s.close()


def test_identifier_rate_limit_and_unsigned_version_gauge(xds_server, httpbin, skiff_factory, tmp_path):
    assert xds_server.command("identifier istiod-5d8f9c-x2k4")["ok"]
    v1 = load(xds_server, tmp_path / "v1.json", snapshot(httpbin))
    config = skiff_config(xds_server.port, False)
    # One token refilled at 5/s: the CDS ACK, the EDS and RDS requests have to wait for tokens.
    config["dynamic_resources"]["ads_config"]["rate_limit_settings"] = {"max_tokens": 1, "fill_rate": 5}
    skiff = skiff_factory(config)
    assert wait_until(lambda: acked(xds_server, CDS, v1["version"], False))
    assert wait_until(lambda: acked(xds_server, EDS, v1["version"], False))

    def stats():
        return skiff.stats()

    assert wait_until(lambda: stats().get("control_plane.identifier") == '"istiod-5d8f9c-x2k4"'), \
        {k: v for k, v in stats().items() if k.startswith("control_plane")}
    assert stats()["control_plane.rate_limit_enforced"] >= 1
    # Rate-limited requests still went out in order: every update was ACKed and traffic flows.
    status, body = skiff.admin_get("/stats?format=json")
    values = {s["name"]: s.get("value") for s in json.loads(body)["stats"] if "name" in s}
    assert isinstance(values["cluster_manager.cds.version"], int) and values["cluster_manager.cds.version"] >= 0
    for line in skiff.admin_get("/stats")[1].splitlines():
        if line.endswith(".version: 0") or ".version: " not in line:
            continue
        assert not line.split(": ")[1].startswith("-"), line  # uint64 like Envoy's gauges
    prom = skiff.admin_get("/stats/prometheus")[1]
    version_lines = [l for l in prom.splitlines() if l.startswith("envoy_cluster_manager_cds_version")]
    assert version_lines and not version_lines[0].split()[-1].startswith("-"), version_lines
