// Snapshot files for the test control plane: YAML/JSON (snapshot lists or Envoy config dumps) -> typed Anys.

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/json_util.h>
#include <yaml-cpp/yaml.h>

#include "skiff/api/api_types.h"
#include "skiff/common/json.h"
#include "skiff/xds/test_server.h"
#include "skiff/xds/types.h"

namespace skiff::xds {

namespace {

constexpr std::string_view kTypePrefix = "type.googleapis.com/";

const google::protobuf::Descriptor* findType(std::string_view type_url) {
  const size_t slash = type_url.rfind('/');
  const std::string name(slash == std::string_view::npos ? type_url : type_url.substr(slash + 1));
  return google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(name);
}

void jsonString(const std::string& s, std::string& out) {
  out.push_back('"');
  appendJsonEscaped(s, out);
  out.push_back('"');
}

bool isTypedStruct(std::string_view url) {
  return url.ends_with("udpa.type.v1.TypedStruct") || url.ends_with("xds.type.v3.TypedStruct");
}

// YAML -> JSON. A plain scalar that reads as a number becomes a JSON number unless `numbers_as_strings`
// (the fallback when a number landed in a string field). An Any of a type this build lacks is wrapped in a
// udpa.type.v1.TypedStruct so that it still travels.
void toJson(const YAML::Node& node, std::string& out, bool numbers_as_strings, bool in_struct = false) {
  static const std::regex kNumber(R"(^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$)");
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      const YAML::Node type = node["@type"];
      if (!in_struct && type && type.IsScalar() && !isTypedStruct(type.Scalar()) &&
          !findType(type.Scalar())) {
        out += "{\"@type\":\"type.googleapis.com/udpa.type.v1.TypedStruct\",\"typeUrl\":";
        jsonString(type.Scalar(), out);
        out += ",\"value\":{";
        bool first = true;
        for (const auto& kv : node) {
          if (kv.first.Scalar() == "@type") continue;
          if (!first) out.push_back(',');
          first = false;
          jsonString(kv.first.Scalar(), out);
          out.push_back(':');
          toJson(kv.second, out, false, true);
        }
        out += "}}";
        return;
      }
      out.push_back('{');
      bool first = true;
      for (const auto& kv : node) {
        if (!first) out.push_back(',');
        first = false;
        jsonString(kv.first.Scalar(), out);
        out.push_back(':');
        toJson(kv.second, out, numbers_as_strings, in_struct);
      }
      out.push_back('}');
      return;
    }
    case YAML::NodeType::Sequence: {
      out.push_back('[');
      bool first = true;
      for (const auto& item : node) {
        if (!first) out.push_back(',');
        first = false;
        toJson(item, out, numbers_as_strings, in_struct);
      }
      out.push_back(']');
      return;
    }
    case YAML::NodeType::Scalar: {
      const std::string& s = node.Scalar();
      if (node.Tag() != "!") {  // plain (unquoted)
        if (s == "true" || s == "false") return void(out += s);
        if (s == "null" || s == "~") return void(out += "null");
        if (!numbers_as_strings && std::regex_match(s, kNumber)) return void(out += s);
      }
      return jsonString(s, out);
    }
    default:
      out += "null";
  }
}

std::string nameOf(const google::protobuf::Message& message) {
  const auto* descriptor = message.GetDescriptor();
  const auto* field = descriptor->FindFieldByNumber(1);
  if (!field || field->type() != google::protobuf::FieldDescriptor::TYPE_STRING || field->is_repeated())
    return "";
  return message.GetReflection()->GetString(message, field);
}

struct Loader {
  LoadedSnapshot& out;

  void resource(const YAML::Node& node, std::string type_url, const std::string& where) {
    if (!node.IsMap()) {
      out.errors.push_back(where + ": expected a map");
      return;
    }
    if (node["@type"] && node["@type"].IsScalar()) type_url = node["@type"].Scalar();
    if (type_url.empty()) {
      out.errors.push_back(where + ": no \"@type\" and no list naming the type");
      return;
    }
    if (type_url.find('/') == std::string::npos) type_url = std::string(kTypePrefix) + type_url;
    const auto* descriptor = findType(type_url);
    if (!descriptor) {
      out.errors.push_back(where + ": unknown resource type " + type_url);
      return;
    }
    YAML::Node body = YAML::Clone(node);
    body.remove("@type");
    std::unique_ptr<google::protobuf::Message> message(
        google::protobuf::MessageFactory::generated_factory()->GetPrototype(descriptor)->New());
    google::protobuf::util::JsonParseOptions strict;
    google::protobuf::util::JsonParseOptions lenient;
    lenient.ignore_unknown_fields = true;
    std::string first_error;
    bool ok = false;
    for (bool numbers_as_strings : {false, true}) {
      std::string json;
      toJson(body, json, numbers_as_strings);
      message->Clear();
      auto status = google::protobuf::util::JsonStringToMessage(json, message.get(), strict);
      if (status.ok()) {
        ok = true;
        break;
      }
      if (first_error.empty()) first_error = std::string(status.message());
      message->Clear();
      if (google::protobuf::util::JsonStringToMessage(json, message.get(), lenient).ok()) {
        out.warnings.push_back(where + ": " + first_error + " (unknown fields dropped)");
        ok = true;
        break;
      }
    }
    if (!ok) {
      out.errors.push_back(where + ": " + first_error);
      return;
    }
    const std::string name = nameOf(*message);
    if (name.empty()) {
      out.errors.push_back(where + ": resource has no name");
      return;
    }
    google::protobuf::Any any;
    any.set_type_url(std::string(kTypePrefix) + descriptor->full_name());
    any.set_value(message->SerializeAsString());
    out.resources[any.type_url()][name] = std::move(any);
  }

