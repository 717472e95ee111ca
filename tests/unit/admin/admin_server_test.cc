// AdminServer over real TCP on 127.0.0.1: endpoint shapes, methods, keep-alive, malformed input.
#include "skiff/server/admin.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <asio/post.hpp>
#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

#include "envoy/admin/v3/config_dump.pb.h"
#include "envoy/config/bootstrap/v3/bootstrap.pb.h"
#include "envoy/extensions/filters/http/router/v3/router.pb.h"
#include "http_client.h"
#include "skiff/common/logging.h"
#include "skiff/stats/stats.h"
#include "skiff/upstream/cluster_manager.h"

namespace skiff::server {
namespace {

using testing::HttpConnection;
using testing::request;
namespace pb = google::protobuf;

constexpr char kBootstrapJson[] = R"({
  "node": {"id": "sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local", "cluster": "svc"},
  "static_resources": {
    "listeners": [{
      "name": "virtualInbound",
      "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15006}},
      "filter_chains": [{"filters": [{
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
          "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
          "stat_prefix": "inbound",
          "route_config": {"name": "local_route", "virtual_hosts": [{"name": "all", "domains": ["*"],
            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]}]},
          "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]
        }
      }]}]
    }],
    "clusters": [
      {"name": "backend", "type": "STATIC", "load_assignment": {"cluster_name": "backend", "endpoints": [
        {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 8080}}}}]}]}},
      {"name": "other", "type": "STATIC"}
    ],
    "secrets": [{"name": "cert", "tls_certificate": {
      "certificate_chain": {"inline_string": "CERT"}, "private_key": {"inline_string": "SECRET-KEY"}}}]
  }
})";

class FakeContext : public AdminContext {
 public:
  explicit FakeContext(asio::io_context& loop) : store_(1), clusters_(loop, store_) {
    // The JSON parser resolves the Router type URL from the generated pool, so it must be linked in.
    envoy::extensions::filters::http::router::v3::Router link_router;
    (void)link_router;
    auto status = pb::util::JsonStringToMessage(kBootstrapJson, &bootstrap_);
    EXPECT_TRUE(status.ok()) << status.message();
  }

  stats::Store& stats() override { return store_; }
  const upstream::ClusterManager& clusterManager() const override { return clusters_; }
  ServerState state() const override { return state_.load(); }
  std::vector<std::pair<std::string, std::string>> listenerAddresses() const override {
    return {{"virtualOutbound", "0.0.0.0:15001"}, {"virtualInbound", "[::]:15006"}};
  }
  const envoy::config::bootstrap::v3::Bootstrap& bootstrap() const override { return bootstrap_; }
  std::string serverInfoCommandLine() const override {
    return R"({"concurrency": 2, "log_level": "info", "mode": "Serve"})";
  }
  std::chrono::system_clock::time_point startTime() const override { return start_; }
  void setHealthCheckFailed(bool failed) override { hc_failed_ = failed; }
  void drainListeners(bool inbound_only, bool graceful, bool skip_exit) override {
    drain_flags_ = (inbound_only ? 1 : 0) | (graceful ? 2 : 0) | (skip_exit ? 4 : 0);
    drain_calls_++;
  }
  void quit() override { quit_calls_++; }

  stats::Store store_;
  upstream::ClusterManager clusters_;
  envoy::config::bootstrap::v3::Bootstrap bootstrap_;
  std::chrono::system_clock::time_point start_ = std::chrono::system_clock::now() - std::chrono::seconds(12);
  std::atomic<ServerState> state_{ServerState::kLive};
  std::atomic<bool> hc_failed_{false};
  std::atomic<int> drain_flags_{0};
  std::atomic<int> drain_calls_{0};
  std::atomic<int> quit_calls_{0};
};

bool waitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::yield();
  }
  return pred();
}

pb::Struct parseJson(const std::string& body) {
  pb::Struct out;
  auto status = pb::util::JsonStringToMessage(body, &out);
  EXPECT_TRUE(status.ok()) << status.message() << "\n" << body;
  return out;
}

class AdminServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    log::init(spdlog::level::info);
    server_ = std::make_unique<AdminServer>(
        loop_, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0), context_);
    port_ = server_->localEndpoint().port();
    thread_ = std::thread([this] {
      loop_.run();
      stopped_ = true;
    });
  }

  void TearDown() override {
    asio::post(loop_, [this] { server_->close(); });
    // close() ends every coroutine, so the loop runs out of work by itself.
    if (!waitFor([this] { return stopped_.load(); })) {
      ADD_FAILURE() << "admin loop still busy after close()";
      loop_.stop();
    }
    thread_.join();
    server_.reset();
  }

  // Runs `f` on the loop thread and waits for it.
  template <typename F>
  auto onLoop(F f) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto future = task.get_future();
    asio::post(loop_, [&task] { task(); });
    return future.get();
  }

  uint64_t counter(const std::string& name) {
    for (const auto& s : context_.store_.snapshot()) {
      if (s.name == name) return s.counter;
    }
    return 0;
  }

  asio::io_context loop_{1};
  FakeContext context_{loop_};
  std::unique_ptr<AdminServer> server_;
  uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<bool> stopped_{false};
};

TEST_F(AdminServerTest, HelpListsEndpointsAndUnknownPathIs404) {
  auto help = request(port_, "GET", "/help");
  ASSERT_TRUE(help);
  EXPECT_EQ(help->status, 200);
  EXPECT_EQ(help->body.rfind("admin commands are:\n", 0), 0u);
  EXPECT_NE(help->body.find("  /stats/prometheus: print server stats in prometheus format\n"),
            std::string::npos);
  EXPECT_NE(help->body.find("  /quitquitquit: exit the server\n"), std::string::npos);

  auto missing = request(port_, "GET", "/no_such_thing?x=1");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(missing->body, "invalid path. " + help->body);
}

TEST_F(AdminServerTest, MutatingEndpointsRequirePost) {
  for (const char* path : {"/healthcheck/fail", "/quitquitquit", "/reset_counters", "/drain_listeners"}) {
    auto r = request(port_, "GET", path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 405) << path;
    EXPECT_EQ(r->body, "Method GET not allowed, POST required.") << path;
  }
  EXPECT_FALSE(context_.hc_failed_);
  EXPECT_EQ(context_.quit_calls_, 0);
  EXPECT_EQ(context_.drain_calls_, 0);

  auto fail = request(port_, "POST", "/healthcheck/fail");
  ASSERT_TRUE(fail);
  EXPECT_EQ(fail->status, 200);
  EXPECT_EQ(fail->body, "OK\n");
  EXPECT_TRUE(context_.hc_failed_);
  auto ok = request(port_, "POST", "/healthcheck/ok");
  ASSERT_TRUE(ok);
  EXPECT_FALSE(context_.hc_failed_);
}

TEST_F(AdminServerTest, ReadyIs200OnlyWhenLive) {
  auto live = request(port_, "GET", "/ready");
  ASSERT_TRUE(live);
  EXPECT_EQ(live->status, 200);
  EXPECT_EQ(live->body, "LIVE\n");
  EXPECT_EQ(live->header("content-type"), "text/plain; charset=UTF-8");

  context_.state_ = ServerState::kDraining;
  auto draining = request(port_, "GET", "/ready");
  ASSERT_TRUE(draining);
  EXPECT_EQ(draining->status, 503);
  EXPECT_EQ(draining->body, "DRAINING\n");

  context_.state_ = ServerState::kInitializing;
  auto init = request(port_, "GET", "/ready");
  ASSERT_TRUE(init);
  EXPECT_EQ(init->status, 503);
  EXPECT_EQ(init->body, "INITIALIZING\n");
}

