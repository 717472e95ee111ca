// AdsClient against the in-process AdsTestServer: ACK/NACK, named subscriptions, Delta, reconnects, timeouts.

#include <condition_variable>
#include <deque>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/endpoint/v3/endpoint.pb.h"
#include "skiff/xds/ads_client.h"
#include "skiff/xds/test_server.h"

namespace skiff::xds {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

// The owner's thread: runs posted closures in order.
class Loop {
 public:
  Loop() : thread_([this] { run(); }) {}
  ~Loop() {
    post({});
    thread_.join();
  }
  void post(std::function<void()> fn) {
    std::lock_guard lock(mu_);
    queue_.push_back(std::move(fn));
    cv_.notify_one();
  }
  // Runs `fn` on the loop and waits for it.
  void sync(std::function<void()> fn) {
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    post([&] {
      fn();
      std::lock_guard lock(m);
      done = true;
      cv.notify_one();
    });
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return done; });
  }
  Executor executor() {
    return [this](std::function<void()> fn) { post(std::move(fn)); };
  }

 private:
  void run() {
    while (true) {
      std::function<void()> fn;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return !queue_.empty(); });
        fn = std::move(queue_.front());
        queue_.pop_front();
      }
      if (!fn) return;
      fn();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  std::thread thread_;
};

template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return pred();
}

google::protobuf::Any cluster(const std::string& name, int timeout_s = 1) {
  envoy::config::cluster::v3::Cluster c;
  c.set_name(name);
  c.mutable_connect_timeout()->set_seconds(timeout_s);
  google::protobuf::Any any;
  any.PackFrom(c);
  return any;
}

google::protobuf::Any endpoints(const std::string& name) {
  envoy::config::endpoint::v3::ClusterLoadAssignment cla;
  cla.set_cluster_name(name);
  google::protobuf::Any any;
  any.PackFrom(cla);
  return any;
}

const std::string kCds(kClusterType);
const std::string kEds(kEndpointType);
const std::string kRds(kRouteType);

// What a subscriber saw, readable from the test thread.
struct Recorder {
  std::mutex mu;
  std::vector<ConfigUpdate> updates;
  int timeouts = 0;
  std::string reject_name;  // NACK any update carrying this resource

  SubscriptionCallbacks callbacks(std::chrono::milliseconds init_timeout = std::chrono::seconds(15)) {
    SubscriptionCallbacks cb;
    cb.on_update = [this](const ConfigUpdate& update) -> std::string {
      std::lock_guard lock(mu);
      updates.push_back(update);
      for (const auto& r : update.resources) {
        if (r.name == reject_name) return "Cluster '" + r.name + "': connect_timeout: rejected by the test";
      }
      return "";
    };
    cb.on_initial_fetch_timeout = [this] {
      std::lock_guard lock(mu);
      timeouts++;
    };
    cb.initial_fetch_timeout = init_timeout;
    return cb;
  }
  size_t count() {
    std::lock_guard lock(mu);
    return updates.size();
  }
  ConfigUpdate at(size_t i) {
    std::lock_guard lock(mu);
    return updates.at(i);
  }
};

std::vector<std::string> namesOf(const ConfigUpdate& update) {
  std::vector<std::string> out;
  for (const auto& r : update.resources) out.push_back(r.name);
  return out;
}

// Requests of `type` the server received (optionally only ACKs/NACKs, i.e. with a nonce).
std::vector<ReceivedRequest> requestsOf(const AdsTestServer& server, const std::string& type,
                                        bool with_nonce) {
  std::vector<ReceivedRequest> out;
  for (const auto& r : server.requests()) {
    if (r.type_url == type && (!with_nonce || !r.response_nonce.empty())) out.push_back(r);
  }
  return out;
}

class AdsClientTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override { ASSERT_NE(server_.start(), 0); }

  std::unique_ptr<AdsClient> makeClient(
      bool delta, std::chrono::milliseconds backoff = std::chrono::milliseconds(20),
      std::optional<AdsClientOptions::RateLimit> rate_limit = std::nullopt) {
    AdsClientOptions options;
    options.rate_limit = rate_limit;
    options.target = "127.0.0.1:" + std::to_string(server_.port());
    options.delta = delta;
    options.node.set_id("sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local");
    options.node.set_cluster("test");
    options.executor = loop_.executor();
    options.backoff_base = backoff;
    options.backoff_max = backoff * 4;
    options.on_connection_state = [this](bool connected) {
      std::lock_guard lock(mu_);
      transitions_.push_back(connected);
    };
    return std::make_unique<AdsClient>(std::move(options));
  }
  void destroy(std::unique_ptr<AdsClient>& client) {
    loop_.sync([&] { client.reset(); });
  }
  std::vector<bool> transitions() {
    std::lock_guard lock(mu_);
    return transitions_;
  }

  AdsTestServer server_;
  Loop loop_;
  std::mutex mu_;
  std::vector<bool> transitions_;
};