  // The first of `keys` present in `node`.
  static YAML::Node field(const YAML::Node& node, std::initializer_list<const char*> keys) {
    for (const char* key : keys) {
      if (node.IsMap() && node[key]) return node[key];
    }
    return YAML::Node();
  }

  void list(const YAML::Node& items, std::string_view type_url, const std::string& where,
            std::initializer_list<const char*> inner = {}) {
    if (!items || !items.IsSequence()) return;
    size_t index = 0;
    for (const auto& item : items) {
      const std::string at = where + "[" + std::to_string(index++) + "]";
      YAML::Node node = item;
      for (const char* path : inner) {
        // A dotted path such as "active_state.listener" (snake_case; the lowerCamelCase twin is tried too).
        std::string snake(path);
        std::stringstream parts(snake);
        std::string part;
        while (node && std::getline(parts, part, '.')) {
          std::string camel;
          for (size_t i = 0; i < part.size(); ++i) {
            if (part[i] == '_' && i + 1 < part.size()) {
              camel.push_back(static_cast<char>(std::toupper(part[++i])));
            } else {
              camel.push_back(part[i]);
            }
          }
          node = field(node, {part.c_str(), camel.c_str()});
        }
      }
      if (!node) continue;  // e.g. a listener with only a warming or error state
      resource(node, std::string(type_url), at);
    }
  }

  void configDump(const YAML::Node& configs, const std::string& where) {
    for (const auto& config : configs) {
      const YAML::Node type = config["@type"];
      if (!type || !type.IsScalar()) continue;
      const std::string& t = type.Scalar();
      if (t.ends_with("ListenersConfigDump")) {
        list(field(config, {"dynamic_listeners", "dynamicListeners"}), kListenerType,
             where + ".dynamic_listeners", {"active_state.listener"});
      } else if (t.ends_with("ClustersConfigDump")) {
        list(field(config, {"dynamic_active_clusters", "dynamicActiveClusters"}), kClusterType,
             where + ".dynamic_active_clusters", {"cluster"});
      } else if (t.ends_with("RoutesConfigDump")) {
        list(field(config, {"dynamic_route_configs", "dynamicRouteConfigs"}), kRouteType,
             where + ".dynamic_route_configs", {"route_config"});
      } else if (t.ends_with("EndpointsConfigDump")) {
        list(field(config, {"dynamic_endpoint_configs", "dynamicEndpointConfigs"}), kEndpointType,
             where + ".dynamic_endpoint_configs", {"endpoint_config"});
      } else if (t.ends_with("SecretsConfigDump")) {
        list(field(config, {"dynamic_active_secrets", "dynamicActiveSecrets"}), kSecretType,
             where + ".dynamic_active_secrets", {"secret"});
      }
    }
  }

  void document(const YAML::Node& root, const std::string& where) {
    if (!root || root.IsNull()) return;
    if (!root.IsMap()) {
      out.errors.push_back(where + ": expected a map at the top");
      return;
    }
    if (root["configs"]) return configDump(root["configs"], where + ".configs");
    list(root["listeners"], kListenerType, where + ".listeners");
    list(root["clusters"], kClusterType, where + ".clusters");
    list(root["routes"], kRouteType, where + ".routes");
    list(root["endpoints"], kEndpointType, where + ".endpoints");
    list(root["secrets"], kSecretType, where + ".secrets");
    list(root["resources"], "", where + ".resources");
  }
};

}  // namespace

LoadedSnapshot loadSnapshotText(const std::string& text, const std::string& origin) {
  [[maybe_unused]] static const int linked = api::linkAllApiTypes();
  LoadedSnapshot out;
  Loader loader{out};
  try {
    for (const auto& doc : YAML::LoadAll(text)) loader.document(doc, origin);
  } catch (const YAML::Exception& e) {
    out.errors.push_back(origin + ": invalid YAML: " + e.what());
  }
  return out;
}

LoadedSnapshot loadSnapshot(const std::string& path) {
  namespace fs = std::filesystem;
  std::vector<fs::path> files;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    for (const auto& entry : fs::recursive_directory_iterator(path, ec)) {
      const auto ext = entry.path().extension();
      if (entry.is_regular_file() && (ext == ".yaml" || ext == ".yml" || ext == ".json"))
        files.push_back(entry);
    }
    std::sort(files.begin(), files.end());
  } else {
    files.emplace_back(path);
  }
  LoadedSnapshot all;
  for (const auto& file : files) {
    std::ifstream in(file);
    if (!in) {
      all.errors.push_back(file.string() + ": cannot read");
      continue;
    }
    std::stringstream text;
    text << in.rdbuf();
    LoadedSnapshot one = loadSnapshotText(text.str(), file.string());
    for (auto& [type, resources] : one.resources) {
      for (auto& [name, any] : resources) all.resources[type][name] = std::move(any);
    }
    all.errors.insert(all.errors.end(), one.errors.begin(), one.errors.end());
    all.warnings.insert(all.warnings.end(), one.warnings.begin(), one.warnings.end());
  }
  return all;
}

}  // namespace skiff::xds
