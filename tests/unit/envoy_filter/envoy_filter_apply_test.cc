// EnvoyFilter application: matching and every operation on every applyTo, all-or-nothing per filter.
#include <gtest/gtest.h>

#include "envoy/extensions/filters/http/router/v3/router.pb.h"
#include "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.pb.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls.pb.h"
#include "unit/envoy_filter/test_util.h"

namespace skiff::envoy_filter {
namespace {

using envoy::config::cluster::v3::Cluster;
using envoy::config::listener::v3::Listener;
using envoy::config::route::v3::RouteConfiguration;
using Hcm = envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
using testing::applierFor;
using testing::fromYaml;
using testing::sidecar;

constexpr const char* kListener = R"(
name: 0.0.0.0_8080
address: {socket_address: {address: 0.0.0.0, port_value: 8080}}
traffic_direction: OUTBOUND
listener_filters:
- name: envoy.filters.listener.tls_inspector
  typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}
filter_chains:
- name: chain-a
  filter_chain_match: {server_names: [a.example.com], transport_protocol: tls, application_protocols: [h2, http/1.1]}
  filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: a
      route_config:
        name: "8080"
        virtual_hosts:
        - name: "a:8080"
          domains: ["a"]
          routes:
          - {name: r1, match: {prefix: /one}, route: {cluster: c1}}
          - {name: r2, match: {prefix: /}, direct_response: {status: 200}}
      http_filters:
      - name: envoy.filters.http.cors
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors}
      - name: envoy.filters.http.router
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
- name: chain-b
  filters:
  - name: envoy.filters.network.tcp_proxy
    typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: b, cluster: c2}
)";

std::string manifest(const std::string& patches, const std::string& name = "f") {
  return "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: " + name +
         "}\nspec:\n  configPatches:\n" + patches;
}

Hcm hcmOf(const Listener& l, int chain = 0) {
  Hcm hcm;
  EXPECT_TRUE(l.filter_chains(chain).filters(0).typed_config().UnpackTo(&hcm));
  return hcm;
}

std::vector<std::string> httpFilters(const Listener& l, int chain = 0) {
  std::vector<std::string> out;
  const Hcm hcm = hcmOf(l, chain);
  for (const auto& f : hcm.http_filters()) out.push_back(f.name());
  return out;
}

std::vector<std::string> routes(const Listener& l) {
  std::vector<std::string> out;
  const Hcm hcm = hcmOf(l);
  for (const auto& r : hcm.route_config().virtual_hosts(0).routes()) out.push_back(r.name());
  return out;
}

Listener patched(const std::string& patches, ApplyReport* report = nullptr, Proxy proxy = sidecar()) {
  Listener l = fromYaml<Listener>(kListener);
  ApplyReport r = applierFor(manifest(patches), proxy).patchListener(l);
  if (report) *report = r;
  return l;
}

const std::string kLua = R"(
        name: envoy.filters.http.lua
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua, default_source_code: {inline_string: "x"}}
)";

std::string httpPatch(const std::string& op, const std::string& sub = "envoy.filters.http.router") {
  return "  - applyTo: HTTP_FILTER\n    match:\n      listener:\n        filterChain:\n          filter:\n"
         "            name: envoy.filters.network.http_connection_manager\n" +
         (sub.empty() ? std::string() : "            subFilter: {name: " + sub + "}\n") +
         "    patch:\n      operation: " + op + "\n" + (op == "REMOVE" ? "" : "      value:" + kLua);
}

TEST(EnvoyFilterHttpFilter, InsertBeforeRouter) {
  ApplyReport r;
  Listener l = patched(httpPatch("INSERT_BEFORE"), &r);
  EXPECT_EQ(httpFilters(l), (std::vector<std::string>{"envoy.filters.http.cors", "envoy.filters.http.lua",
                                                      "envoy.filters.http.router"}));
  EXPECT_EQ(r.applied, std::vector<std::string>{"f"});
  EXPECT_TRUE(r.failed.empty());
}