TEST_F(AdsClientTest, SotwSubscribeUpdateAckWithVersionAndNonce) {
  server_.setResources({{kCds, {{"a", cluster("a")}}}});
  Recorder cds;
  auto client = makeClient(false);
  loop_.sync([&] {
    client->subscribe(kCds, {}, cds.callbacks());
    client->start();
  });
  ASSERT_TRUE(eventually([&] { return requestsOf(server_, kCds, true).size() == 1; }));
  auto first = requestsOf(server_, kCds, false).front();
  EXPECT_EQ(first.version_info, "");
  EXPECT_EQ(first.response_nonce, "");
  EXPECT_THAT(first.resource_names, IsEmpty());  // wildcard
  EXPECT_EQ(first.node_id, "sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local");
  auto ack = requestsOf(server_, kCds, true).front();
  EXPECT_EQ(ack.version_info, "1");
  EXPECT_EQ(ack.response_nonce, server_.responses().back().nonce);
  EXPECT_FALSE(ack.has_error);
  EXPECT_EQ(ack.node_id, "");  // node only on the stream's first message
  EXPECT_THAT(namesOf(cds.at(0)), ElementsAre("a"));
  EXPECT_TRUE(cds.at(0).state_of_the_world);

  // A push: complete set again; the cluster that disappears is reported removed.
  server_.setResources({{kCds, {{"b", cluster("b")}}}});
  ASSERT_TRUE(eventually([&] { return requestsOf(server_, kCds, true).size() == 2; }));
  EXPECT_THAT(namesOf(cds.at(1)), ElementsAre("b"));
  EXPECT_THAT(cds.at(1).removed, ElementsAre("a"));
  EXPECT_EQ(requestsOf(server_, kCds, true).back().version_info, "2");
  loop_.sync([&] {
    EXPECT_TRUE(client->stats().connected);
    EXPECT_EQ(client->stats().types.at(kCds).update_success, 2u);
    EXPECT_EQ(client->stats().types.at(kCds).version_info, "2");
  });
  EXPECT_THAT(transitions(), ElementsAre(true));
  destroy(client);
}

TEST_F(AdsClientTest, SotwNackCarriesErrorDetailAndPreviousVersion) {
  server_.setResources({{kCds, {{"a", cluster("a")}}}});
  Recorder cds;
  cds.reject_name = "bad";
  auto client = makeClient(false);
  loop_.sync([&] {
    client->subscribe(kCds, {}, cds.callbacks());
    client->start();
  });
  ASSERT_TRUE(eventually([&] { return requestsOf(server_, kCds, true).size() == 1; }));
  server_.upsert({{kCds, {{"bad", cluster("bad")}}}});
  ASSERT_TRUE(eventually([&] { return requestsOf(server_, kCds, true).size() == 2; }));
  auto nack = requestsOf(server_, kCds, true).back();
  EXPECT_TRUE(nack.has_error);
  EXPECT_EQ(nack.error_code, 13);
  EXPECT_THAT(nack.error_message, ::testing::HasSubstr("Cluster 'bad'"));
  EXPECT_EQ(nack.version_info, "1");                                 // the last good version
  EXPECT_EQ(nack.response_nonce, server_.responses().back().nonce);  // the rejected response's nonce

  // Undecodable bytes: the subscriber's check fails the same way; then a good update is ACKed.
  server_.remove(kCds, "bad");
  ASSERT_TRUE(eventually([&] { return requestsOf(server_, kCds, true).size() == 3; }));
  auto ack = requestsOf(server_, kCds, true).back();
  EXPECT_FALSE(ack.has_error);
  EXPECT_EQ(ack.version_info, server_.version());
  loop_.sync([&] {
    EXPECT_EQ(client->stats().types.at(kCds).update_rejected, 1u);
    EXPECT_EQ(client->stats().types.at(kCds).update_success, 2u);
  });
  destroy(client);
}

