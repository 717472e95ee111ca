"""Istio-style mutual TLS for the netns mesh: turns a sidecar bootstrap from sidecar_config.py into the shape
istiod sends when PeerAuthentication is STRICT and auto-mTLS is on.

    hook = MeshMtls({"client": "/pki/client", "server": "/pki/server"}, root="/pki/ca/root-cert.pem")
    Mesh(pods, config_hook=hook)

What changes (names as in an Istio 1.10 config dump):
- secrets: bootstrap `static_resources.secrets` `default` (the pod's cert-chain.pem + key.pem) and `ROOTCA`
  (root-cert.pem), referenced by name as Istio's SDS secrets are (there over SDS from the agent).
- outbound: every `outbound|<port>||<pod>` cluster of a pod with credentials gets Istio's
  `transport_socket_matches` (`tlsMode-istio`: UpstreamTlsContext with `default`, a
  `combined_validation_context` of `ROOTCA` + the peer's SPIFFE ID, ALPN `istio-peer-exchange`/`istio`, SNI
  `outbound_.<port>_._.<pod>.<ns>.svc.<td>`; `tlsMode-disabled`: raw_buffer) and its endpoint the
  `envoy.transport_socket_match: {tlsMode: istio}` label.
- inbound (virtualInbound, STRICT): every chain only takes TLS (`transport_protocol: tls`), with a
  DownstreamTlsContext requiring a client certificate whose URI SAN matches `allowed_peers` (default: any
  SPIFFE ID of the trust domain, as Istio), ALPN h2/http/1.1; HTTP chains forward the peer's identity in
  x-forwarded-client-cert (APPEND_FORWARD + subject/dns/uri, Istio's inbound settings). A plaintext
  connection matches no chain and is closed.
"""
import copy

UPSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
DOWNSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
TLS_SOCKET = "envoy.transport_sockets.tls"
MATCH_KEY = "envoy.transport_socket_match"


def spiffe_id(trust_domain, ns, sa):
    return f"spiffe://{trust_domain}/ns/{ns}/sa/{sa}"


class MeshMtls:
    """A Mesh config_hook. certs: pod name -> workload directory (cert-chain.pem, key.pem) minted by
    skiff-certs for spiffe://<trust_domain>/ns/<namespace>/sa/<pod name>. Pods without credentials keep
    plaintext (their clusters get no TLS and other sidecars send them plaintext, as auto-mTLS does for
    pods without a sidecar)."""

    def __init__(self, certs, root, trust_domain="cluster.local", namespace="default", allowed_peers=None,
                 strict=True):
        self.certs = {pod: str(d) for pod, d in certs.items()}
        self.root = str(root)
        self.trust_domain = trust_domain
        self.namespace = namespace
        self.allowed_peers = list(allowed_peers) if allowed_peers else None
        self.strict = strict

    def identity(self, pod):
        return spiffe_id(self.trust_domain, self.namespace, pod)

    def secrets(self, pod):
        d = self.certs[pod]
        return [{"name": "default", "tls_certificate": {
                    "certificate_chain": {"filename": f"{d}/cert-chain.pem"},
                    "private_key": {"filename": f"{d}/key.pem"}}},
                {"name": "ROOTCA", "validation_context": {"trusted_ca": {"filename": self.root}}}]

    def upstream_tls(self, peer, port):
        common = {"tls_params": {"tls_maximum_protocol_version": "TLSv1_3"},
                  "tls_certificate_sds_secret_configs": [{"name": "default"}],
                  "combined_validation_context": {
                      "default_validation_context": {"match_subject_alt_names": [{"exact": self.identity(peer)}]},
                      "validation_context_sds_secret_config": {"name": "ROOTCA"}},
                  "alpn_protocols": ["istio-peer-exchange", "istio"]}
        sni = f"outbound_.{port}_._.{peer}.{self.namespace}.svc.{self.trust_domain}"
        return {"name": TLS_SOCKET, "typed_config": {"@type": UPSTREAM_TLS, "common_tls_context": common,
                                                     "sni": sni}}

    def downstream_tls(self):
        if self.allowed_peers:
            sans = [{"san_type": "URI", "matcher": {"exact": p}} for p in self.allowed_peers]
        else:
            sans = [{"san_type": "URI", "matcher": {"prefix": f"spiffe://{self.trust_domain}/"}}]
        common = {"tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
                  "tls_certificate_sds_secret_configs": [{"name": "default"}],
                  "combined_validation_context": {
                      "default_validation_context": {"match_typed_subject_alt_names": sans},
                      "validation_context_sds_secret_config": {"name": "ROOTCA"}},
                  "alpn_protocols": ["h2", "http/1.1"]}
        return {"name": TLS_SOCKET, "typed_config": {"@type": DOWNSTREAM_TLS, "common_tls_context": common,
                                                     "require_client_certificate": True}}

    # ---- the hook
    def __call__(self, pod, config):
        if pod.name not in self.certs:
            return config
        config = copy.deepcopy(config)
        static = config["static_resources"]
        static["secrets"] = static.get("secrets", []) + self.secrets(pod.name)
        for cluster in static["clusters"]:
            self._outbound(cluster)
        for listener in static["listeners"]:
            if listener["name"] == "virtualInbound" and self.strict:
                self._strict_inbound(listener)
        return config

    def _outbound(self, cluster):
        parts = cluster["name"].split("|")
        if len(parts) != 4 or parts[0] != "outbound" or parts[3] not in self.certs:
            return
        port, peer = int(parts[1]), parts[3]
        for group in cluster["load_assignment"]["endpoints"]:
            for ep in group["lb_endpoints"]:
                ep.setdefault("metadata", {}).setdefault("filter_metadata", {})[MATCH_KEY] = {"tlsMode": "istio"}
        cluster["transport_socket_matches"] = [
            {"name": "tlsMode-istio", "match": {"tlsMode": "istio"}, "transport_socket": self.upstream_tls(peer, port)},
            {"name": "tlsMode-disabled", "match": {},
             "transport_socket": {"name": "envoy.transport_sockets.raw_buffer"}}]

    def _strict_inbound(self, listener):
        for chain in listener["filter_chains"]:
            chain.setdefault("filter_chain_match", {})["transport_protocol"] = "tls"
            chain["transport_socket"] = self.downstream_tls()
            for f in chain["filters"]:
                if f["name"] == "envoy.filters.network.http_connection_manager":
                    f["typed_config"]["forward_client_cert_details"] = "APPEND_FORWARD"
                    f["typed_config"]["set_current_client_cert_details"] = {"subject": True, "dns": True,
                                                                            "uri": True}
        # tls_inspector must look at every port now (sidecar_config disables it on TCP ports).
        for f in listener.get("listener_filters", []):
            if f["name"] == "envoy.filters.listener.tls_inspector":
                f.pop("filter_disabled", None)