TEST(EnvoyFilterHttpFilter, EachOperation) {
  using V = std::vector<std::string>;
  const std::string cors = "envoy.filters.http.cors", lua = "envoy.filters.http.lua",
                    router = "envoy.filters.http.router";
  EXPECT_EQ(httpFilters(patched(httpPatch("INSERT_AFTER", cors))), (V{cors, lua, router}));
  EXPECT_EQ(httpFilters(patched(httpPatch("INSERT_FIRST"))), (V{lua, cors, router}));
  EXPECT_EQ(httpFilters(patched(httpPatch("ADD", ""))), (V{cors, router, lua}));
  EXPECT_EQ(httpFilters(patched(httpPatch("INSERT_BEFORE", ""))),
            (V{lua, cors, router}));                                                       // no anchor: first
  EXPECT_EQ(httpFilters(patched(httpPatch("INSERT_AFTER", ""))), (V{cors, router, lua}));  // no anchor: last
  EXPECT_EQ(httpFilters(patched(httpPatch("REPLACE", cors))), (V{lua, router}));
  EXPECT_EQ(httpFilters(patched(httpPatch("REMOVE", cors))), (V{router}));
  EXPECT_EQ(httpFilters(patched(httpPatch("INSERT_BEFORE", "envoy.filters.http.absent"))), (V{cors, router}));
  // Legacy names match canonical ones.
  EXPECT_EQ(httpFilters(patched(httpPatch("INSERT_BEFORE", "envoy.router"))), (V{cors, lua, router}));
}

TEST(EnvoyFilterHttpFilter, MergeUnpacksTypedConfig) {
  Listener l = patched(R"(  - applyTo: HTTP_FILTER
    match: {listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager, subFilter: {name: envoy.filters.http.router}}}}}
    patch:
      operation: MERGE
      value:
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router, suppress_envoy_headers: true}
)");
  envoy::extensions::filters::http::router::v3::Router router;
  ASSERT_TRUE(hcmOf(l).http_filters(1).typed_config().UnpackTo(&router));
  EXPECT_TRUE(router.suppress_envoy_headers());
}

TEST(EnvoyFilterNetworkFilter, MergeHcmAndOtherOperations) {
  Listener l = patched(R"(  - applyTo: NETWORK_FILTER
    match: {listener: {filterChain: {filter: {name: envoy.http_connection_manager}}}}
    patch:
      operation: MERGE
      value:
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          server_name: patched
          common_http_protocol_options: {idle_timeout: 30s}
)");
  Hcm hcm = hcmOf(l);
  EXPECT_EQ(hcm.server_name(), "patched");
  EXPECT_EQ(hcm.common_http_protocol_options().idle_timeout().seconds(), 30);
  EXPECT_EQ(hcm.stat_prefix(), "a");      // kept
  EXPECT_EQ(hcm.http_filters_size(), 2);  // kept
  EXPECT_EQ(l.filter_chains(0).filters(0).name(), "envoy.filters.network.http_connection_manager");

  const std::string tcp = R"(
        name: envoy.filters.network.tcp_proxy
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: new, cluster: c3}
)";
  auto op = [&](const std::string& operation, const std::string& anchor) {
    return patched("  - applyTo: NETWORK_FILTER\n    match: {listener: {filterChain: {name: chain-b" +
                   (anchor.empty() ? std::string() : ", filter: {name: " + anchor + "}") +
                   "}}}\n    patch:\n      operation: " + operation + "\n" +
                   (operation == "REMOVE" ? "" : "      value:" + tcp));
  };
  EXPECT_EQ(op("INSERT_FIRST", "").filter_chains(1).filters_size(), 2);
  EXPECT_EQ(op("REMOVE", "envoy.filters.network.tcp_proxy").filter_chains(1).filters_size(), 0);
  envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy proxy;
  ASSERT_TRUE(op("REPLACE", "envoy.tcp_proxy").filter_chains(1).filters(0).typed_config().UnpackTo(&proxy));
  EXPECT_EQ(proxy.cluster(), "c3");
  Listener after = op("INSERT_AFTER", "envoy.filters.network.tcp_proxy");
  ASSERT_EQ(after.filter_chains(1).filters_size(), 2);
  EXPECT_EQ(after.filter_chains(0).filters_size(), 1);  // chain-a untouched
}

