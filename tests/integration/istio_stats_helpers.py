"""Istio-shaped sidecar configs (metadata exchange + istio.stats as istiod writes them) and a parser for
/stats/prometheus, for test_istio_stats.py."""

import json
import re

WASM_HTTP = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
PLUGIN_CONFIG = "type.googleapis.com/stats.PluginConfig"


def node(workload, namespace, app, version="v1", cluster_id="Kubernetes"):
    """Bootstrap node as istio-agent writes it (id sidecar~ip~pod.ns~ns.svc.cluster.local, metadata)."""
    return {
        "id": f"sidecar~127.0.0.1~{workload}-7d4f8.{namespace}~{namespace}.svc.cluster.local",
        "cluster": f"{app}.{namespace}",
        "metadata": {
            "WORKLOAD_NAME": workload, "NAMESPACE": namespace, "CLUSTER_ID": cluster_id,
            "LABELS": {"app": app, "version": version},
            "EXCHANGE_KEYS": "NAME,NAMESPACE,INSTANCE_IPS,LABELS,OWNER,PLATFORM_METADATA,WORKLOAD_NAME,MESH_ID,"
                             "SERVICE_ACCOUNT,CLUSTER_ID",
        },
    }


def null_vm(code, configuration="{}", root_id=""):
    """A Wasm HTTP filter config naming one of Istio's null-VM built-ins (Istio 1.x's form)."""
    config = {"vm_config": {"runtime": "envoy.wasm.runtime.null", "code": {"local": {"inline_string": code}}},
              "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": configuration}}
    if root_id:
        config["root_id"] = root_id
    return {"@type": WASM_HTTP, "config": config}


def istio_http_filters(native_stats):
    """metadata exchange, stats, router — the order istiod puts them in."""
    stats = {"@type": PLUGIN_CONFIG} if native_stats else null_vm(
        "envoy.wasm.stats", json.dumps({"debug": "false", "stat_prefix": "istio"}), root_id="stats_outbound")
    return [
        {"name": "istio.metadata_exchange", "typed_config": null_vm("envoy.wasm.metadata_exchange")},
        {"name": "istio.stats", "typed_config": stats},
        {"name": "envoy.filters.http.router"},
    ]


def tcp_listener_with_stats(name, stat_prefix, cluster):
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [{"filters": [
            {"name": "istio.stats", "typed_config": {"@type": PLUGIN_CONFIG}},
            {"name": "envoy.filters.network.tcp_proxy", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                "stat_prefix": stat_prefix, "cluster": cluster}},
        ]}],
    }


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def prometheus_samples(text):
    """[(name, {label: value}, float)] of a text exposition."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a Prometheus sample: {line!r}"
        labels = dict(_LABEL.findall(m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def find(samples, name, **labels):
    """Samples of `name` whose labels include `labels`."""
    return [s for s in samples if s[0] == name and all(s[1].get(k) == v for k, v in labels.items())]
