// Istio workload identity: node metadata → WorkloadInfo, the local node, and the exchange header codec.
#include "filters/istio/workload.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/util/json_util.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <unordered_map>
#include <vector>

extern char** environ;

namespace skiff::filters::istio {
namespace {

constexpr std::string_view kDefaultExchangeKeys =
    "NAME,NAMESPACE,INSTANCE_IPS,LABELS,OWNER,PLATFORM_METADATA,WORKLOAD_NAME,MESH_ID,SERVICE_ACCOUNT,"
    "CLUSTER_ID";

std::string stringField(const google::protobuf::Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  if (it == s.fields().end() || it->second.kind_case() != google::protobuf::Value::kStringValue) return {};
  return it->second.string_value();
}

// LABELS as a Struct: a Struct value, or a JSON object in a string (ISTIO_META_LABELS).
google::protobuf::Struct labelsOf(const google::protobuf::Struct& metadata) {
  google::protobuf::Struct labels;
  auto it = metadata.fields().find("LABELS");
  if (it == metadata.fields().end()) return labels;
  if (it->second.has_struct_value()) return it->second.struct_value();
  if (it->second.kind_case() == google::protobuf::Value::kStringValue) {
    google::protobuf::util::JsonParseOptions options;
    options.ignore_unknown_fields = true;
    if (!google::protobuf::util::JsonStringToMessage(it->second.string_value(), &labels, options).ok())
      labels.Clear();
  }
  return labels;
}

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64Encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i < in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    if (i + 1 < in.size()) v |= uint8_t(in[i + 1]) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < in.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

// Standard alphabet, padding optional (Istio decodes without requiring it). False on any other byte.
bool base64Decode(std::string_view in, std::string* out) {
  static const std::array<int8_t, 256> kTable = [] {
    std::array<int8_t, 256> t{};
    t.fill(-1);
    for (int i = 0; i < 64; ++i) t[static_cast<uint8_t>(kAlphabet[i])] = static_cast<int8_t>(i);
    return t;
  }();
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  if (in.size() % 4 == 1) return false;
  out->clear();
  out->reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    const int8_t v = kTable[static_cast<uint8_t>(c)];
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return true;
}

// ISTIO_META_<K>=v → <K>: "v"; ISTIO_METAJSON_<K>=json → <K>: parsed (else the string). Existing keys win.
void foldEnvironment(google::protobuf::Struct& metadata) {
  constexpr std::string_view kMeta = "ISTIO_META_", kMetaJson = "ISTIO_METAJSON_";
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view entry(*e);
    const size_t eq = entry.find('=');
    if (eq == std::string_view::npos) continue;
    std::string_view name = entry.substr(0, eq), value = entry.substr(eq + 1);
    const bool json = name.starts_with(kMetaJson);
    if (!json && !name.starts_with(kMeta)) continue;
    const std::string key(name.substr(json ? kMetaJson.size() : kMeta.size()));
    if (key.empty() || metadata.fields().count(key)) continue;
    google::protobuf::Value v;
    if (!json || !google::protobuf::util::JsonStringToMessage(std::string(value), &v).ok())
      v.set_string_value(std::string(value));
    (*metadata.mutable_fields())[key] = std::move(v);
  }
}

// Read on every request: an atomic pointer, set once at start-up (later values replace it; earlier ones are
// kept alive because filters built before may hold references).
std::mutex g_local_mu;
std::atomic<LocalNode*> g_local{nullptr};

}  // namespace

WorkloadInfo workloadFromMetadata(const google::protobuf::Struct& metadata) {
  WorkloadInfo w;
  w.workload_name = stringField(metadata, "WORKLOAD_NAME");
  w.namespace_name = stringField(metadata, "NAMESPACE");
  w.cluster_id = stringField(metadata, "CLUSTER_ID");
  const google::protobuf::Struct labels = labelsOf(metadata);
  w.app = stringField(labels, "app");
  if (w.app.empty()) w.app = stringField(labels, "app.kubernetes.io/name");
  w.version = stringField(labels, "version");
  if (w.version.empty()) w.version = stringField(labels, "app.kubernetes.io/version");
  w.canonical_service = stringField(labels, "service.istio.io/canonical-name");
  w.canonical_revision = stringField(labels, "service.istio.io/canonical-revision");
  return w;
}

std::string exchangeValue(const google::protobuf::Struct& metadata) {
  std::string keys = stringField(metadata, "EXCHANGE_KEYS");
  if (keys.empty()) keys = kDefaultExchangeKeys;
  google::protobuf::Struct out;
  size_t start = 0;
  while (start <= keys.size()) {
    size_t end = keys.find(',', start);
    if (end == std::string::npos) end = keys.size();
    std::string key = keys.substr(start, end - start);
    key.erase(0, key.find_first_not_of(' '));
    key.erase(key.find_last_not_of(' ') + 1);
    if (auto it = metadata.fields().find(key); !key.empty() && it != metadata.fields().end()) {
      (*out.mutable_fields())[key] = it->second;
    }
    start = end + 1;
  }
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    out.SerializeToCodedStream(&coded);
  }
  return base64Encode(bytes);
}

WorkloadInfoConstSharedPtr decodePeerMetadata(std::string_view header_value) {
  std::string bytes;
  if (header_value.empty() || !base64Decode(header_value, &bytes)) return nullptr;
  google::protobuf::Struct metadata;
  if (!metadata.ParseFromString(bytes)) return nullptr;
  return std::make_shared<const WorkloadInfo>(workloadFromMetadata(metadata));
}

WorkloadInfoConstSharedPtr cachedPeerMetadata(std::string_view header_value) {
  // A mesh has few distinct peers per proxy; a full cache is dropped rather than managed as an LRU.
  constexpr size_t kMaxEntries = 1024;
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  thread_local std::unordered_map<std::string, WorkloadInfoConstSharedPtr, Hash, std::equal_to<>> cache;
  if (auto it = cache.find(header_value); it != cache.end()) return it->second;
  auto peer = decodePeerMetadata(header_value);
  if (!peer) return nullptr;
  if (cache.size() >= kMaxEntries) cache.clear();
  cache.emplace(std::string(header_value), peer);
  return peer;
}

void setLocalNode(const envoy::config::core::v3::Node& node) {
  auto* local = new LocalNode();
  local->id = node.id();
  local->metadata = node.metadata();
  foldEnvironment(local->metadata);
  local->workload = workloadFromMetadata(local->metadata);
  local->exchange_value = exchangeValue(local->metadata);
  std::lock_guard<std::mutex> lock(g_local_mu);
  g_local.store(local, std::memory_order_release);
}

const LocalNode& localNode() {
  if (LocalNode* local = g_local.load(std::memory_order_acquire)) return *local;
  std::lock_guard<std::mutex> lock(g_local_mu);
  if (g_local.load(std::memory_order_relaxed) == nullptr) {
    auto* local = new LocalNode();
    foldEnvironment(local->metadata);
    local->workload = workloadFromMetadata(local->metadata);
    local->exchange_value = exchangeValue(local->metadata);
    g_local.store(local, std::memory_order_release);
  }
  return *g_local.load(std::memory_order_acquire);
}

}  // namespace skiff::filters::istio