TEST_F(AdminServerTest, StatsFilterTypeUsedOnlyAndFormats) {
  onLoop([this] {
    context_.store_.counter("cluster.backend.upstream_rq_total").inc(3);
    context_.store_.counter("cluster.backend.upstream_rq_timeout");  // never incremented
    context_.store_.gauge("server.live").set(1);
    return 0;
  });

  auto filtered = request(port_, "GET", "/stats?filter=upstream_rq");
  ASSERT_TRUE(filtered);
  EXPECT_EQ(filtered->status, 200);
  EXPECT_NE(filtered->body.find("cluster.backend.upstream_rq_total: 3\n"), std::string::npos);
  EXPECT_NE(filtered->body.find("cluster.backend.upstream_rq_timeout: 0\n"), std::string::npos);
  EXPECT_EQ(filtered->body.find("server.live"), std::string::npos);

  // Anchored, percent-encoded regex.
  auto anchored = request(port_, "GET", "/stats?filter=%5Eserver%5C.");
  ASSERT_TRUE(anchored);
  EXPECT_NE(anchored->body.find("server.live: 1\n"), std::string::npos);
  EXPECT_EQ(anchored->body.find("cluster.backend"), std::string::npos);

  auto used = request(port_, "GET", "/stats?usedonly&filter=cluster%5C.backend");
  ASSERT_TRUE(used);
  EXPECT_NE(used->body.find("upstream_rq_total: 3"), std::string::npos);
  EXPECT_EQ(used->body.find("upstream_rq_timeout"), std::string::npos);

  auto gauges = request(port_, "GET", "/stats?type=Gauges");
  ASSERT_TRUE(gauges);
  EXPECT_NE(gauges->body.find("server.live: 1"), std::string::npos);
  EXPECT_EQ(gauges->body.find("upstream_rq_total"), std::string::npos);
  EXPECT_EQ(request(port_, "GET", "/stats?type=Bogus")->status, 400);

  auto bad = request(port_, "GET", "/stats?filter=(unclosed");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);

  auto json = request(port_, "GET", "/stats?format=json&filter=upstream_rq_total");
  ASSERT_TRUE(json);
  EXPECT_EQ(json->header("content-type"), "application/json");
  pb::Struct parsed = parseJson(json->body);
  ASSERT_TRUE(parsed.fields().count("stats"));
  const auto& stats = parsed.fields().at("stats").list_value();
  ASSERT_GE(stats.values_size(), 1);
  EXPECT_EQ(stats.values(0).struct_value().fields().at("name").string_value(),
            "cluster.backend.upstream_rq_total");

  auto prom = request(port_, "GET", "/stats/prometheus");
  ASSERT_TRUE(prom);
  EXPECT_EQ(prom->status, 200);
  EXPECT_NE(prom->body.find("# TYPE envoy_cluster_upstream_rq_total counter"), std::string::npos);
  auto prom2 = request(port_, "GET", "/stats?format=prometheus&filter=server");
  ASSERT_TRUE(prom2);
  EXPECT_NE(prom2->body.find("envoy_server_live"), std::string::npos);
  EXPECT_EQ(prom2->body.find("envoy_cluster_upstream_rq_total"), std::string::npos);
}

TEST_F(AdminServerTest, ResetCountersZeroesCounters) {
  onLoop([this] {
    context_.store_.counter("cluster.backend.upstream_rq_total").inc(5);
    return 0;
  });
  EXPECT_EQ(counter("cluster.backend.upstream_rq_total"), 5u);
  auto r = request(port_, "POST", "/reset_counters");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "OK\n");
  EXPECT_EQ(counter("cluster.backend.upstream_rq_total"), 0u);
}

