"""Per-pod skiff bootstrap in Istio's sidecar shape (virtualOutbound, 0.0.0.0_<port>, virtualInbound, 15021, 15090).

Every function returns plain dicts (Envoy v3 JSON); `bootstrap()` assembles them. The names follow what istiod
generates so stats and config dumps read the same: listeners `virtualOutbound`, `virtualInbound`, `0.0.0.0_<port>`,
clusters `outbound|<port>||<service>`, `inbound|<port>||`, `PassthroughCluster`, `InboundPassthroughClusterIpv4`,
`BlackHoleCluster`, `prometheus_stats`, `agent`.
"""

ADMIN_PORT = 15000
OUTBOUND_PORT = 15001
INBOUND_PORT = 15006
HEALTH_PORT = 15021
PROMETHEUS_PORT = 15090
TPROXY_MARK = 1337
INBOUND_SOURCE_V4 = "127.0.0.6"
INBOUND_SOURCE_V6 = "::6"
OUTBOUND_HEADER = "x-skiff-outbound"
INBOUND_HEADER = "x-skiff-inbound"

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
TCP_PROXY = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
LISTENER_FILTERS = {
    "original_dst": "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst",
    "tls_inspector": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
    "http_inspector": "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector",
    "original_src": "type.googleapis.com/envoy.extensions.filters.listener.original_src.v3.OriginalSrc",
}


def address(ip, port):
    return {"socket_address": {"address": ip, "port_value": port}}


def wildcard(ipv6):
    """The any-address a listener binds: v4, or v6 that also takes v4 (one socket, as a dual-stack pod needs)."""
    if ipv6:
        return {"socket_address": {"address": "::", "port_value": 0, "ipv4_compat": True}}
    return address("0.0.0.0", 0)


def bind(ipv6, port):
    a = wildcard(ipv6)
    a["socket_address"]["port_value"] = port
    return a


def listener_filter(kind, **config):
    return {"name": f"envoy.filters.listener.{kind}", "typed_config": {"@type": LISTENER_FILTERS[kind], **config}}


def tcp_proxy(stat_prefix, cluster):
    return {"name": "envoy.filters.network.tcp_proxy",
            "typed_config": {"@type": TCP_PROXY, "stat_prefix": stat_prefix, "cluster": cluster}}


def hcm(stat_prefix, route_config):
    return {"name": "envoy.filters.network.http_connection_manager",
            "typed_config": {"@type": HCM, "stat_prefix": stat_prefix, "route_config": route_config,
                             "http_filters": [{"name": "envoy.filters.http.router",
                                               "typed_config": {"@type": ROUTER}}]}}


def tagged_route(cluster, header, value, prefix="/"):
    return {"match": {"prefix": prefix}, "route": {"cluster": cluster, "timeout": "0s"},
            "request_headers_to_add": [{"header": {"key": header, "value": value}, "append": False}]}


# ------------------------------------------------------------------ clusters

def static_cluster(name, endpoints):
    """endpoints: [(ip, port)]; an empty list is Istio's BlackHoleCluster shape."""
    return {"name": name, "type": "STATIC", "connect_timeout": "2s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": address(ip, port)}} for ip, port in endpoints]}]}}


def original_dst_cluster(name, source=None):
    c = {"name": name, "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED", "connect_timeout": "2s"}
    if source:
        c["upstream_bind_config"] = {"source_address": {"address": source, "port_value": 0}}  # a SocketAddress
    return c


# ------------------------------------------------------------------ listeners

def virtual_outbound(ipv6):
    """15001: every captured outbound connection lands here and is handed to the listener for its original
    destination port; what nobody claims goes out unchanged through PassthroughCluster."""
    return {"name": "virtualOutbound", "address": bind(ipv6, OUTBOUND_PORT), "use_original_dst": True,
            "traffic_direction": "OUTBOUND",
            "filter_chains": [{"name": "virtualOutbound-catchall-tcp",
                               "filters": [tcp_proxy("PassthroughCluster", "PassthroughCluster")]}]}


def outbound_port(port, dests, client, ipv6):
    """0.0.0.0_<port> (bind_to_port: false). dests: [(pod name, [pod ips], protocol)].
    All-HTTP ports get one HCM chain routing by Host (pod name or IP); otherwise one chain per destination
    matched on its IPs, plus a catch-all passthrough chain."""
    name = f"0.0.0.0_{port}"
    def vhost(pod, ips):
        domains = [pod, f"{pod}:{port}"] + [d for ip in ips for d in (ip, f"{ip}:{port}" if ":" not in ip
                                                                        else f"[{ip}]:{port}")]
        return {"name": f"{pod}:{port}", "domains": domains,
                "routes": [tagged_route(f"outbound|{port}||{pod}", OUTBOUND_HEADER, client)]}

    def http_chain(selected, match=None):
        passthrough = {"name": "allow_any", "domains": ["*"],
                       "routes": [tagged_route("PassthroughCluster", OUTBOUND_HEADER, client)]}
        rc = {"name": str(port), "virtual_hosts": [vhost(p, ips) for p, ips, _ in selected] + [passthrough]}
        chain = {"filters": [hcm(f"outbound_0.0.0.0_{port}", rc)]}
        if match:
            chain["filter_chain_match"] = match
        return chain

    if all(proto == "http" for _, _, proto in dests):
        chains = [http_chain(dests)]
    else:
        chains = []
        for pod, ips, proto in dests:
            match = {"prefix_ranges": [{"address_prefix": ip, "prefix_len": 128 if ":" in ip else 32}
                                       for ip in ips]}
            if proto == "http":
                chains.append(http_chain([(pod, ips, proto)], match))
            else:
                cluster = f"outbound|{port}||{pod}"
                chains.append({"filter_chain_match": match, "filters": [tcp_proxy(cluster, cluster)]})
        chains.append({"name": "passthrough", "filters": [tcp_proxy("PassthroughCluster", "PassthroughCluster")]})
    a = bind(ipv6, port)
    return {"name": name, "address": a, "bind_to_port": False, "traffic_direction": "OUTBOUND",
            "filter_chains": chains}