TEST_F(AdsClientTest, TypeMismatchInAnyIsNackedWithoutCallingTheSubscriber) {
  server_.setResources({{kCds, {{"a", endpoints("a")}}}});  // an EDS payload under the CDS type
  Recorder cds;
  auto client = makeClient(false);
  loop_.sync([&] {
    client->subscribe(kCds, {}, cds.callbacks());
    client->start();
  });
  ASSERT_TRUE(eventually([&] { return requestsOf(server_, kCds, true).size() == 1; }));
  auto nack = requestsOf(server_, kCds, true).front();
  EXPECT_TRUE(nack.has_error);
  EXPECT_THAT(nack.error_message, ::testing::HasSubstr("does not match"));
  EXPECT_EQ(nack.version_info, "");
  EXPECT_EQ(cds.count(), 0u);
  destroy(client);
}

TEST_F(AdsClientTest, SotwNamedSubscriptionChanges) {
  server_.setResources({{kEds, {{"a", endpoints("a")}, {"b", endpoints("b")}, {"c", endpoints("c")}}}});
  Recorder eds;
  auto client = makeClient(false);
  loop_.sync([&] {
    client->subscribe(kEds, {"a"}, eds.callbacks());
    client->start();
  });
  ASSERT_TRUE(eventually([&] { return eds.count() == 1; }));
  EXPECT_THAT(namesOf(eds.at(0)), ElementsAre("a"));
  EXPECT_THAT(eds.at(0).removed, IsEmpty());
  ASSERT_TRUE(eventually([&] { return requestsOf(server_, kEds, true).size() == 1; }));
  const std::string nonce = requestsOf(server_, kEds, true).back().response_nonce;

  loop_.sync([&] { client->updateSubscription(kEds, {"a", "b"}); });
  ASSERT_TRUE(eventually([&] { return eds.count() == 2; }));
  // The callback can run before the server has recorded the ACK that follows it: wait for it (ACK 1, the
  // change, which carries the last nonce, ACK 2), so the subscription change is the request just before it.
  ASSERT_TRUE(eventually([&] { return requestsOf(server_, kEds, true).size() == 3; }));
  auto all = requestsOf(server_, kEds, false);
  const auto& change = all.at(all.size() - 2);  // the subscription change, before its ACK
  EXPECT_THAT(change.resource_names, ElementsAre("a", "b"));
  EXPECT_EQ(change.version_info, "1");
  EXPECT_EQ(change.response_nonce, nonce);
  EXPECT_THAT(namesOf(eds.at(1)), ElementsAre("a", "b"));

  loop_.sync([&] { client->updateSubscription(kEds, {"c"}); });
  ASSERT_TRUE(eventually([&] { return eds.count() == 3; }));
  EXPECT_THAT(namesOf(eds.at(2)), ElementsAre("c"));
  EXPECT_THAT(requestsOf(server_, kEds, true).back().resource_names, ElementsAre("c"));
  destroy(client);
}

TEST_F(AdsClientTest, DeltaSubscribeUnsubscribeAndRemovedResources) {
  server_.setResources({{kCds, {{"a", cluster("a")}, {"b", cluster("b")}}},
                        {kEds, {{"a", endpoints("a")}, {"b", endpoints("b")}}}});
  Recorder cds, eds;
  auto client = makeClient(true);
  loop_.sync([&] {
    client->subscribe(kEds, {"a"}, eds.callbacks());
    client->subscribe(kCds, {}, cds.callbacks());
    client->start();
  });
  ASSERT_TRUE(eventually([&] { return cds.count() == 1 && eds.count() == 1; }));
  auto requests = server_.requests();
  ASSERT_GE(requests.size(), 2u);
  EXPECT_TRUE(requests[0].delta);
  EXPECT_EQ(requests[0].type_url, kCds);  // clusters before endpoints, whatever the subscribe order
  EXPECT_EQ(requests[1].type_url, kEds);
  EXPECT_THAT(requests[1].subscribe, ElementsAre("a"));
  EXPECT_FALSE(cds.at(0).state_of_the_world);
  EXPECT_THAT(namesOf(cds.at(0)), UnorderedElementsAre("a", "b"));
  EXPECT_EQ(cds.at(0).resources[0].version, "1");

  // Only the change travels; a removal arrives as removed_resources.
  server_.upsert({{kCds, {{"a", cluster("a", 7)}}}});
  ASSERT_TRUE(eventually([&] { return cds.count() == 2; }));
  EXPECT_THAT(namesOf(cds.at(1)), ElementsAre("a"));
  EXPECT_EQ(cds.at(1).resources[0].version, "2");
  server_.remove(kCds, "b");
  ASSERT_TRUE(eventually([&] { return cds.count() == 3; }));
  EXPECT_THAT(namesOf(cds.at(2)), IsEmpty());
  EXPECT_THAT(cds.at(2).removed, ElementsAre("b"));

  loop_.sync([&] { client->updateSubscription(kEds, {"b"}); });
  ASSERT_TRUE(eventually([&] { return eds.count() == 2; }));
  EXPECT_THAT(namesOf(eds.at(1)), ElementsAre("b"));
  bool saw_change = false;
  for (const auto& r : requestsOf(server_, kEds, false)) {
    if (!r.subscribe.empty() && r.subscribe[0] == "b") {
      saw_change = true;
      EXPECT_THAT(r.unsubscribe, ElementsAre("a"));
    }
  }
  EXPECT_TRUE(saw_change);
  // Every response was ACKed by nonce.
  ASSERT_TRUE(eventually([&] { return requestsOf(server_, kCds, true).size() == 3; }));
  for (const auto& r : requestsOf(server_, kCds, true)) EXPECT_FALSE(r.has_error);
  destroy(client);
}