TEST_F(AdminServerTest, LoggingListsAndChangesLevels) {
  log::setAllLevels(spdlog::level::info);
  auto list = request(port_, "GET", "/logging");
  ASSERT_TRUE(list);
  EXPECT_EQ(list->status, 200);
  EXPECT_EQ(list->body.rfind("active loggers:\n", 0), 0u);
  EXPECT_NE(list->body.find("  router: info\n"), std::string::npos);

  auto one = request(port_, "POST", "/logging?router=debug");
  ASSERT_TRUE(one);
  EXPECT_EQ(one->status, 200);
  EXPECT_NE(one->body.find("  router: debug\n"), std::string::npos);
  EXPECT_EQ(log::find("router")->level(), spdlog::level::debug);
  EXPECT_EQ(log::find("http")->level(), spdlog::level::info);

  auto paths = request(port_, "POST", "/logging?paths=http:trace,upstream:warning");
  ASSERT_TRUE(paths);
  EXPECT_EQ(paths->status, 200);
  EXPECT_EQ(log::find("http")->level(), spdlog::level::trace);
  EXPECT_EQ(log::find("upstream")->level(), spdlog::level::warn);
  EXPECT_NE(paths->body.find("  upstream: warning\n"), std::string::npos);

  auto all = request(port_, "POST", "/logging?level=error");
  ASSERT_TRUE(all);
  for (auto* logger : log::all()) EXPECT_EQ(logger->level(), spdlog::level::err) << logger->name();

  auto unknown = request(port_, "POST", "/logging?nosuchlogger=debug");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 400);
  EXPECT_EQ(unknown->body.rfind("error: unknown logger name\n\n", 0), 0u);
  EXPECT_NE(unknown->body.find("usage: /logging?level=<level> (change all levels)\n"), std::string::npos);

  auto bad_level = request(port_, "POST", "/logging?router=loud");
  ASSERT_TRUE(bad_level);
  EXPECT_EQ(bad_level->status, 400);
  EXPECT_EQ(bad_level->body.rfind("error: unknown logger level\n", 0), 0u);
  EXPECT_EQ(log::find("router")->level(), spdlog::level::err);

  // A bad pair in paths= changes nothing.
  auto partial = request(port_, "POST", "/logging?paths=http:debug,nope:debug");
  ASSERT_TRUE(partial);
  EXPECT_EQ(partial->status, 400);
  EXPECT_EQ(log::find("http")->level(), spdlog::level::err);

  auto get_change = request(port_, "GET", "/logging?level=debug");
  ASSERT_TRUE(get_change);
  EXPECT_EQ(get_change->status, 405);
  EXPECT_EQ(log::find("http")->level(), spdlog::level::err);
  log::setAllLevels(spdlog::level::info);
}

std::vector<std::string> configTypes(const envoy::admin::v3::ConfigDump& dump) {
  std::vector<std::string> types;
  for (const auto& any : dump.configs()) types.push_back(any.type_url());
  return types;
}

envoy::admin::v3::ConfigDump parseDump(const std::string& body) {
  envoy::admin::v3::ConfigDump dump;
  auto status = pb::util::JsonStringToMessage(body, &dump);
  EXPECT_TRUE(status.ok()) << status.message() << "\n" << body;
  return dump;
}

