// /server_info, /memory and /listeners: JSON assembled in admin.v3's field order.
#include <google/protobuf/util/json_util.h>
#include <malloc.h>

#include <fstream>

#include "admin/handlers.h"
#include "envoy/config/bootstrap/v3/bootstrap.pb.h"

#ifndef SKIFF_VERSION
#define SKIFF_VERSION "0.0.0"
#endif

namespace skiff::server {

std::string_view serverStateName(ServerState state) {
  switch (state) {
    case ServerState::kLive:
      return "LIVE";
    case ServerState::kDraining:
      return "DRAINING";
    case ServerState::kPreInitializing:
      return "PRE_INITIALIZING";
    case ServerState::kInitializing:
      return "INITIALIZING";
  }
  return "LIVE";
}

namespace admin {

namespace {

#ifdef NDEBUG
constexpr std::string_view kBuildType = "RELEASE";
#else
constexpr std::string_view kBuildType = "DEBUG";
#endif

void addField(std::string& out, std::string_view name, std::string_view raw_json, bool last = false) {
  out += " ";
  appendJsonString(out, name);
  out += ": ";
  out += raw_json;
  out += last ? "\n" : ",\n";
}

std::string quoted(std::string_view s) {
  std::string out;
  appendJsonString(out, s);
  return out;
}

// VmRSS from /proc/self/status, in bytes (0 when unreadable).
uint64_t residentBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtoull(line.c_str() + 6, nullptr, 10) * 1024;
  }
  return 0;
}

}  // namespace

Response handleServerInfo(AdminContext& context) {
  const auto uptime = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now() -
                                                                       context.startTime());
  const std::string uptime_text = quoted(std::to_string(std::max<int64_t>(0, uptime.count())) + "s");

  std::string node = "{}";
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  if (context.bootstrap().has_node()) {
    std::string converted;
    if (google::protobuf::util::MessageToJsonString(context.bootstrap().node(), &converted, options).ok()) {
      node = std::move(converted);
    }
  }
  std::string command_line = context.serverInfoCommandLine();
  if (command_line.empty()) command_line = "{}";

  std::string out = "{\n";
  addField(out, "version", quoted("skiff/" SKIFF_VERSION "/Clean/" + std::string(kBuildType) + "/OpenSSL"));
  addField(out, "state", quoted(serverStateName(context.state())));
  addField(out, "uptime_current_epoch", uptime_text);
  addField(out, "uptime_all_epochs", uptime_text);
  addField(out, "hot_restart_version", quoted("disabled"));
  addField(out, "command_line_options", command_line);
  addField(out, "node", node, true);
  out += "}\n";
  return json(200, std::move(out));
}

Response handleMemory() {
  const struct mallinfo2 info = mallinfo2();
  const uint64_t allocated = info.uordblks + info.hblkhd;
  const uint64_t heap = info.arena + info.hblkhd;
  std::string out = "{\n";
  addField(out, "allocated", quoted(std::to_string(allocated)));
  addField(out, "heap_size", quoted(std::to_string(heap)));
  addField(out, "pageheap_unmapped", quoted("0"));
  addField(out, "pageheap_free", quoted(std::to_string(info.fordblks)));
  addField(out, "total_thread_cache", quoted("0"));
  addField(out, "total_physical_bytes", quoted(std::to_string(residentBytes())), true);
  out += "}\n";
  return json(200, std::move(out));
}

Response handleListeners(const AdminContext& context, const Query& query) {
  const auto listeners = context.listenerAddresses();
  const std::string* format = query.get("format");
  if (format == nullptr || *format != "json") {
    std::string out;
    for (const auto& [name, address] : listeners) out += name + "::" + address + "\n";
    return text(200, std::move(out));
  }
  // admin.v3.Listeners: listener_statuses[].{name, local_address.socket_address.{address, port_value}}.
  std::string out = "{\n \"listener_statuses\": [";
  bool first = true;
  for (const auto& [name, address] : listeners) {
    out += first ? "\n  {\n" : ",\n  {\n";
    first = false;
    std::string host = address;
    std::string port = "0";
    if (size_t colon = address.rfind(':'); colon != std::string::npos) {
      host = address.substr(0, colon);
      port = address.substr(colon + 1);
    }
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    if (port.empty() || port.find_first_not_of("0123456789") != std::string::npos) port = "0";
    out += "   \"name\": " + quoted(name) + ",\n";
    out += "   \"local_address\": {\n    \"socket_address\": {\n     \"address\": " + quoted(host) +
           ",\n     \"port_value\": " + std::to_string(std::stoul(port.substr(0, 9))) + "\n    }\n   }\n  }";
  }
  out += first ? "]\n}\n" : "\n ]\n}\n";
  return json(200, std::move(out));
}

}  // namespace admin
}  // namespace skiff::server