TEST(EnvoyFilterNetworkFilter, MergeAndReplaceList) {
  Listener l = patched(R"(  - applyTo: NETWORK_FILTER
    match: {listener: {filterChain: {transportProtocol: tls}}}
    patch:
      operation: MERGE_AND_REPLACE_LIST
      value:
        name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          upgrade_configs: [{upgrade_type: websocket}]
)");
  EXPECT_EQ(hcmOf(l).upgrade_configs_size(), 1);
  EXPECT_EQ(hcmOf(l).http_filters_size(), 2);
}

TEST(EnvoyFilterFilterChain, MatchFields) {
  auto count = [](const std::string& match) {
    Listener l = patched("  - applyTo: FILTER_CHAIN\n    match: {listener: {filterChain: " + match +
                         "}}\n    patch: {operation: REMOVE}\n");
    return l.filter_chains_size();
  };
  EXPECT_EQ(count("{sni: a.example.com}"), 1);
  EXPECT_EQ(count("{sni: b.example.com}"), 2);
  EXPECT_EQ(count("{transportProtocol: tls}"), 1);
  EXPECT_EQ(count("{applicationProtocols: 'h2,http/1.1'}"), 1);
  EXPECT_EQ(count("{applicationProtocols: 'h2,h3'}"), 2);
  EXPECT_EQ(count("{name: chain-b}"), 1);
  EXPECT_EQ(count("{destinationPort: 9999}"), 2);
  EXPECT_EQ(count("{filter: {name: envoy.filters.network.tcp_proxy}}"), 1);  // chains having that filter
  EXPECT_EQ(count("{}"), 0);
}

TEST(EnvoyFilterFilterChain, AddAndMergeTransportSocket) {
  Listener l = patched(R"(  - applyTo: FILTER_CHAIN
    match: {listener: {portNumber: 8080}}
    patch:
      operation: ADD
      value:
        name: added
        filters: [{name: envoy.filters.network.tcp_proxy, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: x, cluster: c}}]
        transport_socket:
          name: envoy.transport_sockets.tls
          typed_config: {"@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext, require_client_certificate: true}
  - applyTo: FILTER_CHAIN
    match: {listener: {filterChain: {name: added}}}
    patch:
      operation: MERGE
      value:
        transportSocket:
          name: envoy.transport_sockets.tls
          typedConfig: {"@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext, common_tls_context: {alpn_protocols: [h2]}}
)");
  ASSERT_EQ(l.filter_chains_size(), 3);
  envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext tls;
  ASSERT_TRUE(l.filter_chains(2).transport_socket().typed_config().UnpackTo(&tls));
  EXPECT_TRUE(tls.require_client_certificate().value());  // deep-merged, not replaced
  EXPECT_EQ(tls.common_tls_context().alpn_protocols(0), "h2");
}

TEST(EnvoyFilterListener, MergeRemoveAndPortOrName) {
  Listener l = patched(R"(  - applyTo: LISTENER
    match: {listener: {portNumber: 8080}}
    patch: {operation: MERGE, value: {per_connection_buffer_limit_bytes: 1024, listener_filters_timeout: 2s}}
)");
  EXPECT_EQ(l.per_connection_buffer_limit_bytes().value(), 1024u);
  EXPECT_EQ(l.listener_filters_timeout().seconds(), 2);
  EXPECT_EQ(l.filter_chains_size(), 2);
  ApplyReport r;
  patched(
      "  - applyTo: LISTENER\n    match: {listener: {name: 0.0.0.0_8080}}\n    patch: {operation: REMOVE}\n",
      &r);
  EXPECT_TRUE(r.removed);
  patched(
      "  - applyTo: LISTENER\n    match: {listener: {portNumber: 9090}}\n    patch: {operation: REMOVE}\n",
      &r);
  EXPECT_FALSE(r.removed);
  EXPECT_TRUE(r.applied.empty());
}

TEST(EnvoyFilterListener, AddOnlyForOutboundAndGateway) {
  const std::string add = manifest(R"(  - applyTo: LISTENER
    match: {context: SIDECAR_OUTBOUND}
    patch:
      operation: ADD
      value: {name: extra, address: {socket_address: {address: 127.0.0.1, port_value: 9999}}}
)");
  EXPECT_EQ(applierFor(add).addedListeners(nullptr).size(), 1u);
  Proxy gw = sidecar();
  gw.gateway = true;
  EXPECT_EQ(applierFor(add, gw).addedListeners(nullptr).size(), 0u);
}

TEST(EnvoyFilterListenerFilter, Operations) {
  const std::string value = R"(
        name: envoy.filters.listener.original_dst
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst}
)";
  auto names = [&](const std::string& op, const std::string& anchor) {
    Listener l = patched("  - applyTo: LISTENER_FILTER\n    match: {listener: {portNumber: 8080" +
                         (anchor.empty() ? std::string() : ", listenerFilter: " + anchor) +
                         "}}\n    patch:\n      operation: " + op + "\n" +
                         (op == "REMOVE" ? "" : "      value:" + value));
    std::vector<std::string> out;
    for (const auto& f : l.listener_filters()) out.push_back(f.name());
    return out;
  };
  using V = std::vector<std::string>;
  const std::string tls = "envoy.filters.listener.tls_inspector", od = "envoy.filters.listener.original_dst";
  EXPECT_EQ(names("INSERT_BEFORE", ""), (V{od, tls}));
  EXPECT_EQ(names("INSERT_AFTER", tls), (V{tls, od}));
  EXPECT_EQ(names("ADD", ""), (V{tls, od}));
  EXPECT_EQ(names("INSERT_FIRST", ""), (V{od, tls}));
  EXPECT_EQ(names("REPLACE", tls), (V{od}));
  EXPECT_EQ(names("REMOVE", "envoy.listener.tls_inspector"), V{});
}