TEST_F(AdminServerTest, ConfigDumpHasEnvoyShape) {
  auto r = request(port_, "GET", "/config_dump");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->header("content-type"), "application/json");
  auto dump = parseDump(r->body);
  const std::string p = "type.googleapis.com/envoy.admin.v3.";
  EXPECT_EQ(configTypes(dump),
            (std::vector<std::string>{p + "BootstrapConfigDump", p + "ClustersConfigDump",
                                      p + "ListenersConfigDump", p + "ScopedRoutesConfigDump",
                                      p + "RoutesConfigDump", p + "SecretsConfigDump"}));

  envoy::admin::v3::BootstrapConfigDump boot;
  ASSERT_TRUE(dump.configs(0).UnpackTo(&boot));
  EXPECT_EQ(boot.bootstrap().node().id(), "sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local");
  EXPECT_TRUE(boot.has_last_updated());
  EXPECT_EQ(boot.bootstrap().static_resources().secrets(0).tls_certificate().private_key().inline_string(),
            "[redacted]");
  EXPECT_EQ(r->body.find("SECRET-KEY"), std::string::npos);

  envoy::admin::v3::ClustersConfigDump clusters;
  ASSERT_TRUE(dump.configs(1).UnpackTo(&clusters));
  ASSERT_EQ(clusters.static_clusters_size(), 2);
  EXPECT_EQ(clusters.static_clusters(0).cluster().type_url(),
            "type.googleapis.com/envoy.config.cluster.v3.Cluster");

  envoy::admin::v3::ListenersConfigDump listeners;
  ASSERT_TRUE(dump.configs(2).UnpackTo(&listeners));
  ASSERT_EQ(listeners.static_listeners_size(), 1);

  envoy::admin::v3::RoutesConfigDump routes;
  ASSERT_TRUE(dump.configs(4).UnpackTo(&routes));
  ASSERT_EQ(routes.static_route_configs_size(), 1);
  envoy::config::route::v3::RouteConfiguration route;
  ASSERT_TRUE(routes.static_route_configs(0).route_config().UnpackTo(&route));
  EXPECT_EQ(route.name(), "local_route");

  envoy::admin::v3::SecretsConfigDump secrets;
  ASSERT_TRUE(dump.configs(5).UnpackTo(&secrets));
  ASSERT_EQ(secrets.static_secrets_size(), 1);
  EXPECT_EQ(secrets.static_secrets(0).name(), "cert");

  // Proto field names, as Envoy prints them.
  EXPECT_NE(r->body.find("\"static_resources\""), std::string::npos);
  EXPECT_NE(r->body.find("\"last_updated\""), std::string::npos);
}

TEST_F(AdminServerTest, ConfigDumpResourceMaskNameRegexAndEds) {
  auto resource = request(port_, "GET", "/config_dump?resource=static_clusters");
  ASSERT_TRUE(resource);
  ASSERT_EQ(resource->status, 200) << resource->body;
  auto dump = parseDump(resource->body);
  ASSERT_EQ(dump.configs_size(), 2);
  EXPECT_EQ(dump.configs(0).type_url(),
            "type.googleapis.com/envoy.admin.v3.ClustersConfigDump.StaticCluster");

  auto masked = request(port_, "GET", "/config_dump?resource=static_clusters&mask=cluster.name");
  ASSERT_TRUE(masked);
  ASSERT_EQ(masked->status, 200) << masked->body;
  dump = parseDump(masked->body);
  envoy::admin::v3::ClustersConfigDump::StaticCluster element;
  ASSERT_TRUE(dump.configs(0).UnpackTo(&element));
  EXPECT_FALSE(element.has_last_updated());
  envoy::config::cluster::v3::Cluster cluster;
  ASSERT_TRUE(element.cluster().UnpackTo(&cluster));
  EXPECT_EQ(cluster.name(), "backend");
  EXPECT_FALSE(cluster.has_load_assignment());

  auto named = request(port_, "GET", "/config_dump?resource=static_clusters&name_regex=oth.*");
  ASSERT_TRUE(named);
  dump = parseDump(named->body);
  ASSERT_EQ(dump.configs_size(), 1);
  ASSERT_TRUE(dump.configs(0).UnpackTo(&element));
  ASSERT_TRUE(element.cluster().UnpackTo(&cluster));
  EXPECT_EQ(cluster.name(), "other");

  auto top_mask = request(port_, "GET", "/config_dump?mask=static_listeners");
  ASSERT_TRUE(top_mask);
  ASSERT_EQ(top_mask->status, 200);
  dump = parseDump(top_mask->body);
  ASSERT_EQ(dump.configs_size(), 1);
  EXPECT_EQ(dump.configs(0).type_url(), "type.googleapis.com/envoy.admin.v3.ListenersConfigDump");

  auto eds = request(port_, "GET", "/config_dump?include_eds");
  ASSERT_TRUE(eds);
  dump = parseDump(eds->body);
  ASSERT_EQ(dump.configs_size(), 7);
  EXPECT_EQ(dump.configs(2).type_url(), "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump");
  envoy::admin::v3::EndpointsConfigDump endpoints;
  ASSERT_TRUE(dump.configs(2).UnpackTo(&endpoints));
  EXPECT_EQ(endpoints.static_endpoint_configs_size(), 2);

  auto missing = request(port_, "GET", "/config_dump?resource=no_such_field");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(missing->body, "no_such_field not found in config dump");

  auto scalar = request(port_, "GET", "/config_dump?resource=version_info");
  ASSERT_TRUE(scalar);
  EXPECT_EQ(scalar->status, 400);

  auto bad_mask = request(port_, "GET", "/config_dump?mask=nonsense.path");
  ASSERT_TRUE(bad_mask);
  EXPECT_EQ(bad_mask->status, 400);

  auto bad_regex = request(port_, "GET", "/config_dump?name_regex=(");
  ASSERT_TRUE(bad_regex);
  EXPECT_EQ(bad_regex->status, 400);
}

