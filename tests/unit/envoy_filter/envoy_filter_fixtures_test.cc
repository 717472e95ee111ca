// Every EnvoyFilter in ../shared/fixtures/envoyfilter/ applied to an Istio-shaped sidecar/gateway config,
// each with a check of its effect (issue 8, item 5). Skips when ../shared is absent.
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <sstream>

#include "envoy/extensions/transport_sockets/tls/v3/tls.pb.h"
#include "skiff/config/config_error.h"
#include "unit/envoy_filter/test_util.h"

namespace skiff::envoy_filter {
namespace {

using envoy::config::cluster::v3::Cluster;
using envoy::config::listener::v3::Listener;
using envoy::config::route::v3::RouteConfiguration;
using Hcm = envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
using testing::fromYaml;

constexpr const char* kHcm =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
    "HttpConnectionManager";

// An Istio-like sidecar: virtualInbound (8080 HTTP, 8000 HTTP with ext_authz and an ECDS filter, 8443 TLS
// with SNI www.example.com) and an outbound HTTP listener on 8080 over RDS.
std::string sidecarListeners() {
  return std::string(R"(
- name: virtualInbound
  address: {socket_address: {address: 0.0.0.0, port_value: 15006}}
  traffic_direction: INBOUND
  listener_filters:
  - {name: envoy.filters.listener.original_dst, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst}}
  - {name: envoy.filters.listener.tls_inspector, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}}
  filter_chains:
  - name: 0.0.0.0_8080
    filter_chain_match: {destination_port: 8080, transport_protocol: raw_buffer}
    filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": )") +
         kHcm + R"(
        stat_prefix: inbound_0.0.0.0_8080
        route_config:
          name: "inbound|8080||"
          virtual_hosts: [{name: "inbound|http|8080", domains: ["*"], routes: [{name: default, match: {prefix: /}, route: {cluster: "inbound|8080||"}}]}]
        http_filters:
        - {name: envoy.filters.http.router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  - name: 0.0.0.0_8000
    filter_chain_match: {destination_port: 8000, transport_protocol: raw_buffer}
    filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": )" +
         kHcm + R"(
        stat_prefix: inbound_0.0.0.0_8000
        route_config:
          name: "inbound|8000||"
          virtual_hosts: [{name: "inbound|http|8000", domains: ["*"], routes: [{name: default, match: {prefix: /}, route: {cluster: "inbound|8000||"}}]}]
        http_filters:
        - {name: envoy.filters.http.ext_authz, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz, stat_prefix: a}}
        - {name: extension-config, config_discovery: {config_source: {ads: {}}, type_urls: [type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm]}}
        - {name: envoy.filters.http.router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  - name: 0.0.0.0_8443
    filter_chain_match: {destination_port: 8443, transport_protocol: tls, server_names: [www.example.com]}
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config: {"@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext, require_client_certificate: true}
    filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": )" +
         kHcm + R"(
        stat_prefix: inbound_tls
        upgrade_configs: [{upgrade_type: CONNECT}]
        rds: {route_config_name: "inbound|8443||", config_source: {ads: {}}}
        http_filters:
        - {name: envoy.filters.http.router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
- name: 0.0.0.0_8080
  address: {socket_address: {address: 0.0.0.0, port_value: 8080}}
  traffic_direction: OUTBOUND
  filter_chains:
  - filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": )" +
         kHcm + R"(
        stat_prefix: outbound_0.0.0.0_8080
        rds: {route_config_name: "8080", config_source: {ads: {}}}
        http_filters:
        - {name: envoy.filters.http.router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
)";
}

// An ingress gateway: one HTTPS server (SNI app.example.com) and one HTTP server, both over RDS.
std::string gatewayListeners() {
  return std::string(R"(
- name: 0.0.0.0_8443
  address: {socket_address: {address: 0.0.0.0, port_value: 8443}}
  filter_chains:
  - filter_chain_match: {server_names: [app.example.com]}
    filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": )") +
         kHcm + R"(
        stat_prefix: outbound_0.0.0.0_8443
        rds: {route_config_name: https.443.https.gw.istio-system, config_source: {ads: {}}}
        http_filters:
        - {name: envoy.filters.http.router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
- name: 0.0.0.0_8080
  address: {socket_address: {address: 0.0.0.0, port_value: 8080}}
  filter_chains:
  - filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": )" +
         kHcm + R"(
        stat_prefix: outbound_0.0.0.0_8080
        rds: {route_config_name: http.8080, config_source: {ads: {}}}
        http_filters:
        - {name: envoy.filters.http.router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
)";
}

constexpr const char* kGatewayRoutes = R"(
- name: http.8080
  virtual_hosts: [{name: "foo.com:80", domains: [foo.com, "foo.com:*"], routes: [{name: r, match: {prefix: /}, route: {cluster: "outbound|9080||productpage.default.svc.cluster.local"}}]}]
)";
constexpr const char* kClusters = R"(
- {name: "outbound|9080||reviews.bookinfo.svc.cluster.local", type: EDS, eds_cluster_config: {eds_config: {ads: {}}}}
- {name: BlackHoleCluster, type: STATIC}
)";

struct Config {
  std::vector<Listener> listeners;
  std::vector<RouteConfiguration> routes;
  std::vector<Cluster> clusters;
  std::vector<Cluster> added_clusters;
  std::vector<std::string> applied;  // "<object>" per EnvoyFilter application
  std::vector<std::string> failed;
};

template <class T>
std::vector<T> listOf(const std::string& yaml) {
  std::vector<T> out;
  for (const auto& node : YAML::Load(yaml)) {
    T t;
    internal::yamlToMessage(node, t, "fixture");
    out.push_back(std::move(t));
  }
  return out;
}

Config applyOne(const EnvoyFilter& f, const std::string& istio_version) {
  Proxy proxy;
  proxy.labels = f.workload_labels;
  proxy.namespace_ = f.namespace_.empty() ? "default" : f.namespace_;
  proxy.istio_version = istio_version;
  for (const auto& p : f.patches) proxy.gateway = proxy.gateway || p.context == PatchContext::kGateway;
  Config c;
  c.listeners = listOf<Listener>(proxy.gateway ? gatewayListeners() : sidecarListeners());
  c.routes = listOf<RouteConfiguration>(proxy.gateway ? kGatewayRoutes : "[]");
  c.clusters = listOf<Cluster>(kClusters);
  Applier applier({f}, proxy);
  EXPECT_EQ(applier.selected().size(), 1u) << f.key();
  auto note = [&](const std::string& what, const ApplyReport& r) {
    for (const auto& k : r.applied) c.applied.push_back(what);
    for (const auto& [k, e] : r.failed) c.failed.push_back(what + ": " + e);
  };
  for (auto& l : c.listeners) note("listener " + l.name(), applier.patchListener(l));
  for (auto& r : c.routes) note("route " + r.name(), applier.patchRouteConfiguration(r));
  for (auto& cl : c.clusters) note("cluster " + cl.name(), applier.patchCluster(cl));
  ApplyReport added;
  c.added_clusters = applier.addedClusters(&added);
  note("added clusters", added);
  return c;
}

Hcm hcmOf(const Listener& l, int chain) {
  Hcm hcm;
  EXPECT_TRUE(l.filter_chains(chain).filters(0).typed_config().UnpackTo(&hcm));
  return hcm;
}

std::vector<std::string> httpFilters(const Listener& l, int chain) {
  std::vector<std::string> out;
  const Hcm hcm = hcmOf(l, chain);
  for (const auto& f : hcm.http_filters()) out.push_back(f.name());
  return out;
}

bool hasCluster(const Config& c, const std::string& name) {
  for (const auto& cl : c.added_clusters) {
    if (cl.name() == name) return true;
  }
  return false;
}

using V = std::vector<std::string>;
const std::string kRouter = "envoy.filters.http.router";

// Per EnvoyFilter name: the effect to check. Each returns normally or fails an EXPECT.
const std::map<std::string, std::function<void(const Config&)>>& effects() {
  static const std::map<std::string, std::function<void(const Config&)>> kEffects = {
      {"reviews-lua",
       [](const Config& c) {
         EXPECT_EQ(httpFilters(c.listeners[0], 0),
                   (V{"envoy.filters.http.lua", kRouter}));  // inbound 8080 only
         EXPECT_EQ(httpFilters(c.listeners[0], 1).size(), 3u);
         EXPECT_TRUE(hasCluster(c, "lua_cluster"));
       }},
      {"hcm-tweaks",
       [](const Config& c) {
         Hcm hcm = hcmOf(c.listeners[0], 0);  // the SNI app.example.com chain
         EXPECT_EQ(hcm.xff_num_trusted_hops(), 5u);
         EXPECT_EQ(hcm.common_http_protocol_options().idle_timeout().seconds(), 30);
         EXPECT_EQ(hcmOf(c.listeners[1], 0).xff_num_trusted_hops(), 0u);
       }},
      {"reviews-request-operation",
       [](const Config& c) {
         EXPECT_EQ(httpFilters(c.listeners[0], 0), (V{kRouter, "istio.request_operation"}));  // ADD appends
         EXPECT_EQ(httpFilters(c.listeners[1], 0), (V{kRouter}));                             // outbound
       }},
      {"myns-ext-authz",
       [](const Config& c) {
         EXPECT_EQ(httpFilters(c.listeners[0], 0), (V{kRouter, "envoy.filters.http.ext_authz"}));
       }},
      {"mysvc-ext-authz",
       [](const Config& c) {
         EXPECT_TRUE(c.applied.empty());  // REPLACE without a subFilter match: a no-op, as in istiod
       }},
      {"wasm-example",
       [](const Config& c) {
         for (int chain : {0, 1}) {
           auto hcm = hcmOf(c.listeners[0], chain);
           const auto& f = hcm.http_filters(hcm.http_filters_size() - 2);
           EXPECT_EQ(f.name(), "my-wasm-extension");
           EXPECT_EQ(f.typed_config().type_url(),
                     "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm")
               << "config_discovery resolved from the EXTENSION_CONFIG";
         }
       }},
      {"listener-filter-example",
       [](const Config& c) {
         EXPECT_EQ(c.listeners[0].listener_filters(1).name(),
                   "envoy.filters.listener.proxy_protocol");  // before tls_inspector
         EXPECT_EQ(c.listeners[0].listener_filters_size(), 3);
       }},
      {"test-patch-1", [](const Config& c) { EXPECT_TRUE(c.applied.empty()); }},  // REPLACE without a match
      {"test-patch-2",
       [](const Config& c) {
         EXPECT_EQ(httpFilters(c.listeners[0], 0), (V{"envoy.lua"}));  // the router was replaced
         EXPECT_TRUE(hasCluster(c, "lua_cluster"));
       }},
      {"test-patch-3", [](const Config& c) { EXPECT_EQ(httpFilters(c.listeners[0], 0), (V{"envoy.lua"})); }},
      {"test-lua",
       [](const Config& c) {
         for (int chain : {0, 1, 2}) EXPECT_EQ(httpFilters(c.listeners[0], chain).rbegin()[1], "envoy.lua");
         EXPECT_EQ(httpFilters(c.listeners[1], 0), (V{"envoy.lua", kRouter}));
       }},
      {"test",  // ecds.yaml: EXTENSION_CONFIG resolves the inbound filter named extension-config
       [](const Config& c) {
         auto hcm = hcmOf(c.listeners[0], 1);
         EXPECT_EQ(hcm.http_filters(1).name(), "extension-config");
         EXPECT_TRUE(hcm.http_filters(1).has_typed_config());
         EXPECT_FALSE(hcm.http_filters(1).has_config_discovery());
       }},
      {"test-patch-filter-chain",
       [](const Config& c) {
         const auto& ts = c.listeners[0].filter_chains(2).transport_socket();
         envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext tls;
         ASSERT_TRUE(ts.typed_config().UnpackTo(&tls));
         EXPECT_TRUE(tls.require_client_certificate().value());  // kept: deep merge
         EXPECT_GT(tls.common_tls_context().tls_certificate_sds_secret_configs_size(), 0);
       }},
      {"http-filter",
       [](const Config& c) {
         EXPECT_EQ(httpFilters(c.listeners[0], 0)[0], "envoy.filters.http.ext_proc");
         EXPECT_EQ(httpFilters(c.listeners[1], 0)[0], "envoy.filters.http.ext_proc");
       }},
      {"waypoint-http-filter", [](const Config& c) { EXPECT_TRUE(c.applied.empty()); }},  // WAYPOINT only
      {"waypoint-cluster", [](const Config& c) { EXPECT_TRUE(c.applied.empty()); }},
      {"add-cluster", [](const Config& c) { EXPECT_TRUE(hasCluster(c, "lua_cluster")); }},
      {"merge-and-replace-list",
       [](const Config& c) {
         Hcm hcm = hcmOf(c.listeners[0], 2);  // the tls chain
         ASSERT_EQ(hcm.upgrade_configs_size(), 1);
         EXPECT_EQ(hcm.upgrade_configs(0).upgrade_type(), "websocket");  // CONNECT replaced, not appended
         EXPECT_EQ(hcmOf(c.listeners[0], 0).upgrade_configs_size(), 0);
       }},
      {"basic-auth-filter",
       [](const Config& c) {
         for (int l : {0, 1}) EXPECT_EQ(httpFilters(c.listeners[l], 0), (V{"example-filter", kRouter}));
       }},
      {"filter-local-ratelimit-svc",
       [](const Config& c) {
         EXPECT_EQ(httpFilters(c.listeners[0], 1)[0], "envoy.filters.http.local_ratelimit");
         auto rc = hcmOf(c.listeners[0], 1).route_config();
         EXPECT_GT(rc.virtual_hosts(0).routes(0).route().rate_limits_size(), 0);
         EXPECT_EQ(
             hcmOf(c.listeners[0], 0).route_config().virtual_hosts(0).routes(0).route().rate_limits_size(),
             0);
       }},
      {"filter-ratelimit",
       [](const Config& c) {
         EXPECT_EQ(httpFilters(c.listeners[1], 0), (V{"envoy.ratelimit", kRouter}));
         EXPECT_TRUE(hasCluster(c, "rate_limit_cluster"));
       }},
      {"filter-ratelimit-svc",
       [](const Config& c) { EXPECT_GT(c.routes[0].virtual_hosts(0).rate_limits_size(), 0); }},
      {"domain-match-example",  // `rate_limits` written as one object: taken as a one-element list
       [](const Config& c) {
         ASSERT_EQ(c.routes[0].virtual_hosts(0).rate_limits_size(), 1);
         EXPECT_EQ(c.routes[0].virtual_hosts(0).rate_limits(0).actions_size(), 2);
       }},
      {"google-storage", [](const Config& c) { EXPECT_TRUE(hasCluster(c, "google-storage")); }},
  };
  return kEffects;
}

// Splits a multi-document stream so one bad document does not hide the others.
std::vector<std::string> documents(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::vector<std::string> out;
  std::string text = buffer.str(), current;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("---", 0) == 0) {
      out.push_back(current);
      current.clear();
    } else {
      current += line + "\n";
    }
  }
  out.push_back(current);
  return out;
}

