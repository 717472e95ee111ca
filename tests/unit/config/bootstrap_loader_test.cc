#include "skiff/config/bootstrap_loader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.pb.h"

namespace skiff::config {
namespace {

using envoy::config::cluster::v3::Cluster;
using HttpConnectionManager =
    envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
using ::testing::HasSubstr;

std::string errorOf(const std::string& yaml) {
  try {
    loadBootstrapYaml(yaml);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "<no error>";
}

// A listener with an HCM whose http_filters / route come from the caller, and one static cluster.
std::string withHcm(const std::string& hcm_body, const std::string& cluster_extra = "") {
  return R"(
static_resources:
  listeners:
  - name: l0
    address: {socket_address: {address: 127.0.0.1, port_value: 10000}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: test
)" + hcm_body +
         R"(
  clusters:
  - name: backend
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8080}}}
)" + cluster_extra;
}

const char* kSimpleRoute = R"(
          route_config:
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                route: {cluster: backend}
)";

HttpConnectionManager hcmOf(const LoadResult& r) {
  return unpackTo<HttpConnectionManager>(
      r.bootstrap.static_resources().listeners(0).filter_chains(0).filters(0).typed_config(), "hcm");
}

TEST(ConfigLoaderTest, UnknownFieldIsAWarningWithItsPath) {
  LoadResult r = loadBootstrapYaml(
      withHcm(std::string(kSimpleRoute) + "          no_such_option: 3\n", "    future_knob: true\n"));
  ASSERT_EQ(r.warnings.size(), 2u);
  EXPECT_THAT(r.warnings,
              ::testing::Contains(HasSubstr("static_resources.clusters[0].future_knob: unknown field")));
  EXPECT_THAT(r.warnings,
              ::testing::Contains(HasSubstr(
                  "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.no_such_option: "
                  "unknown field in envoy.extensions.filters.network.http_connection_manager.v3."
                  "HttpConnectionManager")));
  EXPECT_EQ(r.bootstrap.static_resources().clusters(0).name(), "backend");
  EXPECT_EQ(hcmOf(r).stat_prefix(), "test");
}

TEST(ConfigLoaderTest, RemovedV2FieldIsAnError) {
  EXPECT_EQ(errorOf(withHcm(kSimpleRoute, "    tls_context: {}\n")),
            "static_resources.clusters[0].tls_context: v2 field removed in the v3 API; use transport_socket");
  EXPECT_THAT(errorOf(withHcm(kSimpleRoute, "    hosts: []\n")),
              HasSubstr("static_resources.clusters[0].hosts"));
}

TEST(ConfigLoaderTest, TypedStructIsUnwrappedBothFlavours) {
  for (const char* wrapper : {"udpa.type.v1.TypedStruct", "xds.type.v3.TypedStruct"}) {
    const std::string yaml = std::string(R"(
static_resources:
  listeners:
  - name: l0
    address: {socket_address: {address: 0.0.0.0, port_value: 10000}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/)") +
                             wrapper + R"(
          type_url: type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          value:
            stat_prefix: tcp
            cluster: backend
            idle_timeout: 30s
  clusters:
  - name: backend
    load_assignment: {cluster_name: backend}
)";
    LoadResult r = loadBootstrapYaml(yaml);
    const auto& any = r.bootstrap.static_resources().listeners(0).filter_chains(0).filters(0).typed_config();
    EXPECT_EQ(any.type_url(), "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy");
    auto tcp = unpackTo<envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy>(any, "tcp");
    EXPECT_EQ(tcp.stat_prefix(), "tcp");
    EXPECT_EQ(tcp.cluster(), "backend");
    EXPECT_EQ(tcp.idle_timeout().seconds(), 30);
  }
}

