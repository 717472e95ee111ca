// The configurations of the project's founding documents (../shared/fixtures/seeds).
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <google/protobuf/wrappers.pb.h>

#include "envoy/extensions/filters/http/wasm/v3/wasm.pb.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls.pb.h"
#include "skiff/config/bootstrap_loader.h"
#include "skiff/config/extension_registry.h"
#include "test_util.h"

namespace skiff::config {
namespace {

using envoy::config::cluster::v3::Cluster;
using HttpConnectionManager =
    envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;

class ConfigSeedsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::fixturesDir();
    if (dir_.empty()) GTEST_SKIP() << "../shared/fixtures not found next to the repository";
  }
  std::string seed(const std::string& name) { return (dir_ / "seeds" / name).string(); }

  std::filesystem::path dir_;
};

HttpConnectionManager firstHcm(const LoadResult& r) {
  return unpackTo<HttpConnectionManager>(
      r.bootstrap.static_resources().listeners(0).filter_chains(0).filters(0).typed_config(), "hcm");
}

TEST_F(ConfigSeedsTest, HttpbinLoads) {
  LoadResult r = loadBootstrapFile(seed("httpbin.envoy.yaml"));
  EXPECT_TRUE(r.warnings.empty()) << r.warnings.front();
  const auto& listener = r.bootstrap.static_resources().listeners(0);
  EXPECT_EQ(listener.name(), "httpbin-demo");
  EXPECT_EQ(listener.address().socket_address().port_value(), 15001u);
  HttpConnectionManager hcm = firstHcm(r);
  EXPECT_EQ(hcm.stat_prefix(), "ingress_http");
  ASSERT_EQ(hcm.http_filters_size(), 1);
  EXPECT_EQ(hcm.http_filters(0).name(), "envoy.filters.http.router");
  EXPECT_FALSE(hcm.http_filters(0).has_typed_config());
  const auto& route = hcm.route_config().virtual_hosts(0).routes(0);
  EXPECT_EQ(route.match().prefix(), "/");
  EXPECT_TRUE(route.route().auto_host_rewrite().value());
  EXPECT_EQ(route.route().cluster(), "httpbin_service");

  const Cluster& cluster = r.bootstrap.static_resources().clusters(0);
  EXPECT_EQ(cluster.type(), Cluster::LOGICAL_DNS);
  EXPECT_EQ(cluster.dns_lookup_family(), Cluster::V4_ONLY);
  EXPECT_EQ(cluster.lb_policy(), Cluster::ROUND_ROBIN);
  EXPECT_EQ(cluster.connect_timeout().seconds(), 5);
  const auto& sa =
      cluster.load_assignment().endpoints(0).lb_endpoints(0).endpoint().address().socket_address();
  EXPECT_EQ(sa.address(), "host.docker.internal");
  EXPECT_EQ(sa.port_value(), 8000u);
}

TEST_F(ConfigSeedsTest, NativeBackendLoads) {
  LoadResult r = loadBootstrapFile(seed("native-backend.envoy.yaml"));
  EXPECT_TRUE(r.warnings.empty());
  const Cluster& cluster = r.bootstrap.static_resources().clusters(0);
  EXPECT_EQ(cluster.type(), Cluster::STRICT_DNS);
  EXPECT_EQ(cluster.connect_timeout().nanos(), 250000000);
  EXPECT_EQ(firstHcm(r).http_filters_size(), 0);
}

