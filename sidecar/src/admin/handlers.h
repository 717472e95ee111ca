// The admin endpoints behind AdminServer: a path table and one function per endpoint family.
#pragma once

#include <chrono>
#include <string_view>

#include "admin/admin_util.h"
#include "skiff/server/admin.h"
#include "skiff/stats/stats.h"

namespace skiff::server::admin {

Response handleStats(stats::Store& store, const Query& query, bool prometheus_path);
Response handleLogging(const Query& query);
Response handleConfigDump(const envoy::config::bootstrap::v3::Bootstrap& bootstrap,
                          std::chrono::system_clock::time_point last_updated, const Query& query,
                          const AdminContext* context = nullptr);
Response handleServerInfo(AdminContext& context);
Response handleMemory();
Response handleListeners(const AdminContext& context, const Query& query);

// Routes one request to its endpoint, enforces POST on mutating endpoints and keeps http.admin.* request
// stats. Main thread only.
class Handlers {
 public:
  explicit Handlers(AdminContext& context);

  // `*quit` is set when /quitquitquit was accepted: the caller calls context.quit() once the answer is out.
  Response handle(std::string_view method, std::string_view path_and_query, std::string_view body,
                  bool* quit);
  AdminContext& context() { return context_; }

 private:
  Response route(std::string_view method, std::string_view path, const Query& query, bool* quit);

  AdminContext& context_;
  stats::Counter rq_total_;
  stats::Counter rq_completed_;
  stats::Counter rq_class_[5];  // 1xx .. 5xx
};

// "admin commands are:" and one "  /path: help" line per endpoint, sorted.
std::string helpText();

}  // namespace skiff::server::admin
