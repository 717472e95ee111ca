// Envoy's default tag extraction (well_known_names), compiled once with RE2, with a per-name cache.
//
// Each extractor matches the full stat name; its first capture group is cut out of the name and the tag
// value is the second group (or the first when there is only one). Envoy writes some of these regexes
// with look-ahead, which RE2 lacks: "X(?=\.).*?\.Y" is rewritten as "X(?:\..*?)??\.Y", which accepts the
// same names because what follows always starts with a dot.
#include <re2/re2.h>

#include <memory>
#include <mutex>
#include <unordered_map>

#include "stats/labelled_internal.h"
#include "stats/render_util.h"

namespace skiff::stats {
namespace {

struct Extractor {
  std::string tag;     // Prometheus label name
  std::string substr;  // literal that must occur for the regex to have a chance (cheap pre-filter)
  std::unique_ptr<RE2> re;
};

std::vector<Extractor> buildExtractors() {
  // {label, regex, substr}, in Envoy's order (most specific first).
  const struct {
    const char* tag;
    const char* regex;
    const char* substr;
  } kDefs[] = {
      {"envoy_response_code", R"(_rq(_(\d{3}))$)", "_rq_"},
      {"envoy_response_code_class", R"(_rq_(\d)xx$)", "_rq_"},
      {"envoy_dynamodb_partition_id",
       R"(^http(?:\..*?)??\.dynamodb\.table(?:\..*?)??\.capacity(?:\..*?)??(\.__partition_id=(\w{7}))$)",
       ".dynamodb.table."},
      {"envoy_dynamodb_operation",
       R"(^http(?:\..*?)??\.dynamodb.(?:operation|table(?:\..*?)??\.capacity)(\.(.*?))(?:\.|$))",
       ".dynamodb."},
      {"envoy_mongo_callsite",
       R"(^mongo(?:\..*?)??\.collection(?:\..*?)??\.callsite\.((.*?)\.).*?query.\w+?$)", ".collection."},
      {"envoy_dynamodb_table", R"(^http(?:\..*?)??\.dynamodb.(?:table|error)\.((.*?)\.))", ".dynamodb."},
      {"envoy_mongo_collection", R"(^mongo(?:\..*?)??\.collection\.((.*?)\.).*?query.\w+?$)", ".collection."},
      {"envoy_mongo_cmd", R"(^mongo(?:\..*?)??\.cmd\.((.*?)\.)\w+?$)", ".cmd."},
      {"envoy_grpc_bridge_method", R"(^cluster(?:\..*?)??\.grpc(?:\..*)?\.((.*?)\.)\w+?$)", ".grpc."},
      {"envoy_http_user_agent", R"(^http(?:\..*?)??\.user_agent\.((.*?)\.)\w+?$)", ".user_agent."},
      {"envoy_virtual_cluster", R"(^vhost(?:\..*?)??\.vcluster\.((.*?)\.)\w+?$)", ".vcluster."},
      {"envoy_fault_downstream_cluster", R"(^http(?:\..*?)??\.fault\.((.*?)\.)\w+?$)", ".fault."},
      {"envoy_ssl_cipher", R"(^listener(?:\..*?)??\.ssl\.cipher(\.(.*?))$)", ".ssl.cipher."},
      {"envoy_ssl_cipher_suite", R"(^cluster(?:\..*?)??\.ssl\.ciphers(\.(.*?))$)", ".ssl.ciphers."},
      {"envoy_grpc_bridge_service", R"(^cluster(?:\..*?)??\.grpc\.((.*?)\.))", ".grpc."},
      {"envoy_tcp_prefix", R"(^tcp\.((.*?)\.)\w+?$)", "tcp."},
      {"envoy_udp_prefix", R"(^udp\.((.*?)\.)\w+?$)", "udp."},
      {"envoy_clientssl_prefix", R"(^auth\.clientssl\.((.*?)\.)\w+?$)", "auth.clientssl."},
      {"envoy_ratelimit_prefix", R"(^ratelimit\.((.*?)\.)\w+?$)", "ratelimit."},
      {"envoy_cluster_name", R"(^cluster\.(([^\.]+)\.).*)", "cluster."},
      {"envoy_http_conn_manager_prefix", R"(^listener(?:\..*?)??\.http\.((.*?)\.))", ".http."},
      {"envoy_http_conn_manager_prefix", R"(^http\.((.*?)\.))", "http."},
      {"envoy_listener_address", R"(^listener\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.))",
       "listener."},
      {"envoy_virtual_host", R"(^vhost\.((.*?)\.))", "vhost."},
      {"envoy_mongo_prefix", R"(^mongo\.((.*?)\.))", "mongo."},
      {"envoy_rds_route_config", R"(^http(?:\..*?)??\.rds\.((.*?)\.)\w+?$)", ".rds."},
      {"envoy_worker_id", R"(^listener_manager\.((worker_\d+)\.))", "listener_manager.worker_"},
  };
  std::vector<Extractor> out;
  for (const auto& d : kDefs) {
    Extractor e{d.tag, d.substr, std::make_unique<RE2>(d.regex)};
    if (!e.re->ok()) continue;  // a typo here is caught by the unit tests
    out.push_back(std::move(e));
  }
  return out;
}

ExtractedName extractUncached(std::string_view name) {
  static const std::vector<Extractor> kExtractors = buildExtractors();
  ExtractedName result;
  if (labelledTags(name, &result)) return result;  // labelled families carry their labels (labelled.cc)
  std::vector<bool> removed(name.size(), false);
  re2::StringPiece input(name.data(), name.size());
  re2::StringPiece groups[3];
  for (const auto& e : kExtractors) {
    if (name.find(e.substr) == std::string_view::npos) continue;
    int n = std::min(e.re->NumberOfCapturingGroups(), 2);
    if (n < 1 || !e.re->Match(input, 0, input.size(), RE2::UNANCHORED, groups, n + 1)) continue;
    const re2::StringPiece& cut = groups[1];
    const re2::StringPiece& value = n >= 2 ? groups[2] : groups[1];
    if (cut.data() == nullptr) continue;
    // The same label twice (the two conn-manager forms) keeps the first.
    bool dup = false;
    for (const auto& t : result.tags) dup = dup || t.first == e.tag;
    if (dup) continue;
    result.tags.emplace_back(e.tag, std::string(value.data(), value.size()));
    size_t off = static_cast<size_t>(cut.data() - name.data());
    for (size_t i = off; i < off + cut.size(); ++i) removed[i] = true;
  }
  result.name.reserve(name.size());
  for (size_t i = 0; i < name.size(); ++i) {
    if (!removed[i]) result.name += name[i];
  }
  return result;
}

}  // namespace

ExtractedName extractTags(std::string_view stat_name) {
  // Names are stable across scrapes, so the regex work is done once per name.
  static std::mutex mu;
  static std::unordered_map<std::string, ExtractedName> cache;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(std::string(stat_name));
    if (it != cache.end()) return it->second;
  }
  ExtractedName r = extractUncached(stat_name);
  std::lock_guard<std::mutex> lock(mu);
  if (cache.size() > 200000) cache.clear();
  cache.emplace(std::string(stat_name), r);
  return r;
}

}  // namespace skiff::stats