TEST_F(ConfigSeedsTest, WasmDemoNeedsTheWasmFilterRegistered) {
  const std::string path = seed("wasm-demo.envoy.yaml");
  try {
    loadBootstrapFile(path);
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    EXPECT_NE(
        msg.find("static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0]"),
        std::string::npos)
        << msg;
    EXPECT_NE(msg.find("type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"), std::string::npos)
        << msg;
    EXPECT_NE(msg.find("my-wasm-filter"), std::string::npos) << msg;
  }

  registerExtension(Category::kHttpFilter, "envoy.filters.http.wasm",
                    "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm");
  LoadResult r = loadBootstrapFile(path);
  HttpConnectionManager hcm = firstHcm(r);
  ASSERT_EQ(hcm.http_filters_size(), 2);
  // The TypedStruct was unwrapped into the real Wasm message.
  auto wasm =
      unpackTo<envoy::extensions::filters::http::wasm::v3::Wasm>(hcm.http_filters(0).typed_config(), "wasm");
  EXPECT_EQ(wasm.config().vm_config().runtime(), "envoy.wasm.runtime.v8");
  EXPECT_EQ(wasm.config().vm_config().vm_id(), "my-vm");
  EXPECT_EQ(wasm.config().vm_config().code().local().filename(), "/my-filter.wasm");
  auto configuration =
      unpackTo<google::protobuf::StringValue>(wasm.config().configuration(), "configuration");
  EXPECT_EQ(configuration.value(), "User-Agent");
  ASSERT_EQ(hcm.access_log_size(), 1);
  EXPECT_EQ(hcm.access_log(0).typed_config().type_url(),
            "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog");

  const Cluster& cluster = r.bootstrap.static_resources().clusters(0);
  auto tls = unpackTo<envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext>(
      cluster.transport_socket().typed_config(), "tls");
  EXPECT_EQ(tls.sni(), "www.whatsmyua.info");
}

// The snippet's clusters, moved under static_resources so they are read as Bootstrap clusters.
std::string snippetAsBootstrap(const std::string& file, bool v3_form) {
  YAML::Node snippet = YAML::LoadFile(file);
  YAML::Node clusters = snippet["clusters"];
  if (v3_form) {
    for (YAML::Node cluster : clusters) {
      YAML::Node hosts = cluster["hosts"];
      YAML::Node la;
      la["cluster_name"] = cluster["name"];
      YAML::Node lb_endpoints(YAML::NodeType::Sequence);
      for (YAML::Node host : hosts) {
        YAML::Node lb_endpoint;
        lb_endpoint["endpoint"]["address"] = host;
        lb_endpoints.push_back(lb_endpoint);
      }
      YAML::Node locality;
      locality["lb_endpoints"] = lb_endpoints;
      la["endpoints"].push_back(locality);
      cluster.remove("hosts");
      cluster["load_assignment"] = la;
    }
  }
  YAML::Node bootstrap;
  bootstrap["dynamic_resources"] = snippet["dynamic_resources"];
  bootstrap["static_resources"]["clusters"] = clusters;
  YAML::Emitter out;
  out << bootstrap;
  return out.c_str();
}

TEST_F(ConfigSeedsTest, DynamicLdsSnippetRejectsV2Hosts) {
  const std::string file = seed("dynamic-lds.snippet.yaml");
  try {
    loadBootstrapYaml(snippetAsBootstrap(file, false));
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              "static_resources.clusters[0].hosts: v2 field removed in the v3 API; use load_assignment");
  }
}

TEST_F(ConfigSeedsTest, DynamicLdsSnippetInV3FormLoads) {
  LoadResult r = loadBootstrapYaml(snippetAsBootstrap(seed("dynamic-lds.snippet.yaml"), true));
  const auto& lds = r.bootstrap.dynamic_resources().lds_config();
  EXPECT_EQ(lds.api_config_source().api_type(), envoy::config::core::v3::ApiConfigSource::GRPC);
  EXPECT_EQ(lds.api_config_source().grpc_services(0).envoy_grpc().cluster_name(), "xds_cluster");
  const Cluster& cluster = r.bootstrap.static_resources().clusters(0);
  EXPECT_TRUE(cluster.has_http2_protocol_options());
  EXPECT_EQ(
      cluster.load_assignment().endpoints(0).lb_endpoints(0).endpoint().address().socket_address().address(),
      "127.0.0.3");
}

}  // namespace
}  // namespace skiff::config