TEST_F(AdminServerTest, ListenersTextAndJson) {
  auto text = request(port_, "GET", "/listeners");
  ASSERT_TRUE(text);
  EXPECT_EQ(text->body, "virtualOutbound::0.0.0.0:15001\nvirtualInbound::[::]:15006\n");
  auto json = request(port_, "GET", "/listeners?format=json");
  ASSERT_TRUE(json);
  pb::Struct parsed = parseJson(json->body);
  const auto& statuses = parsed.fields().at("listener_statuses").list_value();
  ASSERT_EQ(statuses.values_size(), 2);
  const auto& second = statuses.values(1).struct_value().fields();
  EXPECT_EQ(second.at("name").string_value(), "virtualInbound");
  const auto& sa =
      second.at("local_address").struct_value().fields().at("socket_address").struct_value().fields();
  EXPECT_EQ(sa.at("address").string_value(), "::");
  EXPECT_EQ(sa.at("port_value").number_value(), 15006);
}

TEST_F(AdminServerTest, ServerInfoMemoryRuntimeCertsAreJson) {
  auto info = request(port_, "GET", "/server_info");
  ASSERT_TRUE(info);
  pb::Struct parsed = parseJson(info->body);
  const auto& f = parsed.fields();
  EXPECT_EQ(f.at("version").string_value().rfind("skiff/", 0), 0u);
  EXPECT_EQ(f.at("state").string_value(), "LIVE");
  EXPECT_EQ(f.at("hot_restart_version").string_value(), "disabled");
  const std::string uptime = f.at("uptime_current_epoch").string_value();
  ASSERT_FALSE(uptime.empty());
  EXPECT_EQ(uptime.back(), 's');
  EXPECT_GE(std::stoi(uptime), 12);
  EXPECT_EQ(f.at("command_line_options").struct_value().fields().at("concurrency").number_value(), 2);
  EXPECT_EQ(f.at("node").struct_value().fields().at("cluster").string_value(), "svc");

  auto memory = request(port_, "GET", "/memory");
  ASSERT_TRUE(memory);
  parsed = parseJson(memory->body);
  // uint64 fields are JSON strings; `allocated` is 0 under ASan's allocator, so only its form is checked.
  for (const char* key :
       {"allocated", "heap_size", "pageheap_unmapped", "pageheap_free", "total_thread_cache"}) {
    const std::string value = parsed.fields().at(key).string_value();
    EXPECT_FALSE(value.empty()) << key;
    EXPECT_EQ(value.find_first_not_of("0123456789"), std::string::npos) << key;
  }
  EXPECT_GT(std::stoull(parsed.fields().at("total_physical_bytes").string_value()), 0u);

  auto runtime = request(port_, "GET", "/runtime");
  ASSERT_TRUE(runtime);
  parsed = parseJson(runtime->body);
  EXPECT_TRUE(parsed.fields().count("layers"));
  EXPECT_TRUE(parsed.fields().count("entries"));

  auto certs = request(port_, "GET", "/certs");
  ASSERT_TRUE(certs);
  parsed = parseJson(certs->body);
  EXPECT_EQ(parsed.fields().at("certificates").list_value().values_size(), 0);
}

