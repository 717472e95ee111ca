// Runtime: the process's EnvoyFilter set, its reload on file change, and the reporting of each outcome.
#include "skiff/envoy_filter/runtime.h"

#include <sys/stat.h>

#include <filesystem>

#include <fmt/format.h>

#include "skiff/common/logging.h"
#include "skiff/config/config_error.h"
#include "skiff/stats/stats.h"

namespace skiff::envoy_filter {

std::string pathsFromBootstrap(const envoy::config::bootstrap::v3::Bootstrap& bootstrap) {
  std::string out;
  for (const auto& layer : bootstrap.layered_runtime().layers()) {
    const auto& fields = layer.static_layer().fields();
    auto it = fields.find(std::string(kRuntimeKey));
    if (it != fields.end() && !it->second.string_value().empty()) out = it->second.string_value();
  }
  return out;
}

Runtime& Runtime::instance() {
  static Runtime runtime;
  return runtime;
}

namespace {

// envoy_filter.<namespace>.<name>.<suffix> (or without the namespace).
std::string statName(const std::string& key, std::string_view suffix) {
  std::string name = key;
  for (char& c : name) {
    if (c == '/') c = '.';
  }
  return fmt::format("envoy_filter.{}.{}", name, suffix);
}

bool g_stats_ready = false;

void count(const std::string& name) {
  if (g_stats_ready) stats::defaultStore().counter(name).inc();
}

}  // namespace

void Runtime::configure(const std::string& paths, const envoy::config::core::v3::Node& node) {
  paths_ = paths;
  node_ = node;
  applier_.reset();
  status_.clear();
  raw_clusters_.clear();
  patched_clusters_.clear();
  raw_routes_.clear();
  if (paths_.empty()) return;
  signature_ = signature();
  load();  // throws
}

void Runtime::load() {
  auto filters = loadEnvoyFilterPaths(paths_);
  auto applier = std::make_unique<Applier>(std::move(filters), Proxy::fromNode(node_));
  std::map<std::string, Entry> status;
  for (const auto& f : applier->selected()) {
    status[f.key()] = {f.name, f.namespace_, f.source, "not_applied", "matched no configuration yet"};
  }
  for (const auto& f : applier->notSelected()) status[f.first] = {f.first, "", "", "not_selected", f.second};
  SKIFF_LOG(kConfig, info, "envoy_filter: {} EnvoyFilter(s) from {}: {} select this proxy", status.size(),
            paths_, applier->selected().size());
  for (const auto& [key, why] : applier->notSelected()) {
    SKIFF_LOG(kConfig, info, "envoy_filter: '{}' does not apply: {}", key, why);
  }
  applier_ = std::move(applier);
  status_ = std::move(status);
}

std::string Runtime::signature() const {
  namespace fs = std::filesystem;
  std::string sig;
  auto add = [&](const std::string& file) {
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0) {
      sig += file + ":missing;";
      return;
    }
    sig += fmt::format("{}:{}.{}:{};", file, st.st_mtim.tv_sec, st.st_mtim.tv_nsec, st.st_size);
  };
  size_t start = 0;
  while (start <= paths_.size()) {
    size_t comma = paths_.find(',', start);
    if (comma == std::string::npos) comma = paths_.size();
    const std::string one = paths_.substr(start, comma - start);
    start = comma + 1;
    if (one.empty()) continue;
    std::error_code ec;
    if (fs::is_directory(one, ec)) {
      std::vector<std::string> files;
      for (const auto& e : fs::directory_iterator(one, ec)) files.push_back(e.path().string());
      std::sort(files.begin(), files.end());
      for (const auto& f : files) add(f);
    } else {
      add(one);
    }
  }
  return sig;
}

bool Runtime::pollForChange() {
  if (paths_.empty()) return false;
  std::string sig = signature();
  if (sig == signature_) return false;
  signature_ = std::move(sig);
  try {
    load();
  } catch (const std::exception& e) {
    SKIFF_LOG(kConfig, err, "envoy_filter: reload failed; keeping the previous EnvoyFilters: {}", e.what());
    count("envoy_filter.reload_failure");
    return false;
  }
  count("envoy_filter.reload_success");
  return true;
}

void Runtime::patchBootstrap(envoy::config::bootstrap::v3::Bootstrap& bootstrap) {
  raw_bootstrap_ = bootstrap;
  if (!applier_) return;
  ApplyReport report = applier_->patchBootstrap(bootstrap);
  record("static bootstrap", report);
}