TEST(EnvoyFilterRoutes, InlineRouteConfigVirtualHostAndRoute) {
  // ROUTE_CONFIGURATION MERGE by port (the inline config takes its listener's port).
  Listener l = patched(R"(  - applyTo: ROUTE_CONFIGURATION
    match: {routeConfiguration: {portNumber: 8080}}
    patch: {operation: MERGE, value: {response_headers_to_add: [{header: {key: x-ef, value: "1"}}]}}
)");
  EXPECT_EQ(hcmOf(l).route_config().response_headers_to_add_size(), 1);
  l = patched(R"(  - applyTo: ROUTE_CONFIGURATION
    match: {routeConfiguration: {portNumber: 9090}}
    patch: {operation: MERGE, value: {response_headers_to_add: [{header: {key: x-ef, value: "1"}}]}}
)");
  EXPECT_EQ(hcmOf(l).route_config().response_headers_to_add_size(), 0);

  // VIRTUAL_HOST
  auto vhosts = [](const Listener& x) { return hcmOf(x).route_config().virtual_hosts_size(); };
  EXPECT_EQ(vhosts(patched(
                "  - applyTo: VIRTUAL_HOST\n    patch: {operation: ADD, value: {name: v2, domains: [b]}}\n")),
            2);
  EXPECT_EQ(
      vhosts(patched("  - applyTo: VIRTUAL_HOST\n    match: {routeConfiguration: {vhost: {name: 'a:8080'}}}\n"
                     "    patch: {operation: REMOVE}\n")),
      0);
  l = patched(
      "  - applyTo: VIRTUAL_HOST\n    match: {routeConfiguration: {vhost: {name: 'a:8080'}}}\n"
      "    patch: {operation: REPLACE, value: {name: v3, domains: [c]}}\n");
  EXPECT_EQ(hcmOf(l).route_config().virtual_hosts(0).name(), "v3");
  l = patched(
      "  - applyTo: VIRTUAL_HOST\n    match: {routeConfiguration: {vhost: {name: 'a:8080'}}}\n"
      "    patch: {operation: MERGE, value: {domains: [a2]}}\n");
  EXPECT_EQ(hcmOf(l).route_config().virtual_hosts(0).domains_size(), 2);

  // HTTP_ROUTE
  const std::string route = "{name: new, match: {prefix: /new}, route: {cluster: c9}}";
  auto op = [&](const std::string& operation, const std::string& match) {
    return routes(patched("  - applyTo: HTTP_ROUTE\n    match: {routeConfiguration: {vhost: {name: 'a:8080'" +
                          match + "}}}\n    patch: {operation: " + operation +
                          (operation == "REMOVE" ? "" : ", value: " + route) + "}\n"));
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(op("INSERT_BEFORE", ", route: {name: r2}"), (V{"r1", "new", "r2"}));
  EXPECT_EQ(op("INSERT_AFTER", ", route: {name: r1}"), (V{"r1", "new", "r2"}));
  EXPECT_EQ(op("INSERT_FIRST", ""), (V{"new", "r1", "r2"}));
  EXPECT_EQ(op("INSERT_FIRST", ", route: {name: nope}"), (V{"r1", "r2"}));  // match not found: no-op
  EXPECT_EQ(op("ADD", ""), (V{"r1", "r2", "new"}));
  EXPECT_EQ(op("REMOVE", ", route: {action: DIRECT_RESPONSE}"), (V{"r1"}));
  Listener merged = patched(
      "  - applyTo: HTTP_ROUTE\n    match: {routeConfiguration: {vhost: {name: 'a:8080', route: {action: "
      "ROUTE}}}}\n"
      "    patch: {operation: MERGE, value: {route: {timeout: 3s}}}\n");
  EXPECT_EQ(hcmOf(merged).route_config().virtual_hosts(0).routes(0).route().timeout().seconds(), 3);
  EXPECT_EQ(hcmOf(merged).route_config().virtual_hosts(0).routes(0).route().cluster(), "c1");
}

TEST(EnvoyFilterRoutes, RdsNamesDecideContextAndPort) {
  auto rc =
      fromYaml<RouteConfiguration>("name: 'inbound|9080||'\nvirtual_hosts: [{name: v, domains: ['*']}]\n");
  auto applier = applierFor(manifest(R"(  - applyTo: VIRTUAL_HOST
    match: {context: SIDECAR_INBOUND, routeConfiguration: {portNumber: 9080}}
    patch: {operation: MERGE, value: {domains: [extra]}}
)"));
  EXPECT_EQ(applier.patchRouteConfiguration(rc).applied.size(), 1u);
  EXPECT_EQ(rc.virtual_hosts(0).domains_size(), 2);
  auto outbound = fromYaml<RouteConfiguration>("name: '9080'\nvirtual_hosts: [{name: v, domains: ['*']}]\n");
  EXPECT_TRUE(applier.patchRouteConfiguration(outbound).applied.empty());  // wrong context
  Proxy gw = sidecar();
  gw.gateway = true;
  auto gwrc =
      fromYaml<RouteConfiguration>("name: https.443.https.gw.istio-system\nvirtual_hosts: [{name: v}]\n");
  auto gwapplier = applierFor(manifest(R"(  - applyTo: VIRTUAL_HOST
    match: {context: GATEWAY, routeConfiguration: {portNumber: 443, portName: https, gateway: istio-system/gw}}
    patch: {operation: MERGE, value: {domains: [x]}}
)"),
                              gw);
  EXPECT_EQ(gwapplier.patchRouteConfiguration(gwrc).applied.size(), 1u);
}

TEST(EnvoyFilterCluster, MatchMergeRemoveAdd) {
  auto c = fromYaml<Cluster>(R"(
name: outbound|9080|v1|reviews.default.svc.cluster.local
type: EDS
connect_timeout: 1.5s
transport_socket:
  name: envoy.transport_sockets.tls
  typed_config: {"@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext, sni: a}
)");
  auto applier = applierFor(manifest(R"(  - applyTo: CLUSTER
    match: {context: SIDECAR_OUTBOUND, cluster: {service: reviews.default.svc.cluster.local, portNumber: 9080, subset: v1}}
    patch:
      operation: MERGE
      value:
        connect_timeout: 2s
        transport_socket:
          name: envoy.transport_sockets.tls
          typed_config: {"@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext, max_session_keys: 3}
  - applyTo: CLUSTER
    patch: {operation: ADD, value: {name: added, type: STATIC}}
)"));
  EXPECT_EQ(applier.patchCluster(c).applied.size(), 1u);
  EXPECT_EQ(c.connect_timeout().seconds(), 2);
  EXPECT_EQ(c.connect_timeout().nanos(), 0);  // Durations are replaced, not merged field by field
  envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext tls;
  ASSERT_TRUE(c.transport_socket().typed_config().UnpackTo(&tls));
  EXPECT_EQ(tls.sni(), "a");
  EXPECT_EQ(tls.max_session_keys().value(), 3u);
  EXPECT_EQ(applier.addedClusters(nullptr).size(), 1u);
  auto other = fromYaml<Cluster>("name: outbound|9080|v2|reviews.default.svc.cluster.local\n");
  EXPECT_TRUE(applier.patchCluster(other).applied.empty());
  auto byName =
      applierFor(manifest("  - applyTo: CLUSTER\n    match: {cluster: {name: BlackHoleCluster}}\n"
                          "    patch: {operation: REMOVE}\n"));
  auto bh = fromYaml<Cluster>("name: BlackHoleCluster\n");
  EXPECT_TRUE(byName.patchCluster(bh).removed);
  EXPECT_FALSE(byName.patchCluster(other).removed);
}

TEST(EnvoyFilterMatch, ContextAndProxy) {
  auto count = [](const std::string& match, Proxy proxy = sidecar()) {
    return httpFilters(patched("  - applyTo: HTTP_FILTER\n    match: " + match +
                                   "\n    patch:\n      operation: INSERT_FIRST\n      value:" + kLua,
                               nullptr, proxy))
        .size();
  };
  EXPECT_EQ(count("{context: SIDECAR_OUTBOUND}"), 3u);
  EXPECT_EQ(count("{context: SIDECAR_INBOUND}"), 2u);  // the listener is OUTBOUND
  EXPECT_EQ(count("{context: GATEWAY}"), 2u);
  EXPECT_EQ(count("{context: ANY}"), 3u);
  EXPECT_EQ(count("{proxy: {proxyVersion: '^1\\.20.*'}}"), 3u);
  EXPECT_EQ(count("{proxy: {proxyVersion: '^1\\.19.*'}}"), 2u);
  Proxy p = sidecar();
  p.metadata["CLUSTER_ID"] = "k1";
  EXPECT_EQ(count("{proxy: {metadata: {CLUSTER_ID: k1}}}", p), 3u);
  EXPECT_EQ(count("{proxy: {metadata: {CLUSTER_ID: k2}}}", p), 2u);
  EXPECT_EQ(count("{context: WAYPOINT}"), 2u);
}

TEST(EnvoyFilterMatch, VirtualInboundUsesDestinationPort) {
  Listener l = fromYaml<Listener>(R"(
name: virtualInbound
address: {socket_address: {address: 0.0.0.0, port_value: 15006}}
traffic_direction: INBOUND
filter_chains:
- filter_chain_match: {destination_port: 8080}
  filters: [{name: envoy.filters.network.tcp_proxy, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: a, cluster: a}}]
- filter_chain_match: {destination_port: 9090}
  filters: [{name: envoy.filters.network.tcp_proxy, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: b, cluster: b}}]
)");
  auto applier = applierFor(manifest(R"(  - applyTo: NETWORK_FILTER
    match: {context: SIDECAR_INBOUND, listener: {portNumber: 9090, filterChain: {filter: {name: envoy.filters.network.tcp_proxy}}}}
    patch: {operation: REMOVE}
)"));
  applier.patchListener(l);
  EXPECT_EQ(l.filter_chains(0).filters_size(), 1);
  EXPECT_EQ(l.filter_chains(1).filters_size(), 0);
}

TEST(EnvoyFilterAtomic, FailingFilterIsNotHalfApplied) {
  // Second patch merges a Router config into the CORS filter's typed_config: a type mismatch.
  const std::string bad = manifest(httpPatch("INSERT_FIRST") + R"(  - applyTo: HTTP_FILTER
    match: {listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager, subFilter: {name: envoy.filters.http.cors}}}}}
    patch:
      operation: MERGE
      value:
        typed_config: {"@type": type.googleapis.com/udpa.type.v1.TypedStruct, type_url: type.googleapis.com/some.Unknown, value: {a: 1}}
)",
                                   "bad");
  const std::string good = manifest(httpPatch("INSERT_BEFORE"), "good");
  Listener l = fromYaml<Listener>(kListener);
  Applier applier(
      [&] {
        auto v = parseEnvoyFilters(bad, "bad.yaml");
        auto g = parseEnvoyFilters(good, "good.yaml");
        v.insert(v.end(), g.begin(), g.end());
        return v;
      }(),
      sidecar());
  ApplyReport r = applier.patchListener(l);
  ASSERT_EQ(r.failed.size(), 1u);
  EXPECT_EQ(r.failed[0].first, "bad");
  EXPECT_NE(r.failed[0].second.find("spec.configPatches[1]"), std::string::npos) << r.failed[0].second;
  EXPECT_EQ(r.applied, std::vector<std::string>{"good"});
  // Only the good filter's Lua, before the router; the bad one's INSERT_FIRST was rolled back.
  EXPECT_EQ(httpFilters(l), (std::vector<std::string>{"envoy.filters.http.cors", "envoy.filters.http.lua",
                                                      "envoy.filters.http.router"}));
}

