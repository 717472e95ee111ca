// ClusterManager: every cluster type, DNS refresh through a real asio loop, EDS updates, admin output.
#include "skiff/upstream/cluster_manager.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <map>

#include "skiff/upstream/thread_local_cluster.h"
#include "test_util.h"

namespace skiff::upstream {
namespace {

using test::clusterFromJson;
using test::runUntil;

// Records what a worker would receive.
struct Recorder {
  struct Update {
    ClusterInfoConstSharedPtr info;
    HostSetConstSharedPtr hosts;
  };
  std::map<std::string, Update> last;
  std::map<std::string, int> count;
  ClusterManager::UpdateCb cb() {
    return [this](const std::string& name, ClusterInfoConstSharedPtr info, HostSetConstSharedPtr hosts) {
      last[name] = Update{info, hosts};
      ++count[name];
    };
  }
  std::vector<std::string> addresses(const std::string& name) {
    std::vector<std::string> out;
    if (last[name].hosts) {
      for (const auto& h : last[name].hosts->hosts) out.push_back(h->address());
    }
    return out;
  }
};

std::string staticCluster(const std::string& name) {
  return R"({"name": ")" + name + R"(", "type": "STATIC", "load_assignment": {"endpoints": [
    {"locality": {"region": "r1", "zone": "z1", "sub_zone": "s1"}, "lb_endpoints": [
      {"endpoint": {"address": {"socket_address": {"address": "10.0.0.1", "port_value": 8080}}},
       "load_balancing_weight": 3},
      {"endpoint": {"address": {"socket_address": {"address": "::1", "port_value": 80}}}}]},
    {"priority": 1, "lb_endpoints": [
      {"endpoint": {"address": {"socket_address": {"address": "10.0.0.2", "port_value": 8080}}}}]}]}})";
}

std::string dnsCluster(const std::string& name, const std::string& type, const std::string& host,
                       const std::string& extra = "") {
  return R"({"name": ")" + name + R"(", "type": ")" + type + R"(", )" + extra +
         R"( "load_assignment": {"endpoints": [{"lb_endpoints": [
      {"endpoint": {"address": {"socket_address": {"address": ")" +
         host + R"(", "port_value": 9000}}}}]}]}})";
}

class ClusterManagerTest : public ::testing::Test {
 protected:
  ClusterManagerTest() : store_(1), cm_(loop_, store_) {
    cm_.setUpdateCallback(recorder_.cb());
    cm_.setInitializedCallback([this] { ++initialized_; });
    DnsResolverOptions options;
    options.timeout_ms = 300;
    options.tries = 1;
    cm_.setDnsOptionsForTest(options);
  }
  uint64_t counter(const std::string& name) { return store_.counter(name).value(); }
  int64_t gauge(const std::string& name) { return store_.gauge(name).value(); }

  asio::io_context loop_;
  stats::Store store_;
  ClusterManager cm_;
  Recorder recorder_;
  int initialized_ = 0;
};

TEST_F(ClusterManagerTest, StaticClusterPublishesHostsOnStart) {
  cm_.addOrUpdateCluster(clusterFromJson(staticCluster("web")));
  EXPECT_EQ(recorder_.count["web"], 0);  // nothing before start()
  cm_.start();
  EXPECT_EQ(initialized_, 1);
  EXPECT_EQ(recorder_.count["web"], 1);
  EXPECT_EQ(recorder_.addresses("web"),
            (std::vector<std::string>{"10.0.0.1:8080", "[::1]:80", "10.0.0.2:8080"}));
  const auto& hosts = recorder_.last["web"].hosts->hosts;
  EXPECT_EQ(hosts[0]->weight, 3u);
  EXPECT_EQ(hosts[0]->region(), "r1");
  EXPECT_EQ(hosts[0]->zone(), "z1");
  EXPECT_EQ(hosts[0]->sub_zone(), "s1");
  EXPECT_EQ(hosts[2]->priority, 1u);
  EXPECT_TRUE(hosts[0]->hostname.empty());
  EXPECT_EQ(gauge("cluster.web.membership_total"), 3);
  EXPECT_EQ(gauge("cluster.web.membership_healthy"), 3);
  EXPECT_EQ(gauge("cluster.web.max_host_weight"), 3);
  EXPECT_EQ(counter("cluster.web.membership_change"), 1u);
  EXPECT_EQ(counter("cluster_manager.cluster_added"), 1u);
  EXPECT_EQ(gauge("cluster_manager.active_clusters"), 1);
  EXPECT_EQ(gauge("cluster_manager.warming_clusters"), 0);
}

