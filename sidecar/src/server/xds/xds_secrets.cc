// XdsManager's SDS side: which secrets listeners and clusters name, holding them warm until those secrets
// arrive (or their initial fetch times out), taking Secret resources into the process secret store, the
// SDS subscription that follows, Envoy's sds.<name>.* stats and the secrets part of /config_dump.
#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <asio/post.hpp>
#include <stdexcept>

#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/listener/v3/listener.pb.h"
#include "envoy/extensions/transport_sockets/tls/v3/secret.pb.h"
#include "server/xds/nack_message.h"
#include "server/xds/secret_refs.h"
#include "server/xds/version_hash.h"
#include "server/xds/xds_manager.h"
#include "skiff/common/logging.h"
#include "skiff/tls/secret_provider.h"
#include "skiff/xds/node.h"

namespace skiff::server {
using envoy::config::cluster::v3::Cluster;

void XdsManager::setSecretRefs(std::map<std::string, std::set<std::string>>& refs, const std::string& user,
                               std::set<std::string> names) {
  if (names.empty()) {
    refs.erase(user);
  } else {
    refs[user] = std::move(names);
  }
}

bool XdsManager::secretsReady(const std::set<std::string>& names) const {
  for (const auto& name : names) {
    if (secrets_.count(name)) continue;
    auto state = secret_states_.find(name);
    if (state == secret_states_.end() || !state->second.timed_out) return false;
  }
  return true;
}

void XdsManager::noteSecretTimeouts(const std::map<std::string, std::chrono::milliseconds>& timeouts) {
  for (const auto& [name, timeout] : timeouts) secret_timeouts_.emplace(name, timeout);
}

XdsManager::SecretState& XdsManager::secretState(const std::string& name) {
  auto it = secret_states_.find(name);
  if (it != secret_states_.end()) return it->second;
  std::string stat = name;
  std::replace(stat.begin(), stat.end(), ':', '_');  // Envoy's stat-name sanitising
  const std::string p = "sds." + stat + ".";
  SecretState& state = secret_states_[name];
  state.update_attempt = store_.counter(p + "update_attempt");
  state.update_success = store_.counter(p + "update_success");
  state.update_rejected = store_.counter(p + "update_rejected");
  state.update_failure = store_.counter(p + "update_failure");
  state.init_fetch_timeout = store_.counter(p + "init_fetch_timeout");
  state.key_rotation_failed = store_.counter(p + "key_rotation_failed");  // no file watching: stays 0
  state.version = store_.gauge(p + "version");
  state.update_time = store_.gauge(p + "update_time");
  auto timeout = secret_timeouts_.find(name);
  if (timeout != secret_timeouts_.end()) state.timeout = timeout->second;
  return state;
}

void XdsManager::startSecretTimer(const std::string& name, SecretState& state) {
  if (state.timer || state.timed_out || secrets_.count(name) || state.timeout.count() <= 0) return;
  state.timer = std::make_unique<asio::steady_timer>(main_, state.timeout);
  std::weak_ptr<bool> alive = alive_;
  state.timer->async_wait([this, alive, name](std::error_code ec) {
    if (ec || alive.expired()) return;
    auto it = secret_states_.find(name);
    if (it == secret_states_.end()) return;
    it->second.timer.reset();
    it->second.timed_out = true;
    it->second.init_fetch_timeout.inc();
    SKIFF_LOG(kConfig, warn,
              "sds: secret '{}' did not arrive within initial_fetch_timeout; its users go on "
              "without it",
              name);
    releasePending(pending_clusters_, false);
    releasePending(pending_listeners_, true);
    checkInitialized();
  });
}

std::vector<std::string> XdsManager::warmingOnSecrets() const {
  std::vector<std::string> out;
  for (const auto& [name, _] : pending_listeners_) out.push_back(name);
  for (const auto& [name, _] : pending_clusters_) out.push_back(name);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> XdsManager::sdsNames() const {
  std::set<std::string> out(static_secret_refs_.begin(), static_secret_refs_.end());
  for (const auto* refs : {&listener_secret_refs_, &cluster_secret_refs_}) {
    for (const auto& [_, names] : *refs) out.insert(names.begin(), names.end());
  }
  return {out.begin(), out.end()};
}

void XdsManager::hold(std::map<std::string, Pending>& pending, const xds::XdsResource& r, bool listener) {
  // Released by onSecrets() or by the initial fetch timers of the secrets it waits for.
  const bool first = !pending.count(r.name);
  pending[r.name].resource = r;
  if (first) {
    SKIFF_LOG(kConfig, info, "sds: {} '{}' warming until its secrets arrive",
              listener ? "listener" : "cluster", r.name);
  }
}

void XdsManager::releasePending(std::map<std::string, Pending>& pending, bool listener, bool force,
                                const std::string& only) {
  std::vector<std::string> ready;
  for (const auto& [name, p] : pending) {
    if (!only.empty() && name != only) continue;
    const auto& refs = listener ? listener_secret_refs_ : cluster_secret_refs_;
    auto it = refs.find(name);
    if (force || it == refs.end() || secretsReady(it->second)) ready.push_back(name);
  }
  for (const auto& name : ready) {
    auto node = pending.extract(name);
    const xds::XdsResource& r = node.mapped().resource;
    std::string error;
    if (listener) {
      envoy::config::listener::v3::Listener l;
      if (r.resource.UnpackTo(&l) && listener_sink_) error = applyListener(std::move(l), r);
    } else {
      Cluster c;
      if (r.resource.UnpackTo(&c) && !applyCluster(c, r, false, &error)) {
        // Already ACKed: the error is logged and shown in /config_dump.
      }
      refreshEdsSubscription();
    }
    if (!error.empty())
      SKIFF_LOG(kConfig, warn, "sds: warming {} '{}' failed: {}", listener ? "listener" : "cluster", name,
                error);
  }
  if (!ready.empty()) {
    refreshRdsSubscription();
    std::weak_ptr<bool> alive = alive_;
    asio::post(main_, [this, alive] {
      if (!alive.expired()) checkInitialized();
    });
  }
}

std::string XdsManager::onSecrets(const xds::ConfigUpdate& update) {
  std::vector<std::string> errors;
  auto& store = tls::processSecretManager().staticStore();
  const auto wanted = sdsNames();
  for (const auto& r : update.resources) {
    if (!std::binary_search(wanted.begin(), wanted.end(), r.name)) continue;  // not (or no longer) asked for
    SecretState& state = secretState(r.name);
    state.update_attempt.inc();
    auto reject = [&](std::string error) {
      state.update_rejected.inc();
      errors.push_back(r.name + ": " + std::move(error));
    };
    envoy::extensions::transport_sockets::tls::v3::Secret secret;
    if (!r.resource.UnpackTo(&secret)) {
      reject("the Secret does not decode");
      continue;
    }
    if (secret.name() != r.name) {
      reject("name: the resource name and Secret.name ('" + secret.name() + "') differ");
      continue;
    }
    auto existing = secrets_.find(r.name);
    const bool unchanged =
        existing != secrets_.end() && existing->second.resource.value() == r.resource.value();
    if (!unchanged) {
      try {
        store.update(secret);  // TLS contexts that use it rebuild (rotation)
      } catch (const std::invalid_argument& e) {
        reject(e.what());
        continue;
      }
      secrets_[r.name] = {r.resource, r.version, std::chrono::system_clock::now()};
      SKIFF_LOG(kConfig, info, "sds: secret '{}' version '{}'", r.name, r.version);
    } else {
      existing->second.version = r.version;
    }
    state.update_success.inc();
    state.version.set(static_cast<int64_t>(xxHash64(r.version)));
    state.update_time.set(std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count());
    std::string stat = r.name;
    std::replace(stat.begin(), stat.end(), ':', '_');
    store_.setText("sds." + stat + ".version_text", r.version);
    state.timer.reset();  // in before its initial fetch timeout
    state.timed_out = false;
  }
  for (const auto& name : update.removed) {
    // Envoy keeps using a removed secret until nothing references it; new warming waits again.
    secrets_.erase(name);
  }
  releasePending(pending_clusters_, false);
  releasePending(pending_listeners_, true);
  if (errors.empty()) return "";
  return nackMessage("Error adding/updating secret(s)", errors);
}

void XdsManager::refreshSdsSubscription() {
  if (refresh_sds_scheduled_) return;
  refresh_sds_scheduled_ = true;
  std::weak_ptr<bool> alive = alive_;
  asio::post(main_, [this, alive] {
    if (alive.expired()) return;
    refresh_sds_scheduled_ = false;
    auto names = sdsNames();
    // Secrets nothing references any more leave the store (only those ADS put there).
    for (auto it = secrets_.begin(); it != secrets_.end();) {
      if (std::binary_search(names.begin(), names.end(), it->first)) {
        ++it;
        continue;
      }
      tls::processSecretManager().staticStore().remove(it->first);
      it = secrets_.erase(it);
    }
    auto referenced = [&names](const std::string& name) {
      return std::binary_search(names.begin(), names.end(), name);
    };
    for (auto it = secret_states_.begin(); it != secret_states_.end();) {
      it = referenced(it->first) ? std::next(it) : secret_states_.erase(it);
    }
    for (auto it = secret_timeouts_.begin(); it != secret_timeouts_.end();) {
      it = referenced(it->first) ? std::next(it) : secret_timeouts_.erase(it);
    }
    // A newly referenced secret's initial fetch timer starts with its subscription.
    for (const auto& name : names) startSecretTimer(name, secretState(name));
    if (!sds_subscribed_) {
      if (names.empty()) return;
      sds_subscribed_ = true;
      sds_sent_ = names;
      xds::SubscriptionCallbacks callbacks;
      callbacks.on_update = [this](const xds::ConfigUpdate& u) { return onSecrets(u); };
      callbacks.initial_fetch_timeout = std::chrono::milliseconds(0);  // per-resource warming timers instead
      client_->subscribe(std::string(xds::kSecretType), std::move(names), std::move(callbacks));
      return;
    }
    if (names == sds_sent_) return;
    sds_sent_ = names;
    client_->updateSubscription(std::string(xds::kSecretType), std::move(names));
  });
}

void XdsManager::dumpSecrets(const std::function<bool(const std::string&)>& match,
                             envoy::admin::v3::SecretsConfigDump& secrets) const {
  for (const auto& name : sdsNames()) {
    if (!match(name)) continue;
    auto it = secrets_.find(name);
    if (it != secrets_.end()) {
      auto* entry = secrets.add_dynamic_active_secrets();
      entry->set_name(name);
      entry->set_version_info(it->second.version);
      *entry->mutable_last_updated() = google::protobuf::util::TimeUtil::NanosecondsToTimestamp(
          std::chrono::duration_cast<std::chrono::nanoseconds>(it->second.last_updated.time_since_epoch())
              .count());
      *entry->mutable_secret() = it->second.resource;
      continue;
    }
    // Subscribed, not in yet: Envoy lists the name only.
    auto* entry = secrets.add_dynamic_warming_secrets();
    entry->set_name(name);
    envoy::extensions::transport_sockets::tls::v3::Secret named;
    named.set_name(name);
    entry->mutable_secret()->PackFrom(named);
  }
}

}  // namespace skiff::server
