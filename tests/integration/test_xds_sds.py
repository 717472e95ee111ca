"""SDS over ADS: secrets named by `sds_config: {ads: {}}` in LDS listeners and CDS clusters are subscribed on
the ADS stream; a listener/cluster warms until its secrets arrive; a pushed secret rotates the certificate."""

import json
import ssl

import pytest

from helpers import free_port, wait_until
from test_xds_server import Lines, SERVER, CDS, LDS
from tls_helpers import CERTS_BIN, EchoBackend, Pki, client_context, tls_get

SDS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
DOWNSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
UPSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
ADS = {"ads": {}, "resource_api_version": "V3"}

pytestmark = pytest.mark.skipif(not SERVER.exists(), reason=f"build skiff-xds-server first ({SERVER})")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if not CERTS_BIN.exists():
        pytest.skip(f"skiff-certs not built: {CERTS_BIN}")
    p = Pki(tmp_path_factory.mktemp("pki"))
    p.a = p.workload("a", "shop", "cart", "--dns", "localhost")
    p.b = p.workload("b", "shop", "cart", "--dns", "localhost")
    return p


@pytest.fixture
def xds_server():
    s = Lines([str(SERVER)])
    hello = s.read()
    assert hello["event"] == "listening"
    s.port = hello["port"]
    yield s
    s.close()


@pytest.fixture
def echo():
    b = EchoBackend()
    yield b
    b.close()


