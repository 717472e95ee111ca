// Admin routing table, method checks, request stats and the small endpoints (ready, health checks, drain,
// quit, counters, runtime, certs, clusters).
#include "admin/handlers.h"

#include "skiff/upstream/cluster_manager.h"

namespace skiff::server::admin {

namespace {

struct Endpoint {
  std::string_view path;
  std::string_view help;
  bool mutates;  // POST only, as Envoy's mutates_server_state handlers.
};

// Sorted by path (the help output is alphabetical).
constexpr Endpoint kEndpoints[] = {
    {"/", "Admin home page", false},
    {"/certs", "print certs on machine", false},
    {"/clusters", "upstream cluster status", false},
    {"/config_dump", "dump current Envoy configs (experimental)", false},
    {"/drain_listeners", "drain listeners", true},
    {"/healthcheck/fail", "cause the server to fail health checks", true},
    {"/healthcheck/ok", "cause the server to pass health checks", true},
    {"/help", "print out list of admin commands", false},
    {"/hot_restart_version", "print the hot restart compatibility version", false},
    {"/listeners", "print listener info", false},
    {"/logging", "query/change logging levels", true},
    {"/memory", "print current allocation/heap usage", false},
    {"/quitquitquit", "exit the server", true},
    {"/ready", "print server state, return 200 if LIVE, otherwise return 503", false},
    {"/reset_counters", "reset all counters to zero", true},
    {"/runtime", "print runtime values", false},
    {"/server_info", "print server version/status information", false},
    {"/stats", "print server stats", false},
    {"/stats/prometheus", "print server stats in prometheus format", false},
};

const Endpoint* findEndpoint(std::string_view path) {
  for (const Endpoint& e : kEndpoints) {
    if (e.path == path) return &e;
  }
  return nullptr;
}

Response handleDrainListeners(AdminContext& context, const Query& query) {
  const bool graceful = query.has("graceful");
  const bool skip_exit = query.has("skip_exit");
  if (skip_exit && !graceful) return text(400, "skip_exit requires graceful\n");
  context.drainListeners(query.has("inboundonly"), graceful, skip_exit);
  return text(200, "OK\n");
}

}  // namespace

std::string helpText() {
  std::string out = "admin commands are:\n";
  for (const Endpoint& e : kEndpoints) {
    out += "  ";
    out += e.path;
    out += ": ";
    out += e.help;
    out += "\n";
  }
  return out;
}

Handlers::Handlers(AdminContext& context) : context_(context) {
  stats::Store& store = context.stats();
  rq_total_ = store.counter("http.admin.downstream_rq_total");
  rq_completed_ = store.counter("http.admin.downstream_rq_completed");
  for (int i = 0; i < 5; ++i) {
    rq_class_[i] = store.counter("http.admin.downstream_rq_" + std::to_string(i + 1) + "xx");
  }
}

Response Handlers::handle(std::string_view method, std::string_view path_and_query, std::string_view body,
                          bool* quit) {
  *quit = false;
  rq_total_.inc();
  const size_t q = path_and_query.find('?');
  const std::string_view path = path_and_query.substr(0, q);
  const Query query =
      Query::parse(q == std::string_view::npos ? std::string_view{} : path_and_query.substr(q + 1));
  Response response = route(method, path, query, quit);
  rq_completed_.inc();
  if (response.status >= 100 && response.status < 600) rq_class_[response.status / 100 - 1].inc();
  return response;
}

Response Handlers::route(std::string_view method, std::string_view path, const Query& query, bool* quit) {
  const Endpoint* endpoint = findEndpoint(path);
  if (endpoint == nullptr) return text(404, "invalid path. " + helpText());
  // Listing loggers changes nothing, so a plain GET /logging is let through (Envoy wants POST for all).
  const bool read_only_logging = path == "/logging" && query.params().empty();
  if (endpoint->mutates && method != "POST" && !read_only_logging) {
    return text(405, "Method " + std::string(method) + " not allowed, POST required.");
  }

  if (path == "/" || path == "/help") return text(200, helpText());
  if (path == "/stats") return handleStats(context_.stats(), query, false);
  if (path == "/stats/prometheus") return handleStats(context_.stats(), query, true);
  if (path == "/clusters") {
    const std::string* format = query.get("format");
    if (format != nullptr && *format == "json")
      return json(200, context_.clusterManager().renderClustersJson());
    return text(200, context_.clusterManager().renderClustersText());
  }
  if (path == "/config_dump")
    return handleConfigDump(context_.bootstrap(), context_.startTime(), query, &context_);
  if (path == "/listeners") return handleListeners(context_, query);
  if (path == "/logging") return handleLogging(query);
  if (path == "/ready") {
    const ServerState state = context_.state();
    return text(state == ServerState::kLive ? 200 : 503, std::string(serverStateName(state)) + "\n");
  }
  if (path == "/server_info") return handleServerInfo(context_);
  if (path == "/memory") return handleMemory();
  if (path == "/runtime") return json(200, "{\n \"layers\": [],\n \"entries\": {}\n}\n");
  if (path == "/certs") return json(200, "{\n \"certificates\": []\n}\n");
  if (path == "/hot_restart_version") return text(200, "disabled");
  if (path == "/healthcheck/fail" || path == "/healthcheck/ok") {
    context_.setHealthCheckFailed(path == "/healthcheck/fail");
    return text(200, "OK\n");
  }
  if (path == "/drain_listeners") return handleDrainListeners(context_, query);
  if (path == "/reset_counters") {
    context_.stats().resetCounters();
    return text(200, "OK\n");
  }
  if (path == "/quitquitquit") {
    *quit = true;
    return text(200, "OK\n");
  }
  return text(404, "invalid path. " + helpText());
}

}  // namespace skiff::server::admin