TEST(ConfigLoaderTest, OptionalUnknownHttpFilterIsDroppedWithAWarning) {
  LoadResult r = loadBootstrapYaml(withHcm(std::string(R"(
          http_filters:
          - name: vendor.magic
            is_optional: true
            typed_config:
              "@type": type.googleapis.com/google.protobuf.Empty
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
)") + kSimpleRoute));
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_THAT(r.warnings[0], HasSubstr("typed_config.http_filters[0]: HTTP filter 'vendor.magic'"));
  EXPECT_THAT(r.warnings[0], HasSubstr("optional"));
  HttpConnectionManager hcm = hcmOf(r);
  ASSERT_EQ(hcm.http_filters_size(), 1);
  EXPECT_EQ(hcm.http_filters(0).name(), "envoy.filters.http.router");
}

TEST(ConfigLoaderTest, OptionalHttpFilterOfATypeNotCompiledInIsDropped) {
  LoadResult r = loadBootstrapYaml(withHcm(std::string(R"(
          http_filters:
          - name: acme.fancy
            is_optional: true
            typed_config:
              "@type": type.googleapis.com/acme.fancy.v1.Config
              knob: 3
          - name: envoy.filters.http.router
)") + kSimpleRoute));
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_THAT(r.warnings[0],
              HasSubstr("http_filters[0]: HTTP filter 'acme.fancy' has type "
                        "'type.googleapis.com/acme.fancy.v1.Config', which is not implemented"));
  HttpConnectionManager hcm = hcmOf(r);
  ASSERT_EQ(hcm.http_filters_size(), 1);
  EXPECT_EQ(hcm.http_filters(0).name(), "envoy.filters.http.router");
}

TEST(ConfigLoaderTest, RequiredUnknownHttpFilterIsAnError) {
  std::string error = errorOf(withHcm(std::string(R"(
          http_filters:
          - name: vendor.magic
            typed_config:
              "@type": type.googleapis.com/google.protobuf.Empty
)") + kSimpleRoute));
  EXPECT_THAT(error, HasSubstr("typed_config.http_filters[0]: HTTP filter 'vendor.magic' has type "
                               "'type.googleapis.com/google.protobuf.Empty', which is not implemented"));
  error = errorOf(withHcm(std::string("          http_filters: [{name: vendor.unknown}]\n") + kSimpleRoute));
  EXPECT_THAT(error, HasSubstr("'vendor.unknown' has no typed_config and is not a known HTTP filter name"));
}

TEST(ConfigLoaderTest, UnknownAnyTypeNamesPathAndUrl) {
  std::string error = errorOf(withHcm(std::string(R"(
          http_filters:
          - name: x
            typed_config:
              "@type": type.googleapis.com/acme.NotCompiledIn
)") + kSimpleRoute));
  EXPECT_THAT(error, HasSubstr("typed_config.http_filters[0].typed_config: unknown type "
                               "'type.googleapis.com/acme.NotCompiledIn'"));
}

TEST(ConfigLoaderTest, LowerCamelCaseJsonIsAccepted) {
  LoadResult r = loadBootstrapYaml(R"({
    "staticResources": {
      "clusters": [{
        "name": "backend", "connectTimeout": "0.5s", "type": "STRICT_DNS",
        "dnsLookupFamily": "V4_ONLY", "perConnectionBufferLimitBytes": 32768,
        "loadAssignment": {"clusterName": "backend", "endpoints": [{"lbEndpoints": [
          {"endpoint": {"address": {"socketAddress": {"address": "localhost", "portValue": 80}}}}]}]}
      }]
    },
    "admin": {"address": {"socketAddress": {"address": "127.0.0.1", "portValue": 15000}}}
  })");
  EXPECT_TRUE(r.warnings.empty());
  const Cluster& c = r.bootstrap.static_resources().clusters(0);
  EXPECT_EQ(c.connect_timeout().nanos(), 500000000);
  EXPECT_EQ(c.type(), Cluster::STRICT_DNS);
  EXPECT_EQ(c.per_connection_buffer_limit_bytes().value(), 32768u);
  EXPECT_EQ(r.bootstrap.admin().address().socket_address().port_value(), 15000u);
}

TEST(ConfigLoaderTest, BrokenYamlReportsTheLine) {
  std::string error = errorOf("static_resources:\n  clusters:\n  - name: [unclosed\n");
  EXPECT_THAT(error, HasSubstr("invalid YAML"));
  EXPECT_THAT(error, HasSubstr("line "));
}

TEST(ConfigLoaderTest, BadEnumNamesPathAndValue) {
  std::string error = errorOf(withHcm(kSimpleRoute, "    type: STATICALLY\n"));
  EXPECT_THAT(error, HasSubstr("static_resources.clusters[0].type: unknown value 'STATICALLY'"));
  EXPECT_THAT(error, HasSubstr("STRICT_DNS"));
}

TEST(ConfigLoaderTest, BadDurationNamesPath) {
  std::string yaml = withHcm(kSimpleRoute);
  yaml.replace(yaml.find("connect_timeout: 1s"), 19, "connect_timeout: 5 seconds");
  EXPECT_THAT(errorOf(yaml),
              HasSubstr("static_resources.clusters[0].connect_timeout: invalid duration '5 seconds'"));
  yaml = withHcm(kSimpleRoute);
  yaml.replace(yaml.find("connect_timeout: 1s"), 19, "connect_timeout: 5");
  EXPECT_THAT(errorOf(yaml), HasSubstr("static_resources.clusters[0].connect_timeout"));
}

TEST(ConfigLoaderTest, WrongScalarTypesNamePath) {
  std::string yaml = withHcm(kSimpleRoute);
  yaml.replace(yaml.find("port_value: 8080"), 16, "port_value: http");
  EXPECT_THAT(errorOf(yaml), HasSubstr("socket_address.port_value: expected an integer, got 'http'"));
  yaml = withHcm(kSimpleRoute);
  yaml.replace(yaml.find("port_value: 8080"), 16, "port_value: 99999999999");
  EXPECT_THAT(errorOf(yaml), HasSubstr("port_value: integer '99999999999' is out of range"));
  EXPECT_THAT(errorOf(withHcm(kSimpleRoute, "    respect_dns_ttl: maybe\n")),
              HasSubstr("static_resources.clusters[0].respect_dns_ttl: expected a boolean"));
  EXPECT_THAT(errorOf(withHcm(kSimpleRoute, "    load_assignment: [1, 2]\n")),
              HasSubstr("static_resources.clusters[0].load_assignment: expected a map"));
}

TEST(ConfigLoaderTest, ScalarTypesFollowTheField) {
  LoadResult r = loadBootstrapYaml(withHcm(kSimpleRoute, R"(
    metadata:
      filter_metadata:
        acme: {quoted: "true", plain: true, number: 42, text: hello}
)"));
  const auto& fields =
      r.bootstrap.static_resources().clusters(0).metadata().filter_metadata().at("acme").fields();
  EXPECT_EQ(fields.at("quoted").string_value(), "true");
  EXPECT_TRUE(fields.at("plain").bool_value());
  EXPECT_EQ(fields.at("number").number_value(), 42);
  EXPECT_EQ(fields.at("text").string_value(), "hello");
}

TEST(ConfigLoaderTest, OneofConflictIsAnError) {
  std::string route = kSimpleRoute;
  route.replace(route.find("{prefix: \"/\"}"), 13, "{prefix: \"/\", path: \"/x\"}");
  EXPECT_THAT(errorOf(withHcm(route)), HasSubstr("routes[0].match.path: 'prefix' and 'path' are both set"));
}

TEST(ConfigLoaderTest, RouteToUnknownClusterIsAnError) {
  std::string route = kSimpleRoute;
  route.replace(route.find("cluster: backend"), 16, "cluster: nowhere");
  EXPECT_THAT(errorOf(withHcm(route)),
              HasSubstr("typed_config.route_config.virtual_hosts[0].routes[0].route.cluster: route refers to "
                        "cluster 'nowhere'"));
  // With CDS the cluster may arrive later.
  std::string yaml = withHcm(route) + R"(
dynamic_resources:
  cds_config: {ads: {}}
)";
  EXPECT_NO_THROW(loadBootstrapYaml(yaml));
}

TEST(ConfigLoaderTest, WeightedClustersAreChecked) {
  std::string route = kSimpleRoute;
  route.replace(route.find("{cluster: backend}"), 18,
                "{weighted_clusters: {clusters: [{name: backend, weight: 50}, {name: gone, weight: 50}]}}");
  EXPECT_THAT(errorOf(withHcm(route)),
              HasSubstr("route.weighted_clusters.clusters[1].name: route refers to cluster 'gone'"));
}

TEST(ConfigLoaderTest, BadRegexNamesPath) {
  std::string route = kSimpleRoute;
  route.replace(route.find("{prefix: \"/\"}"), 13, "{safe_regex: {regex: \"/(unclosed\"}}");
  EXPECT_THAT(
      errorOf(withHcm(route)),
      HasSubstr("filters[0].typed_config.route_config.virtual_hosts[0].routes[0].match.safe_regex.regex: "
                "invalid regex"));
}

TEST(ConfigLoaderTest, ClusterChecks) {
  // Hostnames in a STATIC cluster.
  std::string yaml = withHcm(kSimpleRoute);
  yaml.replace(yaml.find("address: 127.0.0.1, port_value: 8080"), 36,
               "address: backend.local, port_value: 8080");
  EXPECT_THAT(errorOf(yaml),
              HasSubstr("static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0]"
                        ".endpoint.address.socket_address.address: 'backend.local' is not an IP"));
  // LOGICAL_DNS needs exactly one endpoint.
  yaml = withHcm(kSimpleRoute, R"(
  - name: two
    type: LOGICAL_DNS
    load_assignment:
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: a.example, port_value: 80}}}
        - endpoint: {address: {socket_address: {address: b.example, port_value: 80}}}
)");
  EXPECT_THAT(errorOf(yaml),
              HasSubstr("static_resources.clusters[1].load_assignment: a LOGICAL_DNS cluster needs "
                        "exactly one endpoint, got 2"));
  // DNS endpoints need a port.
  yaml = withHcm(kSimpleRoute, R"(
  - name: noport
    type: STRICT_DNS
    load_assignment:
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: a.example}}}
)");
  EXPECT_THAT(errorOf(yaml),
              HasSubstr("static_resources.clusters[1].load_assignment.endpoints[0].lb_endpoints[0]"
                        ".endpoint.address.socket_address.port_value"));
  EXPECT_THAT(errorOf(withHcm(kSimpleRoute, "  - name: backend\n")),
              HasSubstr("static_resources.clusters[1].name: duplicate cluster name 'backend'"));
  EXPECT_THAT(errorOf(withHcm(kSimpleRoute, "  - name: zero\n    connect_timeout: 0s\n")),
              HasSubstr("static_resources.clusters[1].connect_timeout: must be greater than 0"));
}

TEST(ConfigLoaderTest, ListenerChecks) {
  std::string yaml = withHcm(kSimpleRoute);
  yaml.replace(yaml.find("    address: {socket_address: {address: 127.0.0.1, port_value: 10000}}\n"), 71, "");
  EXPECT_THAT(errorOf(yaml), HasSubstr("static_resources.listeners[0].address: a listener needs an address"));
  EXPECT_THAT(errorOf(R"(
admin:
  address: {socket_address: {address: localhost, port_value: 15000}}
)"),
              HasSubstr("admin.address.socket_address.address: 'localhost' is not an IP address"));
}

TEST(ConfigLoaderTest, UnregisteredNetworkFilterAndAccessLogAreErrors) {
  std::string yaml = withHcm(kSimpleRoute + std::string(R"(
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: /dev/stdout
          - name: envoy.access_loggers.http_grpc
)"));
  EXPECT_THAT(errorOf(yaml),
              HasSubstr("typed_config.access_log[1]: access logger 'envoy.access_loggers.http_grpc'"));
}

TEST(ConfigLoaderTest, MissingFileIsAnError) {
  EXPECT_THROW(loadBootstrapFile("/nonexistent/skiff.yaml"), ConfigError);
}

TEST(ConfigLoaderTest, UnpackToNamesThePath) {
  google::protobuf::Any any;
  any.set_type_url("type.googleapis.com/envoy.extensions.filters.http.router.v3.Router");
  try {
    unpackTo<HttpConnectionManager>(any, "a.b[0].typed_config");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_THAT(
        e.what(),
        HasSubstr("a.b[0].typed_config: expected type "
                  "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"));
  }
}

}  // namespace
}  // namespace skiff::config