TEST_F(AdminServerTest, ClustersComeFromTheClusterManager) {
  auto expected_text = onLoop([this] { return context_.clusters_.renderClustersText(); });
  auto expected_json = onLoop([this] { return context_.clusters_.renderClustersJson(); });
  auto text = request(port_, "GET", "/clusters");
  ASSERT_TRUE(text);
  EXPECT_EQ(text->status, 200);
  EXPECT_EQ(text->body, expected_text);
  auto json = request(port_, "GET", "/clusters?format=json");
  ASSERT_TRUE(json);
  EXPECT_EQ(json->header("content-type"), "application/json");
  EXPECT_EQ(json->body, expected_json);
}

TEST_F(AdminServerTest, DrainListenersPassesFlags) {
  auto r = request(port_, "POST", "/drain_listeners?inboundonly&graceful&skip_exit");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(context_.drain_flags_, 7);
  auto bad = request(port_, "POST", "/drain_listeners?skip_exit");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_EQ(context_.drain_calls_, 1);
}

TEST_F(AdminServerTest, QuitAnswersThenQuits) {
  HttpConnection conn(port_);
  ASSERT_TRUE(conn.send("POST /quitquitquit HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n"));
  auto r = conn.readResponse();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "OK\n");
  EXPECT_EQ(r->header("connection"), "close");
  EXPECT_TRUE(waitFor([this] { return context_.quit_calls_ == 1; }));
  EXPECT_TRUE(conn.closedByPeer());
}

TEST_F(AdminServerTest, KeepAlivePipeliningAndBodies) {
  HttpConnection conn(port_);
  ASSERT_TRUE(conn.connected());
  ASSERT_TRUE(conn.send("GET /ready HTTP/1.1\r\nhost: a\r\n\r\nGET /listeners HTTP/1.1\r\nhost: a\r\n\r\n"));
  auto first = conn.readResponse();
  auto second = conn.readResponse();
  ASSERT_TRUE(first && second);
  EXPECT_EQ(first->body, "LIVE\n");
  EXPECT_EQ(second->body.rfind("virtualOutbound::", 0), 0u);

  // Content-Length and chunked request bodies are read and the connection stays usable.
  ASSERT_TRUE(conn.send("POST /healthcheck/fail HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nhello"));
  auto third = conn.readResponse();
  ASSERT_TRUE(third);
  EXPECT_EQ(third->status, 200);
  ASSERT_TRUE(
      conn.send("POST /healthcheck/ok HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n"
                "3\r\nabc\r\n0\r\n\r\n"));
  auto fourth = conn.readResponse();
  ASSERT_TRUE(fourth);
  EXPECT_EQ(fourth->status, 200);
  EXPECT_FALSE(context_.hc_failed_);

  ASSERT_TRUE(conn.send("GET /ready HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n"));
  auto last = conn.readResponse();
  ASSERT_TRUE(last);
  EXPECT_EQ(last->header("connection"), "close");
  EXPECT_TRUE(conn.closedByPeer());
}

TEST_F(AdminServerTest, HeadHasNoBody) {
  HttpConnection conn(port_);
  ASSERT_TRUE(conn.send("HEAD /ready HTTP/1.1\r\nhost: a\r\n\r\nGET /ready HTTP/1.1\r\nhost: a\r\n\r\n"));
  // The HEAD answer announces 5 bytes but sends none, so the next bytes are the GET's answer.
  auto both = conn.readResponse();
  ASSERT_TRUE(both);
  EXPECT_EQ(both->header("content-length"), "5");
  EXPECT_EQ(both->body.rfind("HTTP/", 0), 0u);
}