def bootstrap(xds_port):
    return {
        "node": {"id": "sidecar~127.0.0.1~sds-test.default~default.svc.cluster.local", "cluster": "sds-test"},
        "dynamic_resources": {
            "ads_config": {"api_type": "GRPC", "transport_api_version": "V3",
                           "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}]},
            "cds_config": ADS, "lds_config": ADS,
        },
        "static_resources": {"clusters": [{
            "name": "xds-grpc", "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": "xds-grpc", "endpoints": [{"lb_endpoints": [{"endpoint": {
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": xds_port}}}}]}]}}]},
    }


def tls_listener(port, secret="server-cert"):
    return {
        "name": "tls-in",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{
            "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": DOWNSTREAM_TLS, "common_tls_context": {
                    "tls_certificate_sds_secret_configs": [{"name": secret, "sds_config": ADS}]}}},
            "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                "@type": HCM, "stat_prefix": "tls_in",
                "route_config": {"name": "r", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                    {"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]}]},
                "http_filters": [{"name": "envoy.filters.http.router"}]}}]}],
    }


def backend_cluster(port):
    return {"name": "backend", "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": "backend", "endpoints": [{"lb_endpoints": [{"endpoint": {
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}}


def cert_secret(name, directory):
    return {"name": name, "tls_certificate": {
        "certificate_chain": {"filename": str(directory / "cert-chain.pem")},
        "private_key": {"filename": str(directory / "key.pem")}}}


def push(server, path, snapshot, command="push"):
    path.write_text(json.dumps(snapshot))
    reply = server.command(f"{command} {path}")
    assert reply["ok"] and not reply.get("errors"), reply
    return reply


def requests_of(server, type_url):
    return [r for r in server.command("requests")["requests"] if r["type_url"] == type_url]


def acked(server, type_url, version):
    nonces = {r["nonce"] for r in server.command("responses")["responses"]
              if r["type_url"] == type_url and r["version"] == version}
    return any(r["response_nonce"] in nonces and r["error_detail"] is None and r["version_info"] == version
               for r in requests_of(server, type_url))


def leaf_serial(directory):
    return ssl._ssl._test_decode_cert(str(directory / "cert-chain.pem"))["serialNumber"]


def served_serial(port, pki):
    try:
        return tls_get(port, client_context(pki.root))[3]["cert"]["serialNumber"]
    except (OSError, ssl.SSLError, ConnectionError):
        return None


def admin_up(skiff):
    try:
        return skiff.admin_get("/ready")[0]
    except OSError:
        return None


def test_listener_warms_on_its_ads_secret_and_rotates(pki, echo, xds_server, skiff_factory, tmp_path):
    port = free_port()
    push(xds_server, tmp_path / "v1.json",
         {"listeners": [tls_listener(port)], "clusters": [backend_cluster(echo.port)]}, "load")
    skiff = skiff_factory(bootstrap(xds_server.port), wait_ready=False)
    assert wait_until(lambda: admin_up(skiff) is not None), skiff.logs

    # The listener names an ADS secret: skiff subscribes to it by name and holds the listener meanwhile.
    assert wait_until(lambda: any("server-cert" in r["resource_names"] for r in requests_of(xds_server, SDS)))
    assert served_serial(port, pki) is None  # not bound while warming
    assert admin_up(skiff) != 200  # the first configuration is not warm yet
    dump = json.loads(skiff.admin_get("/config_dump")[1])["configs"]
    listeners = [c for c in dump if c["@type"].endswith("ListenersConfigDump")][0]
    warming = [l for l in listeners.get("dynamic_listeners", []) if l["name"] == "tls-in"]
    assert warming and "warming_state" in warming[0], listeners

    # The secret arrives: the listener goes active with that certificate and the sidecar is ready.
    v2 = push(xds_server, tmp_path / "v2.json", {"secrets": [cert_secret("server-cert", pki.a)]})
    assert wait_until(lambda: served_serial(port, pki) == leaf_serial(pki.a)), skiff.logs
    assert wait_until(lambda: acked(xds_server, SDS, v2["version"]))
    assert wait_until(lambda: admin_up(skiff) == 200)
    assert tls_get(port, client_context(pki.root))[0] == 200

    # Rotation: a new version of the secret is served to new handshakes.
    v3 = push(xds_server, tmp_path / "v3.json", {"secrets": [cert_secret("server-cert", pki.b)]})
    assert wait_until(lambda: served_serial(port, pki) == leaf_serial(pki.b)), skiff.logs
    assert wait_until(lambda: acked(xds_server, SDS, v3["version"]))

    # A listener that names another secret: the SDS subscription follows LDS.
    push(xds_server, tmp_path / "v4.json", {"listeners": [tls_listener(port, "other-cert")]})
    assert wait_until(lambda: requests_of(xds_server, SDS)[-1]["resource_names"] == ["other-cert"]), \
        requests_of(xds_server, SDS)[-1]
    # The replacement warms; the active listener keeps serving the old certificate meanwhile.
    assert served_serial(port, pki) == leaf_serial(pki.b)
    push(xds_server, tmp_path / "v5.json", {"secrets": [cert_secret("other-cert", pki.a)]})
    assert wait_until(lambda: served_serial(port, pki) == leaf_serial(pki.a)), skiff.logs


def test_cluster_warms_on_its_ads_validation_secret(pki, xds_server, skiff_factory, tmp_path):
    cluster = backend_cluster(free_port())
    cluster["name"] = "tls-upstream"
    cluster["load_assignment"]["cluster_name"] = "tls-upstream"
    cluster["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": UPSTREAM_TLS, "sni": "localhost", "common_tls_context": {
            "validation_context_sds_secret_config": {"name": "mesh-root", "sds_config": ADS}}}}
    push(xds_server, tmp_path / "v1.json", {"clusters": [cluster]}, "load")
    skiff = skiff_factory(bootstrap(xds_server.port), wait_ready=False)
    assert wait_until(lambda: admin_up(skiff) is not None), skiff.logs
    assert wait_until(lambda: any("mesh-root" in r["resource_names"] for r in requests_of(xds_server, SDS)))

    def state():
        dump = json.loads(skiff.admin_get("/config_dump")[1])["configs"]
        clusters = [c for c in dump if c["@type"].endswith("ClustersConfigDump")][0]
        names = lambda key: [c["cluster"]["name"] for c in clusters.get(key, []) if "cluster" in c]
        return names("dynamic_active_clusters"), names("dynamic_warming_clusters")

    assert state() == ([], ["tls-upstream"])
    assert wait_until(lambda: acked(xds_server, CDS, "1"))  # warming is not a NACK
    push(xds_server, tmp_path / "v2.json", {"secrets": [
        {"name": "mesh-root", "validation_context": {"trusted_ca": {"filename": str(pki.root)}}}]})
    assert wait_until(lambda: state() == (["tls-upstream"], [])), state()
    assert wait_until(lambda: admin_up(skiff) == 200)


def secrets_dump(skiff):
    dump = json.loads(skiff.admin_get("/config_dump")[1])["configs"]
    return [c for c in dump if c["@type"].endswith("SecretsConfigDump")][0]


def stat(skiff, name):
    for line in skiff.admin_get(f"/stats?filter=^{name}$")[1].splitlines():
        key, _, value = line.partition(": ")
        if key == name:
            return value
    return None


def test_secrets_in_config_dump_redacted_and_sds_stats(pki, echo, xds_server, skiff_factory, tmp_path):
    port = free_port()
    push(xds_server, tmp_path / "v1.json",
         {"listeners": [tls_listener(port)], "clusters": [backend_cluster(echo.port)]}, "load")
    skiff = skiff_factory(bootstrap(xds_server.port), wait_ready=False)
    assert wait_until(lambda: admin_up(skiff) is not None), skiff.logs
    assert wait_until(lambda: any("server-cert" in r["resource_names"] for r in requests_of(xds_server, SDS)))

    # Subscribed, not in yet: listed as warming by name, as Envoy does.
    assert wait_until(lambda: [s["name"] for s in secrets_dump(skiff).get("dynamic_warming_secrets", [])]
                      == ["server-cert"]), secrets_dump(skiff)
    assert "dynamic_active_secrets" not in secrets_dump(skiff)

    key = (pki.a / "key.pem").read_text()
    secret = {"name": "server-cert", "tls_certificate": {
        "certificate_chain": {"filename": str(pki.a / "cert-chain.pem")},
        "private_key": {"inline_string": key}}}
    v2 = push(xds_server, tmp_path / "v2.json", {"secrets": [secret]})
    assert wait_until(lambda: acked(xds_server, SDS, v2["version"]))
    assert wait_until(lambda: served_serial(port, pki) == leaf_serial(pki.a)), skiff.logs

    dump = secrets_dump(skiff)
    assert "dynamic_warming_secrets" not in dump, dump
    [active] = dump["dynamic_active_secrets"]
    assert active["name"] == "server-cert" and active["version_info"] == v2["version"]
    assert "last_updated" in active
    tls = active["secret"]["tls_certificate"]
    assert tls["private_key"] == {"inline_string": "[redacted]"}, tls  # never the key itself
    assert "BEGIN" not in json.dumps(dump)
    assert tls["certificate_chain"]["filename"].endswith("cert-chain.pem")

    # Envoy's sds.<name>.* stats.
    assert stat(skiff, "sds.server-cert.update_success") == "1"
    assert stat(skiff, "sds.server-cert.update_rejected") == "0"
    assert stat(skiff, "sds.server-cert.init_fetch_timeout") == "0"
    assert stat(skiff, "sds.server-cert.version_text") == f"\"{v2['version']}\""
    assert int(stat(skiff, "sds.server-cert.update_time")) > 0
