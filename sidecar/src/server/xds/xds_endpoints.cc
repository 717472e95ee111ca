// XdsManager, EDS side: which clusters wait for which ClusterLoadAssignment (own name or service_name
// alias), their initial_fetch_timeout warming deadlines, EDS updates into the ClusterManager, and the EDS
// subscription's name list.
// Own header first, as in xds_manager.cc and xds_secrets.cc: asio decides between aligned_alloc and operator
// new by whether a libstdc++ header came before it, and its per-thread recycled blocks are shared by every
// file whose handlers run on the main thread, so those files must decide alike.
#include "server/xds/xds_manager.h"

#include <algorithm>
#include <limits>

#include "server/xds/nack_message.h"
#include "server/xds/version_hash.h"
#include "skiff/common/logging.h"

namespace skiff::server {

namespace {

using envoy::config::cluster::v3::Cluster;

// xxHash64 over NUL-separated names: the identity of a subscription's name list.
uint64_t namesHash(const std::vector<std::string>& names) {
  uint64_t hash = names.size();
  for (const auto& name : names) hash = xxHash64(name, hash);
  return hash;
}

}  // namespace

XdsManager::EdsTrack* XdsManager::edsTrack(const std::string& cluster) {
  return const_cast<EdsTrack*>(std::as_const(*this).edsTrack(cluster));
}

const XdsManager::EdsTrack* XdsManager::edsTrack(const std::string& cluster) const {
  if (auto it = dynamic_clusters_.find(cluster); it != dynamic_clusters_.end() && it->second.eds.tracked) {
    return &it->second.eds;
  }
  auto it = static_eds_.find(cluster);
  return it == static_eds_.end() ? nullptr : &it->second;
}

void XdsManager::forEachEds(const std::function<void(const std::string&, const EdsTrack&)>& fn) const {
  for (const auto& [cluster, track] : static_eds_) fn(cluster, track);
  for (const auto& [cluster, record] : dynamic_clusters_) {
    if (record.eds.tracked) fn(cluster, record.eds);
  }
}

void XdsManager::trackEdsCluster(const Cluster& cluster) {
  const std::string service = edsNameOf(cluster);
  const bool own = service == cluster.name();
  if (const EdsTrack* known = edsTrack(cluster.name());
      known && (known->service ? *known->service != service : !own)) {
    untrackEdsCluster(cluster.name());
  }
  // A CDS cluster's record exists already (applyCluster); a static one gets an entry of its own.
  auto dynamic = dynamic_clusters_.find(cluster.name());
  EdsTrack& track = dynamic != dynamic_clusters_.end() ? dynamic->second.eds : static_eds_[cluster.name()];
  if (!own && !track.tracked) eds_aliases_.emplace(service, cluster.name());
  track.tracked = true;
  track.service = own ? nullptr : std::make_unique<const std::string>(service);
  track.timeout_ms = static_cast<uint32_t>(
      std::min<int64_t>(initialFetchTimeout(cluster.eds_cluster_config().eds_config()).count(),
                        std::numeric_limits<uint32_t>::max()));
}

std::vector<std::string> XdsManager::edsUsers(const std::string& service) const {
  std::vector<std::string> out;
  if (const EdsTrack* own = edsTrack(service); own && !own->service) out.push_back(service);
  for (auto [it, end] = eds_aliases_.equal_range(service); it != end; ++it) out.push_back(it->second);
  std::sort(out.begin(), out.end());
  return out;
}

void XdsManager::untrackEdsCluster(const std::string& cluster) {
  EdsTrack* track = edsTrack(cluster);
  if (track == nullptr) return;
  const std::string service = track->service ? *track->service : cluster;
  if (track->service) {
    for (auto [a, end] = eds_aliases_.equal_range(service); a != end; ++a) {
      if (a->second == cluster) {
        eds_aliases_.erase(a);
        break;
      }
    }
  }
  if (static_eds_.count(cluster)) {
    static_eds_.erase(cluster);
  } else {
    *track = EdsTrack{};
  }
  if (edsUsers(service).empty()) endpoints_.erase(service);
  warm_deadlines_.erase(cluster);
  initial_eds_pending_.erase(cluster);
}

void XdsManager::startWarmTimer(const std::string& cluster, std::chrono::milliseconds timeout) {
  if (timeout.count() <= 0) {
    warm_deadlines_.erase(cluster);
    return;  // 0 = wait for EDS forever
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  warm_deadlines_[cluster] = deadline;
  if (!warm_timer_armed_ || deadline < warm_timer_deadline_) armWarmTimer(deadline);
}

void XdsManager::armWarmTimer(std::chrono::steady_clock::time_point deadline) {
  // One timer for every warming EDS cluster (10,000 clusters warm at once after a big CDS push).
  warm_timer_armed_ = true;
  warm_timer_deadline_ = deadline;
  warm_timer_.expires_at(deadline);  // a pending wait ends with operation_aborted
  std::weak_ptr<bool> alive = alive_;
  warm_timer_.async_wait([this, alive](std::error_code ec) {
    if (ec || alive.expired()) return;
    warm_timer_armed_ = false;
    onWarmDeadlines();
  });
}

void XdsManager::onWarmDeadlines() {
  const auto now = std::chrono::steady_clock::now();
  std::vector<std::string> expired;
  auto next = std::chrono::steady_clock::time_point::max();
  for (const auto& [cluster, deadline] : warm_deadlines_) {
    if (deadline <= now) {
      expired.push_back(cluster);
    } else {
      next = std::min(next, deadline);
    }
  }
  for (const auto& cluster : expired) {
    warm_deadlines_.erase(cluster);
    SKIFF_LOG(kUpstream, warn, "eds: cluster '{}' got no endpoints within initial_fetch_timeout", cluster);
    clusterCounter(cluster, "init_fetch_timeout").inc();
    clusters_.markInitialized(cluster);
    initial_eds_pending_.erase(cluster);
  }
  if (!warm_deadlines_.empty()) armWarmTimer(next);
  checkInitialized();
}

std::string XdsManager::onEndpoints(const xds::ConfigUpdate& update) {
  std::vector<std::string> errors;
  for (const auto& r : update.resources) {
    const std::vector<std::string> users = edsUsers(r.name);
    if (users.empty()) continue;  // not (or no longer) subscribed
    // A SotW EDS push resends every assignment: one with the same bytes as the one in force is a no-op
    // (counted as Envoy counts an update that changes no host) without decoding it.
    auto cached = endpoints_.find(r.name);
    if (cached != endpoints_.end() && cached->second.bytes == r.resource.value() &&
        std::all_of(users.begin(), users.end(), [&](const std::string& c) {
          return !warm_deadlines_.count(c) && !initial_eds_pending_.count(c) && clusters_.info(c) != nullptr;
        })) {
      for (const auto& cluster : users) {
        const auto info = clusters_.info(cluster);
        info->stats.update_attempt().inc();
        info->stats.update_success().inc();
        info->stats.update_no_rebuild().inc();
      }
      cached->second.version = internVersion(r.version);
      continue;
    }
    envoy::config::endpoint::v3::ClusterLoadAssignment cla;
    if (!r.resource.UnpackTo(&cla)) {
      errors.push_back(r.name + ": the ClusterLoadAssignment does not decode");
      continue;
    }
    bool ok = true;
    for (const auto& cluster : users) {
      try {
        clusters_.updateEndpoints(cluster, cla);
        warm_deadlines_.erase(cluster);
        initial_eds_pending_.erase(cluster);
      } catch (const std::invalid_argument& e) {
        ok = false;
        clusterCounter(cluster, "update_rejected").inc();
        errors.push_back(r.name + ": " + e.what());
      }
    }
    if (ok)
      endpoints_[r.name] = {r.resource.value(), internVersion(r.version), std::chrono::system_clock::now()};
  }
  trimAfterLargeUpdate(update);
  for (const auto& name : update.removed) {
    // Envoy keeps the last assignment when one is removed; it counts an empty update. Without a version
    // the record is not announced in a Delta reconnect's initial_resource_versions.
    if (auto it = endpoints_.find(name); it != endpoints_.end()) it->second.version.reset();
    for (const auto& cluster : edsUsers(name)) {
      if (auto info = clusters_.info(cluster)) info->stats.update_empty().inc();
    }
  }
  std::weak_ptr<bool> alive = alive_;
  asio::post(main_, [this, alive] {
    if (!alive.expired()) checkInitialized();
  });
  if (errors.empty()) return "";
  return nackMessage("Error updating endpoints of", errors);
}

std::vector<std::string> XdsManager::edsNames() const {
  std::vector<std::string> out;
  forEachEds([&out](const std::string& cluster, const EdsTrack& track) {
    if (!track.service) out.push_back(cluster);
  });
  for (const auto& [service, _] : eds_aliases_) out.push_back(service);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

void XdsManager::refreshEdsSubscription() {
  if (refresh_eds_scheduled_) return;
  refresh_eds_scheduled_ = true;
  std::weak_ptr<bool> alive = alive_;
  asio::post(main_, [this, alive] {
    if (alive.expired()) return;
    refresh_eds_scheduled_ = false;
    auto names = edsNames();
    if (!eds_subscribed_) {
      if (names.empty()) return;
      eds_subscribed_ = true;
      eds_sent_hash_ = namesHash(names);
      xds::SubscriptionCallbacks callbacks;
      callbacks.on_update = [this](const xds::ConfigUpdate& u) { return onEndpoints(u); };
      callbacks.initial_fetch_timeout = std::chrono::milliseconds(0);  // per-cluster timers instead
      callbacks.known_versions = [this](const xds::SubscriptionCallbacks::VersionVisitor& visit) {
        for (const auto& [name, record] : endpoints_) {
          if (record.version) visit(name, *record.version);
        }
      };
      client_->subscribe(std::string(xds::kEndpointType), std::move(names), std::move(callbacks));
      return;
    }
    const uint64_t hash = namesHash(names);
    if (hash == eds_sent_hash_)
      return;  // unchanged (a hash: a copy of 10,000 names costs more than it saves)
    eds_sent_hash_ = hash;
    client_->updateSubscription(std::string(xds::kEndpointType), std::move(names));
  });
}

}  // namespace skiff::server