TEST_F(AdsClientTest, DeltaNack) {
  server_.setResources({{kCds, {{"a", cluster("a")}}}});
  Recorder cds;
  cds.reject_name = "bad";
  auto client = makeClient(true);
  loop_.sync([&] {
    client->subscribe(kCds, {}, cds.callbacks());
    client->start();
  });
  ASSERT_TRUE(eventually([&] { return requestsOf(server_, kCds, true).size() == 1; }));
  server_.upsert({{kCds, {{"bad", cluster("bad")}}}});
  ASSERT_TRUE(eventually([&] { return requestsOf(server_, kCds, true).size() == 2; }));
  auto nack = requestsOf(server_, kCds, true).back();
  EXPECT_TRUE(nack.has_error);
  EXPECT_THAT(nack.error_message, ::testing::HasSubstr("'bad'"));
  EXPECT_EQ(nack.response_nonce, server_.responses().back().nonce);
  destroy(client);
}

TEST_P(AdsClientTest, ReconnectsWithBackoffAndResubscribesWithVersions) {
  const bool delta = GetParam();
  server_.setResources({{kCds, {{"a", cluster("a")}}}, {kEds, {{"a", endpoints("a")}}}});
  Recorder cds, eds;
  auto client = makeClient(delta);
  loop_.sync([&] {
    client->subscribe(kCds, {}, cds.callbacks());
    client->subscribe(kEds, {"a"}, eds.callbacks());
    client->start();
  });
  ASSERT_TRUE(eventually([&] { return requestsOf(server_, kEds, true).size() == 1; }));
  server_.dropStreams();
  ASSERT_TRUE(eventually([&] {
    auto all = server_.requests();
    return !all.empty() && all.back().stream > 1 && requestsOf(server_, kEds, false).size() >= 3;
  }));
  std::vector<ReceivedRequest> second;
  for (const auto& r : server_.requests()) {
    if (r.stream > 1) second.push_back(r);
  }
  ASSERT_GE(second.size(), 2u);
  EXPECT_EQ(second[0].type_url, kCds);
  EXPECT_EQ(second[1].type_url, kEds);
  EXPECT_FALSE(second[0].node_id.empty());  // a new stream's first message carries the node again
  if (delta) {
    EXPECT_THAT(second[0].initial_resource_versions,
                ElementsAre(std::pair<const std::string, std::string>("a", "1")));
    EXPECT_THAT(second[1].subscribe, ElementsAre("a"));
  } else {
    EXPECT_EQ(second[0].version_info, "1");
    EXPECT_EQ(second[0].response_nonce, "");
    EXPECT_THAT(second[1].resource_names, ElementsAre("a"));
  }
  EXPECT_TRUE(eventually([&] { return transitions().size() >= 3; }));
  EXPECT_THAT(transitions(), ElementsAre(true, false, true));
  loop_.sync([&] {
    EXPECT_GE(client->stats().streams_closed, 1u);
    EXPECT_GE(client->stats().streams_started, 2u);
  });

  // The control plane goes away and comes back on the same port: the client keeps trying and converges.
  server_.stop();
  ASSERT_TRUE(eventually([&] { return transitions().size() >= 4; }));
  server_.upsert({{kCds, {{"b", cluster("b")}}}});
  ASSERT_NE(server_.start(), 0);
  ASSERT_TRUE(eventually([&] {
    for (size_t i = 0; i < cds.count(); ++i) {
      for (const auto& r : cds.at(i).resources) {
        if (r.name == "b") return true;
      }
    }
    return false;
  }));
  const std::string nonce = server_.responses().back().nonce;
  EXPECT_TRUE(eventually([&] {
    for (const auto& r : requestsOf(server_, kCds, true)) {
      if (r.response_nonce == nonce && !r.has_error) return true;
    }
    return false;
  }));
  destroy(client);
}