TEST_F(ClusterManagerTest, UpdateKeepsUnchangedHostsAndRemoveNotifies) {
  cm_.addOrUpdateCluster(clusterFromJson(staticCluster("web")));
  cm_.start();
  auto first = recorder_.last["web"].hosts->hosts[0];
  first->stats().rq_total = 5;
  // Identical config: ignored.
  cm_.addOrUpdateCluster(clusterFromJson(staticCluster("web")));
  EXPECT_EQ(recorder_.count["web"], 1);
  auto changed = clusterFromJson(staticCluster("web"));
  changed.mutable_connect_timeout()->set_seconds(2);
  cm_.addOrUpdateCluster(changed, true, "v2");
  EXPECT_EQ(recorder_.count["web"], 2);
  EXPECT_EQ(recorder_.last["web"].hosts->hosts[0], first);  // same host object, stats kept
  EXPECT_EQ(recorder_.last["web"].info->connect_timeout.count(), 2000);
  EXPECT_EQ(counter("cluster_manager.cluster_modified"), 1u);
  EXPECT_TRUE(cm_.removeCluster("web"));
  EXPECT_EQ(recorder_.count["web"], 3);
  EXPECT_EQ(recorder_.last["web"].info, nullptr);
  EXPECT_FALSE(cm_.removeCluster("web"));
  EXPECT_EQ(gauge("cluster_manager.active_clusters"), 0);
}

TEST_F(ClusterManagerTest, BadConfigKeepsPreviousVersion) {
  cm_.addOrUpdateCluster(clusterFromJson(staticCluster("web")));
  cm_.start();
  auto bad = clusterFromJson(staticCluster("web"));
  bad.mutable_load_assignment()
      ->mutable_endpoints(0)
      ->mutable_lb_endpoints(0)
      ->mutable_endpoint()
      ->mutable_address()
      ->mutable_socket_address()
      ->set_address("not-an-ip");
  EXPECT_THROW(cm_.addOrUpdateCluster(bad), std::invalid_argument);
  EXPECT_EQ(cm_.hosts("web")->hosts.size(), 3u);
  // A priority a host cannot hold (24 bits) is an error naming the locality, not a silent truncation.
  auto far = clusterFromJson(staticCluster("web"));
  far.mutable_load_assignment()->mutable_endpoints(0)->set_priority(1u << 24);
  try {
    cm_.addOrUpdateCluster(far);
    ADD_FAILURE() << "accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("endpoints[0].priority"), std::string::npos) << e.what();
  }
  EXPECT_EQ(cm_.hosts("web")->hosts.size(), 3u);
}

TEST_F(ClusterManagerTest, StrictDnsResolvesHostsFileNamesAndLiterals) {
  auto config = clusterFromJson(R"({"name": "dns", "type": "STRICT_DNS", "dns_lookup_family": "V4_ONLY",
    "load_assignment": {"endpoints": [{"lb_endpoints": [
      {"endpoint": {"address": {"socket_address": {"address": "localhost", "port_value": 9000}}}},
      {"endpoint": {"address": {"socket_address": {"address": "127.0.0.2", "port_value": 9001}}}}]}]}})");
  cm_.addOrUpdateCluster(config);
  cm_.start();
  EXPECT_EQ(initialized_, 0);  // warming until DNS answers
  EXPECT_EQ(gauge("cluster_manager.warming_clusters"), 1);
  ASSERT_TRUE(runUntil(loop_, [&] { return initialized_ == 1; }));
  EXPECT_EQ(recorder_.addresses("dns"), (std::vector<std::string>{"127.0.0.1:9000", "127.0.0.2:9001"}));
  EXPECT_EQ(recorder_.last["dns"].hosts->hosts[0]->hostname, "localhost");
  EXPECT_EQ(counter("cluster.dns.update_attempt"), 2u);
  EXPECT_EQ(counter("cluster.dns.update_success"), 2u);
}

TEST_F(ClusterManagerTest, LogicalDnsHasOneHostNamedAfterTheDnsName) {
  cm_.addOrUpdateCluster(clusterFromJson(dnsCluster("logical", "LOGICAL_DNS", "localhost")));
  cm_.start();
  ASSERT_TRUE(runUntil(loop_, [&] { return initialized_ == 1; }));
  ASSERT_EQ(recorder_.addresses("logical").size(), 1u);
  EXPECT_EQ(recorder_.addresses("logical")[0], "127.0.0.1:9000");
  EXPECT_EQ(recorder_.last["logical"].hosts->hosts[0]->hostname, "localhost");
}

TEST_F(ClusterManagerTest, DnsFailureStillInitializesWithNoHosts) {
  cm_.addOrUpdateCluster(clusterFromJson(dnsCluster("bad", "STRICT_DNS", "skiff-nonexistent.invalid")));
  cm_.start();
  ASSERT_TRUE(runUntil(loop_, [&] { return initialized_ == 1; }));
  EXPECT_TRUE(recorder_.last["bad"].hosts->hosts.empty());
  EXPECT_EQ(counter("cluster.bad.update_failure"), 1u);
}