def virtual_inbound(pod, ports, tproxy, ipv6):
    """15006: chains by original destination port; HTTP ports get an HCM that tags the request, other
    declared ports tcp_proxy to inbound|<port>||, anything else InboundPassthroughClusterIpv4."""
    filters = [listener_filter("original_dst")]
    if tproxy:
        filters.append(listener_filter("original_src", mark=TPROXY_MARK))
    # Inspectors wait for the client's first bytes; declared TCP ports may carry server-first protocols, so
    # (as istiod does) the inspectors are disabled for them.
    tcp_ports = [port for port, proto in ports if proto != "http"]
    for kind in ("tls_inspector", "http_inspector"):
        f = listener_filter(kind)
        rules = [{"destination_port_range": {"start": p, "end": p + 1}} for p in tcp_ports]
        if rules:
            f["filter_disabled"] = rules[0] if len(rules) == 1 else {"or_match": {"rules": rules}}
        filters.append(f)
    chains = []
    for port, proto in ports:
        cluster = f"inbound|{port}||"
        match = {"destination_port": port}
        if proto == "http":
            rc = {"name": f"inbound|{port}||", "virtual_hosts": [
                {"name": f"inbound|http|{port}", "domains": ["*"],
                 "routes": [tagged_route(cluster, INBOUND_HEADER, pod)]}]}
            chains.append({"name": f"0.0.0.0_{port}", "filter_chain_match": match,
                           "filters": [hcm(f"inbound_0.0.0.0_{port}", rc)]})
        else:
            chains.append({"name": f"0.0.0.0_{port}", "filter_chain_match": match,
                           "filters": [tcp_proxy(cluster, cluster)]})
    chains.append({"name": "virtualInbound-catchall-tcp",
                   "filters": [tcp_proxy("InboundPassthroughClusterIpv4", "InboundPassthroughClusterIpv4")]})
    listener = {"name": "virtualInbound", "address": bind(ipv6, INBOUND_PORT), "traffic_direction": "INBOUND",
                "listener_filters": filters, "continue_on_listener_filters_timeout": True,
                "listener_filters_timeout": "1s", "filter_chains": chains}
    if tproxy:
        listener["transparent"] = True
    return listener


def health_listener(ipv6):
    """15021 /healthz/ready → the admin's /ready (Istio routes it to the agent, which asks Envoy's admin)."""
    rc = {"name": "health", "virtual_hosts": [{"name": "health", "domains": ["*"], "routes": [
        {"match": {"prefix": "/healthz/ready"}, "route": {"cluster": "agent", "prefix_rewrite": "/ready"}}]}]}
    return {"name": "health", "address": bind(ipv6, HEALTH_PORT), "filter_chains": [{"filters": [hcm("agent", rc)]}]}


def prometheus_listener(ipv6):
    rc = {"name": "prometheus", "virtual_hosts": [{"name": "prometheus", "domains": ["*"], "routes": [
        {"match": {"prefix": "/stats/prometheus"}, "route": {"cluster": "prometheus_stats"}}]}]}
    return {"name": "prometheus", "address": bind(ipv6, PROMETHEUS_PORT),
            "filter_chains": [{"filters": [hcm("stats", rc)]}]}


# ------------------------------------------------------------------ the whole bootstrap

def bootstrap(pod, pods, tproxy=False, ipv6=False):
    """pod: the Pod this sidecar serves; pods: every Pod in the mesh (objects with .name, .ports, .ips(ipv6))."""
    source = None if tproxy else (INBOUND_SOURCE_V6 if ipv6 else INBOUND_SOURCE_V4)
    clusters = [original_dst_cluster("PassthroughCluster"),
                original_dst_cluster("InboundPassthroughClusterIpv4", source),
                static_cluster("BlackHoleCluster", []),
                static_cluster("agent", [("127.0.0.1", ADMIN_PORT)]),
                static_cluster("prometheus_stats", [("127.0.0.1", ADMIN_PORT)])]
    clusters += [original_dst_cluster(f"inbound|{port}||", source) for port, _ in pod.ports]

    by_port = {}
    for other in pods:
        if other.name == pod.name:
            continue
        for port, proto in other.ports:
            by_port.setdefault(port, []).append((other.name, other.ips(ipv6), proto))
            clusters.append(static_cluster(f"outbound|{port}||{other.name}",
                                           [(other.ips(ipv6)[-1], port)]))
    listeners = [virtual_outbound(ipv6), virtual_inbound(pod.name, pod.ports, tproxy, ipv6),
                 health_listener(ipv6), prometheus_listener(ipv6)]
    listeners += [outbound_port(port, dests, pod.name, ipv6) for port, dests in sorted(by_port.items())]
    return {"node": {"id": f"sidecar~{pod.ips(ipv6)[0]}~{pod.name}.mesh~mesh.svc.cluster.local",
                     "cluster": pod.name},
            "admin": {"address": address("127.0.0.1", ADMIN_PORT)},
            "static_resources": {"listeners": listeners, "clusters": clusters}}
