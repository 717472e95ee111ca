// XdsManager's SDS side: which secrets listeners and clusters name, holding them warm until those secrets
// arrive, taking Secret resources into the process secret store, and the SDS subscription that follows.
#include <stdexcept>

#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/listener/v3/listener.pb.h"
#include "envoy/extensions/transport_sockets/tls/v3/secret.pb.h"
#include "server/xds/nack_message.h"
#include "server/xds/secret_refs.h"
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
    if (!secrets_.count(name)) return false;
  }
  return true;
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
  Pending& p = pending[r.name];
  p.resource = r;
  if (p.timer) return;  // still waiting since the first version: keep that deadline
  p.timer = std::make_unique<asio::steady_timer>(main_, sds_timeout_);
  std::weak_ptr<bool> alive = alive_;
  const std::string name = r.name;
  p.timer->async_wait([this, alive, name, listener](std::error_code ec) {
    if (ec || alive.expired()) return;
    SKIFF_LOG(kConfig, warn,
              "sds: {} '{}' did not get its secrets within initial_fetch_timeout; applied without them",
              listener ? "listener" : "cluster", name);
    releasePending(listener ? pending_listeners_ : pending_clusters_, listener, true, name);
  });
  SKIFF_LOG(kConfig, info, "sds: {} '{}' warming until its secrets arrive", listener ? "listener" : "cluster",
            r.name);
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
    envoy::extensions::transport_sockets::tls::v3::Secret secret;
    if (!r.resource.UnpackTo(&secret)) {
      errors.push_back(r.name + ": the Secret does not decode");
      continue;
    }
    if (secret.name() != r.name) {
      errors.push_back(r.name + ": name: the resource name and Secret.name ('" + secret.name() + "') differ");
      continue;
    }
    auto existing = secrets_.find(r.name);
    if (existing != secrets_.end() && existing->second.resource.value() == r.resource.value()) {
      existing->second.version = r.version;
      continue;
    }
    try {
      store.update(secret);  // TLS contexts that use it rebuild (rotation)
    } catch (const std::invalid_argument& e) {
      errors.push_back(r.name + ": " + e.what());
      continue;
    }
    secrets_[r.name] = {r.resource, r.version, std::chrono::system_clock::now()};
    SKIFF_LOG(kConfig, info, "sds: secret '{}' version '{}'", r.name, r.version);
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

}  // namespace skiff::server