TEST_F(ClusterManagerTest, DnsRefreshPublishesChangesAndKeepsHostsOnFailure) {
  test::FakeDnsServer dns(loop_);
  dns.ipv4 = {{10, 1, 0, 1}};
  const std::string extra = R"("dns_refresh_rate": "0.05s", "dns_lookup_family": "V4_ONLY",
      "dns_resolvers": [{"socket_address": {"address": "127.0.0.1", "port_value": )" +
                            std::to_string(dns.port()) + "}}],";
  cm_.addOrUpdateCluster(clusterFromJson(dnsCluster("svc", "STRICT_DNS", "svc.skiff.test", extra)));
  cm_.start();
  ASSERT_TRUE(runUntil(loop_, [&] { return initialized_ == 1; }));
  EXPECT_EQ(recorder_.addresses("svc"), (std::vector<std::string>{"10.1.0.1:9000"}));
  const auto first_host = recorder_.last["svc"].hosts->hosts[0];

  // Same answer: no new publication, update_no_rebuild grows.
  ASSERT_TRUE(runUntil(loop_, [&] { return counter("cluster.svc.update_no_rebuild") >= 1; }));
  EXPECT_EQ(recorder_.count["svc"], 1);

  // The answer changes: the callback fires with the new set; the unchanged host keeps its identity.
  dns.ipv4 = {{10, 1, 0, 1}, {10, 1, 0, 2}};
  ASSERT_TRUE(runUntil(loop_, [&] { return recorder_.count["svc"] == 2; }));
  EXPECT_EQ(recorder_.addresses("svc"), (std::vector<std::string>{"10.1.0.1:9000", "10.1.0.2:9000"}));
  EXPECT_EQ(recorder_.last["svc"].hosts->hosts[0], first_host);
  EXPECT_EQ(counter("cluster.svc.membership_change"), 2u);

  // Failures keep the last good hosts.
  dns.rcode = 2;  // SERVFAIL
  ASSERT_TRUE(runUntil(loop_, [&] { return counter("cluster.svc.update_failure") >= 2; }));
  EXPECT_EQ(recorder_.count["svc"], 2);
  EXPECT_EQ(cm_.hosts("svc")->hosts.size(), 2u);
}

TEST_F(ClusterManagerTest, EdsWaitsForEndpointsAndAppliesHealth) {
  cm_.addOrUpdateCluster(clusterFromJson(R"({"name": "eds", "type": "EDS",
      "eds_cluster_config": {"service_name": "svc-eds"}})"),
                         true);
  cm_.addOrUpdateCluster(
      clusterFromJson(R"({"name": "orig", "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED"})"));
  cm_.start();
  EXPECT_EQ(initialized_, 0);
  EXPECT_EQ(recorder_.count["orig"], 1);
  EXPECT_TRUE(recorder_.last["orig"].hosts->hosts.empty());
  envoy::config::endpoint::v3::ClusterLoadAssignment cla;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(
                  R"({"cluster_name": "svc-eds", "endpoints": [{"lb_endpoints": [
      {"endpoint": {"address": {"socket_address": {"address": "10.2.0.1", "port_value": 80}}, "hostname": "pod-1"}},
      {"endpoint": {"address": {"socket_address": {"address": "10.2.0.2", "port_value": 80}}},
       "health_status": "UNHEALTHY"},
      {"endpoint": {"address": {"socket_address": {"address": "10.2.0.3", "port_value": 80}}},
       "health_status": "DRAINING"}]}]})",
                  &cla)
                  .ok());
  EXPECT_TRUE(cm_.updateEndpoints("eds", cla));
  EXPECT_EQ(initialized_, 1);
  const auto& hosts = recorder_.last["eds"].hosts->hosts;
  ASSERT_EQ(hosts.size(), 3u);
  EXPECT_EQ(hosts[0]->hostname, "pod-1");
  EXPECT_TRUE(hosts[0]->healthy);
  EXPECT_FALSE(hosts[1]->healthy);
  EXPECT_EQ(hosts[1]->healthFlagsString(), "/failed_eds_health");
  EXPECT_EQ(hosts[2]->healthFlagsString(), "/eds_status_draining");
  EXPECT_EQ(gauge("cluster.eds.membership_healthy"), 1);
  EXPECT_EQ(gauge("cluster.eds.membership_total"), 3);
  // Same assignment again: no rebuild.
  EXPECT_TRUE(cm_.updateEndpoints("eds", cla));
  EXPECT_EQ(recorder_.count["eds"], 1);
  EXPECT_EQ(counter("cluster.eds.update_no_rebuild"), 1u);
  // Empty assignment.
  cla.clear_endpoints();
  cm_.updateEndpoints("eds", cla);
  EXPECT_EQ(counter("cluster.eds.update_empty"), 1u);
  EXPECT_FALSE(cm_.updateEndpoints("unknown", cla));
  EXPECT_NE(cm_.renderClustersText().find("eds::eds_service_name::svc-eds\n"), std::string::npos);
}