TEST(EnvoyFilterFixtures, EveryManifestAppliesWithItsEffect) {
  const std::string shared = testing::sharedDir();
  if (shared.empty()) GTEST_SKIP() << "../shared is absent: no fixtures to apply";
  const std::string dir = shared + "/fixtures/envoyfilter";
  std::set<std::string> seen;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".yaml") continue;
    for (const auto& doc : documents(entry.path().string())) {
      std::vector<EnvoyFilter> filters;
      try {
        filters = parseEnvoyFilters(doc, entry.path().string());
      } catch (const config::ConfigError& e) {
        ADD_FAILURE() << e.what();
        continue;
      }
      for (const auto& f : filters) {
        SCOPED_TRACE(entry.path().filename().string() + ": " + f.key());
        seen.insert(f.name);
        auto it = effects().find(f.name);
        ASSERT_NE(it, effects().end()) << "no effect check for " << f.key();
        Config c = applyOne(f, f.name == "basic-auth-filter" ? "1.8.6" : "1.20.1");
        EXPECT_TRUE(c.failed.empty()) << c.failed[0];
        it->second(c);
      }
    }
  }
  for (const auto& [name, _] : effects())
    EXPECT_TRUE(seen.count(name)) << name << " not found in the fixtures";
}

}  // namespace
}  // namespace skiff::envoy_filter
