// The process-wide table of implemented extensions, with the core's own entries.
#include "skiff/config/extension_registry.h"

#include <deque>
#include <mutex>

namespace skiff::config {
namespace {

struct Table {
  std::mutex mutex;
  std::deque<Extension> entries;  // a deque keeps pointers stable as it grows
};

void addLocked(Table& table, Category category, std::string_view name, std::string_view type_url) {
  for (auto& entry : table.entries) {
    // One entry per (type, category): a type may serve in two (Istio's stats.PluginConfig is both an HTTP
    // and a network filter).
    if (!type_url.empty() && typeNameOfUrl(entry.type_url) == typeNameOfUrl(type_url) &&
        entry.category == category) {
      entry.category = category;
      entry.name = std::string(name);
      return;
    }
  }
  std::string url(type_url);
  if (!url.empty() && url.find('/') == std::string::npos) url = "type.googleapis.com/" + url;
  table.entries.push_back(Extension{category, std::string(name), std::move(url)});
}

Table& table() {
  static Table* instance = [] {
    auto* t = new Table();  // never destroyed: registrations may run during static teardown
    const char* kPrefix = "type.googleapis.com/envoy.extensions.";
    auto add = [&](Category c, const char* name, const std::string& type) { addLocked(*t, c, name, type); };
    add(Category::kNetworkFilter, "envoy.filters.network.http_connection_manager",
        std::string(kPrefix) + "filters.network.http_connection_manager.v3.HttpConnectionManager");
    add(Category::kNetworkFilter, "envoy.filters.network.tcp_proxy",
        std::string(kPrefix) + "filters.network.tcp_proxy.v3.TcpProxy");
    add(Category::kHttpFilter, "envoy.filters.http.router",
        std::string(kPrefix) + "filters.http.router.v3.Router");
    add(Category::kAccessLogger, "envoy.access_loggers.file",
        std::string(kPrefix) + "access_loggers.file.v3.FileAccessLog");
    add(Category::kAccessLogger, "envoy.access_loggers.stdout",
        std::string(kPrefix) + "access_loggers.stream.v3.StdoutAccessLog");
    add(Category::kAccessLogger, "envoy.access_loggers.stderr",
        std::string(kPrefix) + "access_loggers.stream.v3.StderrAccessLog");
    add(Category::kTransportSocket, "envoy.transport_sockets.raw_buffer",
        std::string(kPrefix) + "transport_sockets.raw_buffer.v3.RawBuffer");
    return t;
  }();
  return *instance;
}

}  // namespace

std::string_view categoryName(Category category) {
  switch (category) {
    case Category::kNetworkFilter:
      return "network filter";
    case Category::kHttpFilter:
      return "HTTP filter";
    case Category::kListenerFilter:
      return "listener filter";
    case Category::kAccessLogger:
      return "access logger";
    case Category::kTransportSocket:
      return "transport socket";
    case Category::kCluster:
      return "cluster";
    case Category::kOther:
      return "extension";
  }
  return "extension";
}

std::string_view typeNameOfUrl(std::string_view type_url) {
  const size_t slash = type_url.rfind('/');
  return slash == std::string_view::npos ? type_url : type_url.substr(slash + 1);
}

void registerExtension(Category category, std::string_view name, std::string_view type_url) {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mutex);
  addLocked(t, category, name, type_url);
}

const Extension* findByTypeUrl(std::string_view type_url) {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mutex);
  const std::string_view wanted = typeNameOfUrl(type_url);
  for (const auto& entry : t.entries) {
    if (!entry.type_url.empty() && typeNameOfUrl(entry.type_url) == wanted) return &entry;
  }
  return nullptr;
}

const Extension* findByTypeUrl(std::string_view type_url, Category category) {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mutex);
  const std::string_view wanted = typeNameOfUrl(type_url);
  for (const auto& entry : t.entries) {
    if (entry.category == category && !entry.type_url.empty() && typeNameOfUrl(entry.type_url) == wanted)
      return &entry;
  }
  return nullptr;
}

const Extension* findByName(std::string_view name) {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mutex);
  for (const auto& entry : t.entries) {
    if (entry.name == name) return &entry;
  }
  return nullptr;
}

std::vector<Extension> registeredExtensions() {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mutex);
  return {t.entries.begin(), t.entries.end()};
}

}  // namespace skiff::config
