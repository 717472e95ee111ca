// EnvoyFilter manifests: parsing, validation errors (file, object, field), loading, application order.
#include <gtest/gtest.h>

#include <fstream>

#include "skiff/config/config_error.h"
#include "udpa/type/v1/typed_struct.pb.h"
#include "unit/envoy_filter/test_util.h"

namespace skiff::envoy_filter {
namespace {

using testing::applierFor;
using testing::sidecar;

constexpr const char* kSeed = R"(
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: my-wasm-filter
spec:
  workloadSelector:
    labels:
      app: my-client
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      listener:
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter:
              name: envoy.filters.http.router
    patch:
      operation: INSERT_BEFORE
      value:
        name: my-wasm-filter
        typed_config:
          '@type': type.googleapis.com/udpa.type.v1.TypedStruct
          type_url: type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
          value:
            config:
              vm_config:
                runtime: envoy.wasm.runtime.v8
                code:
                  local:
                    filename: /var/local/wasm/my-filter.wasm
)";

std::string errorOf(const std::string& yaml) {
  try {
    parseEnvoyFilters(yaml, "bad.yaml");
  } catch (const config::ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(EnvoyFilterParse, SeedManifest) {
  auto filters = parseEnvoyFilters(kSeed, "seed.yaml");
  ASSERT_EQ(filters.size(), 1u);
  const auto& f = filters[0];
  EXPECT_EQ(f.name, "my-wasm-filter");
  EXPECT_EQ(f.workload_labels.at("app"), "my-client");
  ASSERT_EQ(f.patches.size(), 1u);
  const auto& p = f.patches[0];
  EXPECT_EQ(p.apply_to, ApplyTo::kHttpFilter);
  EXPECT_EQ(p.operation, Operation::kInsertBefore);
  EXPECT_EQ(p.listener.filter_chain.filter_name, "envoy.filters.network.http_connection_manager");
  EXPECT_EQ(p.listener.filter_chain.sub_filter_name, "envoy.filters.http.router");
  ASSERT_NE(p.value, nullptr);
  // The TypedStruct was unwrapped into the Wasm type Skiff knows.
  const auto& h =
      static_cast<const envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter&>(
          *p.value);
  EXPECT_EQ(h.typed_config().type_url(), "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm");
}

TEST(EnvoyFilterParse, OtherKindsAreSkipped) {
  auto filters = parseEnvoyFilters(
      "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n---\n" + std::string(kSeed), "multi.yaml");
  EXPECT_EQ(filters.size(), 1u);
}

TEST(EnvoyFilterParse, UnknownTypesKeptAsTypedStruct) {
  auto filters = parseEnvoyFilters(R"(
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: rl}
spec:
  configPatches:
  - applyTo: HTTP_FILTER
    patch:
      operation: INSERT_FIRST
      value:
        name: envoy.filters.http.local_ratelimit
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
          stat_prefix: rl
)",
                                   "x.yaml");
  const auto& h =
      static_cast<const envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter&>(
          *filters[0].patches[0].value);
  EXPECT_EQ(h.typed_config().type_url(), "type.googleapis.com/udpa.type.v1.TypedStruct");
  udpa::type::v1::TypedStruct ts;
  ASSERT_TRUE(h.typed_config().UnpackTo(&ts));
  EXPECT_EQ(ts.type_url(),
            "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit");
  EXPECT_EQ(ts.value().fields().at("stat_prefix").string_value(), "rl");
}

TEST(EnvoyFilterParse, ErrorsNameFileObjectAndField) {
  const std::string head =
      "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: f1, "
      "namespace: ns}\nspec:\n  configPatches:\n";
  std::string e =
      errorOf(head + "  - applyTo: HTTP_FILTER\n    patch: {operation: SHUFFLE, value: {name: x}}\n");
  EXPECT_NE(
      e.find("bad.yaml: EnvoyFilter 'ns/f1': spec.configPatches[0].patch.operation: unknown value 'SHUFFLE'"),
      std::string::npos)
      << e;
  e = errorOf(head + "  - applyTo: CLUSTER\n    patch: {operation: MERGE}\n");
  EXPECT_NE(e.find("spec.configPatches[0].patch.value: is required unless operation is REMOVE"),
            std::string::npos)
      << e;
  e = errorOf(
      head +
      "  - applyTo: LISTENER\n    match: {proxy: {proxyVersion: '(('}}\n    patch: {operation: REMOVE}\n");
  EXPECT_NE(e.find("spec.configPatches[0].match.proxy.proxyVersion: invalid regex"), std::string::npos) << e;
  e = errorOf(head +
              "  - applyTo: NETWORK_FILTER\n    match: {listener: {filterChain: {filter: {name: "
              "envoy.filters.network.tcp_proxy, subFilter: {name: x}}}}}\n    patch: {operation: REMOVE}\n");
  EXPECT_NE(e.find("subFilter: is only allowed with applyTo HTTP_FILTER"), std::string::npos) << e;
  e = errorOf(head +
              "  - applyTo: CLUSTER\n    match: {listener: {name: x}}\n    patch: {operation: REMOVE}\n");
  EXPECT_NE(e.find("applyTo CLUSTER only takes a cluster match"), std::string::npos) << e;
  e = errorOf(head +
              "  - applyTo: CLUSTER\n    patch: {operation: ADD, value: {name: c, connect_timeout: "
              "forever}}\n");
  EXPECT_NE(e.find("spec.configPatches[0].patch.value.connect_timeout"), std::string::npos) << e;
  e = errorOf(head + "  - applyTo: CLUSTER\n    patch: {operation: REMOVE}\n    bogus: 1\n");
  EXPECT_NE(e.find("spec.configPatches[0].bogus: unknown field"), std::string::npos) << e;
  e = errorOf("apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: f}\nspec: {}\n");
  EXPECT_NE(e.find("spec.configPatches: is required"), std::string::npos) << e;
  e = errorOf("kind: EnvoyFilter\nmetadata: {name: [\n");
  EXPECT_NE(e.find("bad.yaml: invalid YAML"), std::string::npos) << e;
}

TEST(EnvoyFilterParse, LoadsFilesAndDirectories) {
  const auto dir = std::filesystem::temp_directory_path() / ("ef-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "a.yaml") << kSeed;
  std::ofstream(dir / "b.yml") << std::string(kSeed).replace(std::string(kSeed).find("my-wasm-filter"), 14,
                                                             "second");
  std::ofstream(dir / "ignored.txt") << "not yaml: [";
  auto filters = loadEnvoyFilters(dir.string());
  ASSERT_EQ(filters.size(), 2u);
  EXPECT_EQ(filters[1].name, "second");
  EXPECT_EQ(loadEnvoyFilterPaths((dir / "a.yaml").string() + "," + (dir / "b.yml").string()).size(), 2u);
  EXPECT_THROW(loadEnvoyFilters((dir / "missing.yaml").string()), config::ConfigError);
  std::filesystem::remove_all(dir);
}

TEST(EnvoyFilterParse, ApplicationOrder) {
  auto make = [](std::string name, std::string ns, int priority, std::string created) {
    EnvoyFilter f;
    f.name = std::move(name);
    f.namespace_ = std::move(ns);
    f.priority = priority;
    f.creation_timestamp = std::move(created);
    return f;
  };
  std::vector<EnvoyFilter> v = {make("c", "app", 0, "2024-01-02T00:00:00Z"),
                                make("b", "app", 0, "2024-01-01T00:00:00Z"), make("a", "app", -1, ""),
                                make("z", "istio-system", 10, "")};
  sortForApplication(v);
  EXPECT_EQ(v[0].name, "z");  // root namespace first
  EXPECT_EQ(v[1].name, "a");  // then by priority
  EXPECT_EQ(v[2].name, "b");  // then creation time
  EXPECT_EQ(v[3].name, "c");
}

TEST(EnvoyFilterSelect, WorkloadSelectorNamespaceAndTargetRefs) {
  EXPECT_EQ(applierFor(kSeed, sidecar({{"app", "my-client"}, {"v", "1"}})).selected().size(), 1u);
  auto other = applierFor(kSeed, sidecar({{"app", "other"}}));
  EXPECT_EQ(other.selected().size(), 0u);
  ASSERT_EQ(other.notSelected().size(), 1u);
  EXPECT_NE(other.notSelected()[0].second.find("app=my-client"), std::string::npos);
  std::string ns = kSeed;
  ns.replace(ns.find("name: my-wasm-filter"), 20, "name: f\n  namespace: other");
  EXPECT_EQ(applierFor(ns, sidecar({{"app", "my-client"}})).selected().size(), 0u);
  ns.replace(ns.find("namespace: other"), 16, "namespace: istio-system");
  EXPECT_EQ(applierFor(ns, sidecar({{"app", "my-client"}})).selected().size(), 1u);
}

TEST(EnvoyFilterSelect, ProxyFromNode) {
  envoy::config::core::v3::Node node;
  node.set_id("sidecar~10.0.0.1~my-client.shop~shop.svc.cluster.local");
  auto& f = *node.mutable_metadata()->mutable_fields();
  f["LABELS"].mutable_struct_value()->mutable_fields()->operator[]("app").set_string_value("my-client");
  f["ISTIO_VERSION"].set_string_value("1.20.0");
  Proxy p = Proxy::fromNode(node);
  EXPECT_EQ(p.labels.at("app"), "my-client");
  EXPECT_EQ(p.istio_version, "1.20.0");
  EXPECT_EQ(p.namespace_, "shop");
  EXPECT_FALSE(p.gateway);
  f["LABELS"].set_string_value(R"({"app":"json-labels"})");  // ISTIO_META_LABELS-style string
  node.set_id("router~10.0.0.1~gw.istio-system~istio-system.svc.cluster.local");
  p = Proxy::fromNode(node);
  EXPECT_EQ(p.labels.at("app"), "json-labels");
  EXPECT_TRUE(p.gateway);
}

}  // namespace
}  // namespace skiff::envoy_filter