TEST(EnvoyFilterAtomic, PriorityOrdersFilters) {
  const std::string first =
      "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: late}\n"
      "spec:\n  priority: 10\n  configPatches:\n" +
      httpPatch("INSERT_FIRST");
  std::string early = manifest(R"(  - applyTo: HTTP_FILTER
    patch:
      operation: INSERT_FIRST
      value: {name: envoy.filters.http.cors, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors}}
)",
                               "early");
  Listener l = fromYaml<Listener>(kListener);
  auto v = parseEnvoyFilters(first, "a.yaml");
  auto e = parseEnvoyFilters(early, "b.yaml");
  v.insert(v.end(), e.begin(), e.end());
  ApplyReport r = Applier(v, sidecar()).patchListener(l);
  EXPECT_EQ(r.applied, (std::vector<std::string>{"early", "late"}));
  EXPECT_EQ(httpFilters(l)[0], "envoy.filters.http.lua");  // applied last, so first in the list
}

TEST(EnvoyFilterExtensionConfig, InlinesConfigDiscovery) {
  Listener l = fromYaml<Listener>(kListener);
  auto applier = applierFor(manifest(R"(  - applyTo: EXTENSION_CONFIG
    patch:
      operation: ADD
      value:
        name: my-ext
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua, default_source_code: {inline_string: "y"}}
  - applyTo: HTTP_FILTER
    match: {listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager, subFilter: {name: envoy.filters.http.router}}}}}
    patch:
      operation: INSERT_BEFORE
      value:
        name: my-ext
        config_discovery:
          config_source: {ads: {}}
          type_urls: [type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua]
)"));
  applier.patchListener(l);
  const auto h = hcmOf(l).http_filters(1);
  EXPECT_EQ(h.name(), "my-ext");
  EXPECT_TRUE(h.has_typed_config());
  EXPECT_FALSE(h.has_config_discovery());
}