// Delta with the owner keeping the versions (SubscriptionCallbacks::known_versions): a new stream's
// initial_resource_versions come from the owner, and names no longer subscribed are left out.
TEST_F(AdsClientTest, DeltaReconnectTakesKnownVersionsFromTheOwner) {
  server_.setResources({{kEds, {{"a", endpoints("a")}, {"b", endpoints("b")}}}});
  Recorder eds;
  std::mutex mu;
  std::map<std::string, std::string> held = {{"a", "7"}, {"b", "8"}, {"gone", "9"}};
  auto client = makeClient(true);
  loop_.sync([&] {
    auto callbacks = eds.callbacks();
    callbacks.known_versions = [&](const SubscriptionCallbacks::VersionVisitor& visit) {
      std::lock_guard lock(mu);
      for (const auto& [name, version] : held) visit(name, version);
    };
    client->subscribe(kEds, {"a", "b"}, std::move(callbacks));
    client->start();
  });
  ASSERT_TRUE(eventually([&] { return requestsOf(server_, kEds, true).size() == 1; }));
  loop_.sync([&] { client->updateSubscription(kEds, {"a"}); });
  ASSERT_TRUE(eventually([&] { return requestsOf(server_, kEds, false).size() >= 3; }));
  server_.dropStreams();
  ASSERT_TRUE(eventually([&] {
    auto all = server_.requests();
    return !all.empty() && all.back().stream > 1;
  }));
  std::vector<ReceivedRequest> second;
  for (const auto& r : server_.requests()) {
    if (r.stream > 1 && r.type_url == kEds && r.response_nonce.empty()) second.push_back(r);
  }
  ASSERT_FALSE(second.empty());
  EXPECT_THAT(second[0].initial_resource_versions,
              ElementsAre(std::pair<const std::string, std::string>("a", "7")));
  EXPECT_THAT(second[0].subscribe, ElementsAre("a"));
  destroy(client);
}

