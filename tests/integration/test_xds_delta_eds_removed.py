"""Delta xDS: an EDS resource the server removed is not announced again in the reconnect's
initial_resource_versions (Skiff keeps the last assignment, as Envoy does, but no longer claims a version)."""

import pytest

from helpers import request, wait_until
from test_xds import acked, load, requests_of, skiff_config, snapshot, xds_server  # noqa: F401 (fixture)
from test_xds_server import EDS, SERVER

pytestmark = pytest.mark.skipif(not SERVER.exists(), reason=f"build skiff-xds-server first ({SERVER})")


def test_a_removed_eds_resource_is_not_reannounced(xds_server, httpbin, skiff_factory, tmp_path):
    load(xds_server, tmp_path / "v1.json", snapshot(httpbin))
    skiff = skiff_factory(skiff_config(xds_server.port, True))
    port = skiff.listener_port("ingress")
    assert request(port, "/get")[0] == 200

    removed = xds_server.command(f"remove {EDS} httpbin")
    assert removed["ok"], removed
    assert wait_until(lambda: acked(xds_server, EDS, removed["version"], True))
    assert wait_until(lambda: skiff.stats()["cluster.httpbin.update_empty"] >= 1)

    assert xds_server.command("stop")["ok"]
    assert wait_until(lambda: skiff.stats()["control_plane.connected_state"] == 0)
    before = len(requests_of(xds_server, EDS))
    assert xds_server.command("start")["ok"]
    assert wait_until(lambda: len(requests_of(xds_server, EDS)) > before, timeout=20)
    resub = requests_of(xds_server, EDS)[before]
    assert "httpbin" not in (resub.get("initial_resource_versions") or {}), resub
