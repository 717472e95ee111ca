// TcpProxyConfig: validates a TcpProxy proto once and resolves its stats, clusters and access logs.
#include "server/tcp/tcp_proxy_config.h"

#include <google/protobuf/util/time_util.h>

#include <stdexcept>

#include "skiff/common/logging.h"

namespace skiff::server {

namespace {

std::chrono::milliseconds toMs(const google::protobuf::Duration& d) {
  return std::chrono::milliseconds(google::protobuf::util::TimeUtil::DurationToMilliseconds(d));
}

const std::string& validatedPrefix(const TcpProxyConfig::Proto& proto, const std::string& path) {
  if (proto.stat_prefix().empty()) throw std::invalid_argument(path + ".stat_prefix: must be set");
  return proto.stat_prefix();
}

}  // namespace

TcpProxyStats::TcpProxyStats(stats::Store& store, const std::string& p)
    : downstream_cx_total(store.counter(p + "downstream_cx_total")),
      downstream_cx_no_route(store.counter(p + "downstream_cx_no_route")),
      downstream_cx_tx_bytes_total(store.counter(p + "downstream_cx_tx_bytes_total")),
      downstream_cx_rx_bytes_total(store.counter(p + "downstream_cx_rx_bytes_total")),
      downstream_flow_control_paused_reading_total(
          store.counter(p + "downstream_flow_control_paused_reading_total")),
      downstream_flow_control_resumed_reading_total(
          store.counter(p + "downstream_flow_control_resumed_reading_total")),
      idle_timeout(store.counter(p + "idle_timeout")),
      max_downstream_connection_duration(store.counter(p + "max_downstream_connection_duration")),
      upstream_flush_total(store.counter(p + "upstream_flush_total")),
      downstream_cx_rx_bytes_buffered(store.gauge(p + "downstream_cx_rx_bytes_buffered")),
      downstream_cx_tx_bytes_buffered(store.gauge(p + "downstream_cx_tx_bytes_buffered")),
      upstream_flush_active(store.gauge(p + "upstream_flush_active")) {}

TcpProxyConfig::TcpProxyConfig(const Proto& proto, const std::string& path, stats::Store& store)
    : stat_prefix(validatedPrefix(proto, path)), stats(store, "tcp." + proto.stat_prefix() + ".") {
  switch (proto.cluster_specifier_case()) {
    case Proto::kCluster:
      if (proto.cluster().empty()) throw std::invalid_argument(path + ".cluster: must not be empty");
      clusters.push_back({proto.cluster(), 1});
      break;
    case Proto::kWeightedClusters: {
      const auto& list = proto.weighted_clusters().clusters();
      if (list.empty()) {
        throw std::invalid_argument(path + ".weighted_clusters.clusters: must have at least one cluster");
      }
      for (int i = 0; i < list.size(); ++i) {
        const std::string where = path + ".weighted_clusters.clusters[" + std::to_string(i) + "]";
        if (list[i].name().empty()) throw std::invalid_argument(where + ".name: must not be empty");
        if (list[i].weight() < 1) throw std::invalid_argument(where + ".weight: must be at least 1");
        clusters.push_back({list[i].name(), list[i].weight()});
      }
      break;
    }
    default:
      throw std::invalid_argument(path + ": one of cluster or weighted_clusters must be set");
  }
  for (const auto& c : clusters) total_weight += c.weight;

  if (proto.has_max_connect_attempts()) {
    if (proto.max_connect_attempts().value() < 1) {
      throw std::invalid_argument(path + ".max_connect_attempts: must be at least 1");
    }
    max_connect_attempts = proto.max_connect_attempts().value();
  }
  if (proto.has_idle_timeout()) {
    idle_timeout = toMs(proto.idle_timeout());
    if (idle_timeout.count() < 0) throw std::invalid_argument(path + ".idle_timeout: must not be negative");
  }
  if (proto.has_max_downstream_connection_duration()) {
    const auto d = toMs(proto.max_downstream_connection_duration());
    if (d.count() < 0) {
      throw std::invalid_argument(path + ".max_downstream_connection_duration: must not be negative");
    }
    if (d.count() > 0) max_downstream_connection_duration = d;
  }
  if (proto.has_tunneling_config()) {
    throw std::invalid_argument(path + ".tunneling_config: tunneling TCP over HTTP is not supported");
  }
  if (proto.has_on_demand()) {
    throw std::invalid_argument(path + ".on_demand: on-demand cluster discovery is not supported");
  }
  for (const char* ignored : {"metadata_match", "hash_policy", "downstream_idle_timeout",
                              "upstream_idle_timeout", "access_log_options"}) {
    const auto* field = proto.GetDescriptor()->FindFieldByName(ignored);
    const auto* reflection = proto.GetReflection();
    const bool set =
        field->is_repeated() ? reflection->FieldSize(proto, field) > 0 : reflection->HasField(proto, field);
    if (set) SKIFF_LOG(kConfig, warn, "{}.{}: not implemented; ignored", path, ignored);
  }
  access_log_configs = buildAccessLogs(proto.access_log(), path + ".access_log");
  if (!access_log_configs.empty()) worker_logs_.resize(kMaxWorkers);
}

const std::string& TcpProxyConfig::pickCluster(uint64_t random) const {
  if (clusters.size() == 1) return clusters.front().name;
  uint64_t point = random % total_weight;
  for (const auto& c : clusters) {
    if (point < c.weight) return c.name;
    point -= c.weight;
  }
  return clusters.back().name;
}

void TcpProxyConfig::log(uint32_t worker, const http::StreamInfo& info) const {
  if (access_log_configs.empty()) return;
  auto& slot = worker_logs_[worker % kMaxWorkers];
  if (!slot) {
    slot = std::make_unique<std::vector<std::unique_ptr<accesslog::AccessLog>>>();
    for (const auto& c : access_log_configs) {
      slot->push_back(
          std::make_unique<accesslog::AccessLog>(c.formatter, accesslog::makeSink(c.file), c.filter));
    }
  }
  for (auto& l : *slot) l->log(info);
}

void TcpProxyConfig::flushAccessLogs(uint32_t worker) const {
  if (access_log_configs.empty()) return;
  const auto& slot = worker_logs_[worker % kMaxWorkers];
  if (!slot) return;
  for (auto& l : *slot) l->flush();
}

}  // namespace skiff::server