INSTANTIATE_TEST_SUITE_P(SotwAndDelta, AdsClientTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Delta" : "Sotw"; });

TEST_F(AdsClientTest, InitialFetchTimeoutFiresWhenNothingArrives) {
  Recorder rds, cds;
  auto client = makeClient(false);
  loop_.sync([&] {
    client->subscribe(kRds, {"never"}, rds.callbacks(std::chrono::milliseconds(100)));
    client->subscribe(kCds, {}, cds.callbacks(std::chrono::milliseconds(0)));  // 0: wait forever
    client->start();
  });
  ASSERT_TRUE(eventually([&] {
    std::lock_guard lock(rds.mu);
    return rds.timeouts == 1;
  }));
  loop_.sync([&] { EXPECT_EQ(client->stats().types.at(kRds).init_fetch_timeout, 1u); });
  EXPECT_EQ(rds.count(), 0u);
  std::lock_guard lock(cds.mu);
  EXPECT_EQ(cds.timeouts, 0);
  destroy(client);
}

TEST_F(AdsClientTest, InitialFetchTimeoutDoesNotFireAfterAnUpdate) {
  server_.setResources({{kCds, {{"a", cluster("a")}}}});
  Recorder cds;
  auto client = makeClient(false);
  loop_.sync([&] {
    client->subscribe(kCds, {}, cds.callbacks(std::chrono::milliseconds(300)));
    client->start();
  });
  ASSERT_TRUE(eventually([&] { return cds.count() == 1; }));
  // Let the 300 ms deadline pass (a timer that must not fire cannot be polled for), then flush the loop.
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  loop_.sync([] {});
  std::lock_guard lock(cds.mu);
  EXPECT_EQ(cds.timeouts, 0);
  destroy(client);
}

// Envoy's pause: an EDS request made while a CDS update is applied leaves after the CDS ACK.
TEST_P(AdsClientTest, EdsRequestsWaitForTheCdsAck) {
  const bool delta = GetParam();
  server_.setResources(
      {{kCds, {{"a", cluster("a")}}}, {kEds, {{"a", endpoints("a")}, {"b", endpoints("b")}}}});
  Recorder eds;
  std::unique_ptr<AdsClient> client = makeClient(delta);
  SubscriptionCallbacks cds;
  cds.on_update = [&](const ConfigUpdate&) -> std::string {
    client->updateSubscription(kEds, {"a", "b"});  // what a new EDS cluster causes
    return "";
  };
  loop_.sync([&] {
    client->subscribe(kCds, {}, cds);
    client->subscribe(kEds, {"a"}, eds.callbacks());
    client->start();
  });
  auto asksForB = [](const ReceivedRequest& r) {
    const auto& names = r.delta ? r.subscribe : r.resource_names;
    return r.type_url == kEds && std::find(names.begin(), names.end(), "b") != names.end();
  };
  ASSERT_TRUE(eventually([&] {
    for (const auto& r : server_.requests()) {
      if (asksForB(r)) return true;
    }
    return false;
  }));
  const auto all = server_.requests();
  size_t cds_ack = all.size(), eds_change = all.size();
  for (size_t i = 0; i < all.size(); ++i) {
    if (cds_ack == all.size() && all[i].type_url == kCds && !all[i].response_nonce.empty()) cds_ack = i;
    if (eds_change == all.size() && asksForB(all[i])) eds_change = i;
  }
  ASSERT_LT(cds_ack, all.size());
  ASSERT_LT(eds_change, all.size());
  EXPECT_LT(cds_ack, eds_change);
  destroy(client);
}

TEST_F(AdsClientTest, RateLimitSpacesRequestsAndCountsEnforcement) {
  server_.setResources({{kCds, {{"a", cluster("a")}}}});
  Recorder cds, eds, rds, other;
  // One token, refilled at 10/s: four initial requests take at least ~300 ms.
  auto client = makeClient(false, std::chrono::milliseconds(20), AdsClientOptions::RateLimit{1, 10.0});
  loop_.sync([&] {
    client->subscribe(kCds, {}, cds.callbacks());
    client->subscribe(kEds, {"a"}, eds.callbacks());
    client->subscribe(kRds, {"r"}, rds.callbacks());
    client->subscribe("type.googleapis.com/skiff.test.Other", {"x"}, other.callbacks());
    client->start();
  });
  ASSERT_TRUE(eventually([&] { return server_.requests().size() >= 4; }));
  const auto all = server_.requests();
  EXPECT_GE(all[3].at - all[0].at, std::chrono::milliseconds(250));
  uint64_t enforced = 0;
  loop_.sync([&] { enforced = client->stats().rate_limit_enforced; });
  EXPECT_GE(enforced, 1u);
  destroy(client);
}

TEST_F(AdsClientTest, ControlPlaneIdentifierIsKept) {
  server_.setIdentifier("istiod-7d9f");
  server_.setResources({{kCds, {{"a", cluster("a")}}}});
  Recorder cds;
  auto client = makeClient(false);
  loop_.sync([&] {
    client->subscribe(kCds, {}, cds.callbacks());
    client->start();
  });
  ASSERT_TRUE(eventually([&] { return cds.count() == 1; }));
  std::string id;
  ASSERT_TRUE(eventually([&] {
    loop_.sync([&] { id = client->stats().control_plane_identifier; });
    return id == "istiod-7d9f";
  }));
  destroy(client);
}

TEST(TargetOfTest, GoogleGrpcAndEnvoyGrpc) {
  envoy::config::core::v3::GrpcService google;
  google.mutable_google_grpc()->set_target_uri("istiod:15012");
  EXPECT_EQ(targetOf(google, nullptr), "istiod:15012");
  envoy::config::core::v3::GrpcService envoy_grpc;
  envoy_grpc.mutable_envoy_grpc()->set_cluster_name("xds-grpc");
  auto resolve = [](const std::string& name) -> std::optional<std::string> {
    if (name == "xds-grpc") return "127.0.0.1:15010";
    return std::nullopt;
  };
  EXPECT_EQ(targetOf(envoy_grpc, resolve), "127.0.0.1:15010");
  envoy_grpc.mutable_envoy_grpc()->set_cluster_name("missing");
  EXPECT_EQ(targetOf(envoy_grpc, resolve), std::nullopt);
}

}  // namespace
}  // namespace skiff::xds