TEST(EnvoyFilterBootstrap, MergeAndStaticResources) {
  auto b = fromYaml<envoy::config::bootstrap::v3::Bootstrap>(
      std::string("static_resources:\n  listeners:\n  - ") +
      [] {
        std::string s = kListener;
        std::string out;
        size_t start = 1;
        while (start < s.size()) {
          size_t nl = s.find('\n', start);
          out += (out.empty() ? "" : "    ") + s.substr(start, nl - start + 1);
          start = nl + 1;
        }
        return out;
      }() +
      "  clusters:\n  - {name: c1, type: STATIC}\n");
  auto applier = applierFor(manifest(httpPatch("INSERT_BEFORE") + R"(  - applyTo: BOOTSTRAP
    patch: {operation: MERGE, value: {stats_flush_interval: 7s}}
  - applyTo: CLUSTER
    patch: {operation: ADD, value: {name: c2, type: STATIC}}
  - applyTo: CLUSTER
    match: {cluster: {name: c1}}
    patch: {operation: REMOVE}
)"));
  ApplyReport r = applier.patchBootstrap(b);
  EXPECT_TRUE(r.failed.empty());
  EXPECT_EQ(b.stats_flush_interval().seconds(), 7);
  ASSERT_EQ(b.static_resources().clusters_size(), 1);
  EXPECT_EQ(b.static_resources().clusters(0).name(), "c2");
  EXPECT_EQ(httpFilters(b.static_resources().listeners(0)).size(), 3u);
}

}  // namespace
}  // namespace skiff::envoy_filter