std::optional<std::pair<envoy::config::listener::v3::Listener, ApplyReport>> Runtime::unpatchedStatic(
    const std::string& name) const {
  if (!applier_) return std::nullopt;
  for (const auto& raw : raw_bootstrap_.static_resources().listeners()) {
    if (raw.name() != name) continue;
    auto copy = raw;
    ApplyReport report = applier_->patchListener(copy);
    if (report.applied.empty()) return std::nullopt;
    return std::make_pair(raw, report);
  }
  return std::nullopt;
}

std::optional<envoy::config::listener::v3::Listener> Runtime::patchListener(
    const envoy::config::listener::v3::Listener& raw, const std::string& what, ApplyReport* report_out) {
  envoy::config::listener::v3::Listener out = raw;
  if (!applier_) return out;
  ApplyReport report = applier_->patchListener(out);
  record(what + " '" + raw.name() + "'", report);
  if (report_out) *report_out = report;
  if (report.removed) return std::nullopt;
  return out;
}

envoy::config::cluster::v3::Cluster Runtime::patchCluster(const envoy::config::cluster::v3::Cluster& raw) {
  if (paths_.empty()) return raw;
  raw_clusters_[raw.name()] = raw;
  envoy::config::cluster::v3::Cluster out = raw;
  if (!applier_) return out;
  ApplyReport report = applier_->patchCluster(out);
  if (report.removed) {
    // CDS owns its clusters; a REMOVE would leave xDS tracking a cluster that does not exist.
    report.removed = false;
    for (const auto& key : report.applied)
      report.failed.emplace_back(key, "REMOVE of a CDS cluster is not supported");
    report.applied.clear();
    out = raw;
  }
  record("cds cluster '" + raw.name() + "'", report);
  patched_clusters_[raw.name()] = out;
  return out;
}

void Runtime::patchRouteConfiguration(envoy::config::route::v3::RouteConfiguration& config) {
  if (paths_.empty()) return;
  raw_routes_[config.name()] = config;
  if (!applier_) return;
  ApplyReport report = applier_->patchRouteConfiguration(config);
  record("rds route config '" + config.name() + "'", report);
}

void Runtime::record(const std::string& what, const ApplyReport& report) {
  for (const auto& key : report.applied) {
    SKIFF_LOG(kConfig, info, "envoy_filter: '{}' applied to {}", key, what);
    auto& e = status_[key];
    e.applied++;
    if (e.state != "failed") {
      e.state = "applied";
      e.reason.clear();
    }
    count(statName(key, "applied"));
  }
  for (const auto& [key, error] : report.failed) {
    SKIFF_LOG(kConfig, warn, "envoy_filter: '{}' not applied to {}: {}", key, what, error);
    auto& e = status_[key];
    e.failed++;
    e.state = "failed";
    e.reason = what + ": " + error;
    count(statName(key.empty() ? std::string("unknown") : key, "patch_failed"));
    count("envoy_filter.patch_failed");
  }
}

void Runtime::recordRejected(const std::string& what, const ApplyReport& report, const std::string& error) {
  ApplyReport failed;
  for (const auto& key : report.applied)
    failed.failed.emplace_back(key, "the patched config was rejected: " + error);
  record(what, failed);
}

void Runtime::startStats() {
  if (g_stats_ready) return;
  g_stats_ready = true;
  auto& store = stats::defaultStore();
  for (const auto& [key, e] : status_) {
    if (e.applied) store.counter(statName(key, "applied")).inc(e.applied);
    if (e.failed) {
      store.counter(statName(key, "patch_failed")).inc(e.failed);
      store.counter("envoy_filter.patch_failed").inc(e.failed);
    }
  }
}

google::protobuf::Value Runtime::status() const {
  google::protobuf::Value out;
  auto* list = out.mutable_list_value();
  for (const auto& [key, e] : status_) {
    auto* s = list->add_values()->mutable_struct_value()->mutable_fields();
    (*s)["name"].set_string_value(e.name.empty() ? key : e.name);
    if (!e.namespace_.empty()) (*s)["namespace"].set_string_value(e.namespace_);
    if (!e.source.empty()) (*s)["source"].set_string_value(e.source);
    (*s)["state"].set_string_value(e.state);
    if (!e.reason.empty()) (*s)["reason"].set_string_value(e.reason);
    (*s)["applied"].set_number_value(static_cast<double>(e.applied));
    (*s)["failed"].set_number_value(static_cast<double>(e.failed));
  }
  return out;
}

}  // namespace skiff::envoy_filter