TEST_F(AdminServerTest, ConcurrentConnections) {
  HttpConnection a(port_), b(port_), c(port_);
  ASSERT_TRUE(a.connected() && b.connected() && c.connected());
  // a sends half a request and stalls; b and c are still served.
  ASSERT_TRUE(a.send("GET /rea"));
  ASSERT_TRUE(b.send("GET /ready HTTP/1.1\r\nhost: b\r\n\r\n"));
  ASSERT_TRUE(c.send("GET /help HTTP/1.1\r\nhost: c\r\n\r\n"));
  auto rb = b.readResponse();
  auto rc = c.readResponse();
  ASSERT_TRUE(rb && rc);
  EXPECT_EQ(rb->body, "LIVE\n");
  EXPECT_EQ(rc->status, 200);
  ASSERT_TRUE(a.send("dy HTTP/1.1\r\nhost: a\r\n\r\n"));
  auto ra = a.readResponse();
  ASSERT_TRUE(ra);
  EXPECT_EQ(ra->body, "LIVE\n");
  EXPECT_TRUE(waitFor([this] {
    for (const auto& s : context_.store_.snapshot()) {
      if (s.name == "http.admin.downstream_cx_active") return s.gauge == 3;
    }
    return false;
  }));
}

TEST_F(AdminServerTest, MalformedRequestsGet400AndClose) {
  const char* inputs[] = {
      "GARBAGE\r\n\r\n",
      "GET / HTTP/1.1\nhost: a\n\n",                                                       // bare LF
      "GET /ready HTTP/1.1\r\nhost: a\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",  // conflicting CL
      "GET /ready HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",        // bad chunk size
  };
  for (const char* input : inputs) {
    HttpConnection conn(port_);
    ASSERT_TRUE(conn.send(input));
    auto r = conn.readResponse();
    ASSERT_TRUE(r) << input;
    EXPECT_EQ(r->status, 400) << input;
    EXPECT_EQ(r->header("connection"), "close") << input;
    EXPECT_TRUE(conn.closedByPeer()) << input;
  }
  // Binary junk does not take the server down.
  {
    HttpConnection conn(port_);
    std::string junk;
    for (int i = 0; i < 4096; ++i) junk.push_back(static_cast<char>((i * 131 + 7) & 0xff));
    conn.send(junk);
    conn.readResponse();
  }
  auto after = request(port_, "GET", "/ready");
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 200);
}

TEST_F(AdminServerTest, OversizedBodyIs413) {
  HttpConnection conn(port_);
  ASSERT_TRUE(conn.send("POST /healthcheck/fail HTTP/1.1\r\nhost: a\r\ncontent-length: 10000000\r\n\r\n"));
  auto r = conn.readResponse();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  EXPECT_FALSE(context_.hc_failed_);
}

TEST_F(AdminServerTest, HandleServesOtherListenersAndCountsAdminStats) {
  auto response = onLoop([this] { return server_->handle("GET", "/ready"); });
  EXPECT_EQ(response.status, 200u);
  EXPECT_EQ(response.body, "LIVE\n");
  auto prom = onLoop([this] { return server_->handle("GET", "/stats/prometheus"); });
  EXPECT_EQ(prom.status, 200u);
  auto missing = onLoop([this] { return server_->handle("GET", "/nope"); });
  EXPECT_EQ(missing.status, 404u);
  EXPECT_EQ(counter("http.admin.downstream_rq_total"), 3u);
  EXPECT_EQ(counter("http.admin.downstream_rq_2xx"), 2u);
  EXPECT_EQ(counter("http.admin.downstream_rq_4xx"), 1u);

  auto quit = onLoop([this] { return server_->handle("POST", "/quitquitquit"); });
  EXPECT_EQ(quit.body, "OK\n");
  EXPECT_TRUE(waitFor([this] { return context_.quit_calls_ == 1; }));
}

TEST_F(AdminServerTest, CloseStopsAccepting) {
  onLoop([this] {
    server_->close();
    return 0;
  });
  HttpConnection conn(port_);
  EXPECT_TRUE(!conn.connected() || !conn.readResponse());
}

}  // namespace
}  // namespace skiff::server