TEST_F(ClusterManagerTest, MarkInitializedEndsEdsWarming) {
  cm_.addOrUpdateCluster(clusterFromJson(R"({"name": "eds", "type": "EDS"})"));
  cm_.start();
  EXPECT_EQ(initialized_, 0);
  cm_.markInitialized("eds");
  EXPECT_EQ(initialized_, 1);
  EXPECT_TRUE(recorder_.last["eds"].hosts->hosts.empty());
}

TEST_F(ClusterManagerTest, ClustersTextFormat) {
  cm_.addOrUpdateCluster(clusterFromJson(R"({"name": "one", "type": "STATIC",
    "circuit_breakers": {"thresholds": [{"max_connections": 7}]},
    "load_assignment": {"endpoints": [{"lb_endpoints": [
      {"endpoint": {"address": {"socket_address": {"address": "10.0.0.1", "port_value": 80}}}}]}]}})"));
  cm_.start();
  auto host = cm_.hosts("one")->hosts[0];
  host->stats().rq_total = 4;
  host->stats().rq_success = 3;
  host->stats().rq_error = 1;
  host->stats().cx_total = 2;
  host->stats().cx_active = 1;
  EXPECT_EQ(cm_.renderClustersText(), R"(version_info::static
one::observability_name::one
one::default_priority::max_connections::7
one::default_priority::max_pending_requests::1024
one::default_priority::max_requests::1024
one::default_priority::max_retries::3
one::high_priority::max_connections::1024
one::high_priority::max_pending_requests::1024
one::high_priority::max_requests::1024
one::high_priority::max_retries::3
one::added_via_api::false
one::10.0.0.1:80::cx_active::1
one::10.0.0.1:80::cx_connect_fail::0
one::10.0.0.1:80::cx_total::2
one::10.0.0.1:80::rq_active::0
one::10.0.0.1:80::rq_error::1
one::10.0.0.1:80::rq_success::3
one::10.0.0.1:80::rq_timeout::0
one::10.0.0.1:80::rq_total::4
one::10.0.0.1:80::hostname::
one::10.0.0.1:80::health_flags::healthy
one::10.0.0.1:80::weight::1
one::10.0.0.1:80::region::
one::10.0.0.1:80::zone::
one::10.0.0.1:80::sub_zone::
one::10.0.0.1:80::canary::false
one::10.0.0.1:80::priority::0
one::10.0.0.1:80::success_rate::-1
one::10.0.0.1:80::local_origin_success_rate::-1
)");
  cm_.setCdsVersionInfo("42");
  EXPECT_EQ(cm_.renderClustersText().rfind("version_info::42\n", 0), 0u);

  const std::string json = cm_.renderClustersJson();
  google::protobuf::Struct parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &parsed).ok()) << json;
  const auto& status = parsed.fields().at("cluster_statuses").list_value().values(0).struct_value();
  EXPECT_EQ(status.fields().at("name").string_value(), "one");
  const auto& hs = status.fields().at("host_statuses").list_value().values(0).struct_value();
  EXPECT_EQ(hs.fields()
                .at("address")
                .struct_value()
                .fields()
                .at("socket_address")
                .struct_value()
                .fields()
                .at("port_value")
                .number_value(),
            80);
  EXPECT_NE(json.find(R"({"value":"4","name":"rq_total"})"), std::string::npos) << json;
}

TEST(ThreadLocalClusterManagerTest, UpdateGetRemove) {
  stats::Store store(1);
  auto info = std::make_shared<const ClusterInfo>(clusterFromJson(R"({"name": "c"})"), store, false, "");
  auto set = std::make_shared<HostSet>();
  auto host = std::make_shared<Host>();
  host->endpoint = {asio::ip::make_address("10.0.0.1"), 80};
  set->hosts.push_back(host);
  ThreadLocalClusterManager tlcm(1);
  EXPECT_EQ(tlcm.get("c"), nullptr);
  tlcm.update("c", info, set);
  ThreadLocalCluster* cluster = tlcm.get("c");
  ASSERT_NE(cluster, nullptr);
  EXPECT_EQ(cluster->chooseHost({}), host);
  EXPECT_EQ(&cluster->info(), info.get());
  tlcm.update("c", info, std::make_shared<HostSet>());
  EXPECT_EQ(tlcm.get("c"), cluster);  // same object across updates
  EXPECT_EQ(cluster->chooseHost({}), nullptr);
  tlcm.update("c", nullptr, nullptr);
  EXPECT_EQ(tlcm.get("c"), nullptr);
}

}  // namespace
}  // namespace skiff::upstream
