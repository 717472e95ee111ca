// /config_dump: builds Envoy's admin.v3 dumps from the bootstrap and applies ?resource, ?mask, ?name_regex
// and ?include_eds the way Envoy's ConfigDumpHandler does.
#include <google/protobuf/any.pb.h>
#include <google/protobuf/util/field_mask_util.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>
#include <re2/re2.h>

#include <memory>
#include <set>

#include "admin/handlers.h"
#include "envoy/admin/v3/config_dump.pb.h"
#include "envoy/admin/v3/config_dump_shared.pb.h"
#include "envoy/config/bootstrap/v3/bootstrap.pb.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"

namespace skiff::server::admin {

namespace {

namespace pb = google::protobuf;
namespace adminv3 = envoy::admin::v3;
using envoy::config::bootstrap::v3::Bootstrap;
using HttpConnectionManager =
    envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
using FieldMaskUtil = pb::util::FieldMaskUtil;

// Fields whose contents never leave the process (Envoy marks these `sensitive`).
const std::set<std::string>& sensitiveFields() {
  static const std::set<std::string> fields = {
      "envoy.extensions.transport_sockets.tls.v3.TlsCertificate.private_key",
      "envoy.extensions.transport_sockets.tls.v3.TlsCertificate.password",
      "envoy.extensions.transport_sockets.tls.v3.TlsSessionTicketKeys.keys",
      "envoy.extensions.transport_sockets.tls.v3.GenericSecret.secret",
  };
  return fields;
}

// Replaces every string and bytes leaf under `message` with "[redacted]" (when `all`), or only those under
// sensitive fields. Does not look inside Any.
void redact(pb::Message& message, bool all) {
  const pb::Reflection* reflection = message.GetReflection();
  std::vector<const pb::FieldDescriptor*> fields;
  reflection->ListFields(message, &fields);
  for (const pb::FieldDescriptor* field : fields) {
    const bool sensitive = all || sensitiveFields().count(field->full_name()) > 0;
    if (field->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      if (field->is_map()) continue;
      if (field->is_repeated()) {
        for (int i = 0; i < reflection->FieldSize(message, field); ++i) {
          redact(*reflection->MutableRepeatedMessage(&message, field, i), sensitive);
        }
      } else {
        redact(*reflection->MutableMessage(&message, field), sensitive);
      }
    } else if (sensitive && field->cpp_type() == pb::FieldDescriptor::CPPTYPE_STRING) {
      if (field->is_repeated()) {
        for (int i = 0; i < reflection->FieldSize(message, field); ++i) {
          reflection->SetRepeatedString(&message, field, i, "[redacted]");
        }
      } else {
        reflection->SetString(&message, field, "[redacted]");
      }
    }
  }
}

class NameMatcher {
 public:
  explicit NameMatcher(std::unique_ptr<re2::RE2> regex) : regex_(std::move(regex)) {}
  bool match(const std::string& name) const { return !regex_ || re2::RE2::FullMatch(name, *regex_); }

 private:
  std::unique_ptr<re2::RE2> regex_;
};

void addRouteConfigs(const envoy::config::listener::v3::FilterChain& chain, const NameMatcher& names,
                     const pb::Timestamp& updated, adminv3::RoutesConfigDump& dump) {
  for (const auto& filter : chain.filters()) {
    if (!filter.has_typed_config() || !filter.typed_config().Is<HttpConnectionManager>()) continue;
    HttpConnectionManager hcm;
    if (!filter.typed_config().UnpackTo(&hcm) || !hcm.has_route_config()) continue;
    if (!names.match(hcm.route_config().name())) continue;
    auto* entry = dump.add_static_route_configs();
    entry->mutable_route_config()->PackFrom(hcm.route_config());
    *entry->mutable_last_updated() = updated;
  }
}

// The dumps in Envoy's order: bootstrap, clusters, endpoints (with include_eds), listeners, scoped routes,
// routes, secrets.
std::vector<std::unique_ptr<pb::Message>> buildDumps(const Bootstrap& bootstrap, const pb::Timestamp& updated,
                                                     const NameMatcher& names, bool include_eds,
                                                     const AdminContext* context) {
  std::vector<std::unique_ptr<pb::Message>> dumps;
  const auto& resources = bootstrap.static_resources();

  auto boot = std::make_unique<adminv3::BootstrapConfigDump>();
  *boot->mutable_bootstrap() = bootstrap;
  redact(*boot->mutable_bootstrap(), false);
  *boot->mutable_last_updated() = updated;
  dumps.push_back(std::move(boot));

  auto clusters = std::make_unique<adminv3::ClustersConfigDump>();
  auto endpoints = std::make_unique<adminv3::EndpointsConfigDump>();
  for (const auto& cluster : resources.clusters()) {
    if (names.match(cluster.name())) {
      auto* entry = clusters->add_static_clusters();
      entry->mutable_cluster()->PackFrom(cluster);
      *entry->mutable_last_updated() = updated;
    }
    envoy::config::endpoint::v3::ClusterLoadAssignment cla = cluster.load_assignment();
    if (cla.cluster_name().empty()) cla.set_cluster_name(cluster.name());
    if (names.match(cla.cluster_name())) {
      endpoints->add_static_endpoint_configs()->mutable_endpoint_config()->PackFrom(cla);
    }
  }
  auto listeners = std::make_unique<adminv3::ListenersConfigDump>();
  auto routes = std::make_unique<adminv3::RoutesConfigDump>();
  if (context != nullptr) {
    context->dumpDynamicConfig([&names](const std::string& name) { return names.match(name); }, *clusters,
                               *endpoints, *listeners, *routes);
  }
  dumps.push_back(std::move(clusters));
  if (include_eds && (resources.clusters_size() > 0 || endpoints->dynamic_endpoint_configs_size() > 0)) {
    dumps.push_back(std::move(endpoints));
  }
  for (const auto& listener : resources.listeners()) {
    if (names.match(listener.name())) {
      auto* entry = listeners->add_static_listeners();
      entry->mutable_listener()->PackFrom(listener);
      *entry->mutable_last_updated() = updated;
    }
    for (const auto& chain : listener.filter_chains()) addRouteConfigs(chain, names, updated, *routes);
    if (listener.has_default_filter_chain()) {
      addRouteConfigs(listener.default_filter_chain(), names, updated, *routes);
    }
  }
  dumps.push_back(std::move(listeners));
  dumps.push_back(std::make_unique<adminv3::ScopedRoutesConfigDump>());
  dumps.push_back(std::move(routes));

  auto secrets = std::make_unique<adminv3::SecretsConfigDump>();
  for (const auto& secret : resources.secrets()) {
    if (!names.match(secret.name())) continue;
    auto copy = secret;
    redact(copy, false);
    auto* entry = secrets->add_static_secrets();
    entry->set_name(secret.name());
    *entry->mutable_last_updated() = updated;
    entry->mutable_secret()->PackFrom(copy);
  }
  if (context != nullptr) {
    context->dumpDynamicSecrets([&names](const std::string& name) { return names.match(name); }, *secrets);
    for (auto* list :
         {secrets->mutable_dynamic_active_secrets(), secrets->mutable_dynamic_warming_secrets()}) {
      for (auto& entry : *list) {
        envoy::extensions::transport_sockets::tls::v3::Secret secret;
        if (!entry.secret().UnpackTo(&secret)) continue;
        redact(secret, false);
        entry.mutable_secret()->PackFrom(secret);
      }
    }
  }
  dumps.push_back(std::move(secrets));
  return dumps;
}

bool validMask(const pb::FieldMask& mask, const pb::Descriptor* descriptor) {
  for (const auto& path : mask.paths()) {
    if (!FieldMaskUtil::GetFieldDescriptors(descriptor, path, nullptr)) return false;
  }
  return true;
}

// Validates, then trims; TrimMessage must not see an invalid path.
bool checkAndTrim(const pb::FieldMask& mask, pb::Message& message) {
  if (!validMask(mask, message.GetDescriptor())) return false;
  FieldMaskUtil::TrimMessage(mask, &message);
  return true;
}

// Masks one resource element, reaching through its single Any field: "cluster.name,last_updated" keeps
// `last_updated` and the `name` of the packed Cluster.
bool trimResource(const pb::FieldMask& mask, pb::Message& message) {
  const pb::Descriptor* descriptor = message.GetDescriptor();
  pb::FieldMask outer;
  pb::FieldMask inner;
  const pb::FieldDescriptor* any_field = nullptr;
  for (const std::string& path : mask.paths()) {
    const std::string head = path.substr(0, path.find('.'));
    const pb::FieldDescriptor* field = descriptor->FindFieldByName(head);
    const bool is_any = field != nullptr && !field->is_repeated() && field->message_type() != nullptr &&
                        field->message_type()->full_name() == "google.protobuf.Any";
    if (is_any && (any_field == nullptr || any_field == field)) {
      any_field = field;
      outer.add_paths(head);
      if (head.size() < path.size()) inner.add_paths(path.substr(head.size() + 1));
    } else {
      outer.add_paths(path);
    }
  }
  if (any_field != nullptr && inner.paths_size() > 0) {
    const pb::Reflection* reflection = message.GetReflection();
    if (reflection->HasField(message, any_field)) {
      auto* any = static_cast<pb::Any*>(reflection->MutableMessage(&message, any_field));
      std::string type_name = any->type_url().substr(any->type_url().rfind('/') + 1);
      const pb::Descriptor* inner_descriptor =
          pb::DescriptorPool::generated_pool()->FindMessageTypeByName(type_name);
      if (inner_descriptor == nullptr) return false;
      std::unique_ptr<pb::Message> inner_message(
          pb::MessageFactory::generated_factory()->GetPrototype(inner_descriptor)->New());
      if (!any->UnpackTo(inner_message.get()) || !checkAndTrim(inner, *inner_message)) return false;
      any->PackFrom(*inner_message);
    }
  }
  return checkAndTrim(outer, message);
}

}  // namespace

Response handleConfigDump(const Bootstrap& bootstrap, std::chrono::system_clock::time_point last_updated,
                          const Query& query, const AdminContext* context) {
  std::unique_ptr<re2::RE2> regex;
  if (const std::string* re = query.get("name_regex"); re != nullptr && !re->empty()) {
    re2::RE2::Options options;
    options.set_log_errors(false);
    regex = std::make_unique<re2::RE2>(*re, options);
    if (!regex->ok()) {
      return text(400,
                  "INVALID_ARGUMENT: Error while parsing name_regex from " + *re + ": " + regex->error());
    }
  }
  const NameMatcher names(std::move(regex));
  const pb::Timestamp updated = pb::util::TimeUtil::NanosecondsToTimestamp(
      std::chrono::duration_cast<std::chrono::nanoseconds>(last_updated.time_since_epoch()).count());
  auto dumps = buildDumps(bootstrap, updated, names, query.has("include_eds"), context);

  const std::string* mask_text = query.get("mask");
  pb::FieldMask mask;
  if (mask_text != nullptr) FieldMaskUtil::FromString(*mask_text, &mask);

  adminv3::ConfigDump dump;
  if (const std::string* resource = query.get("resource"); resource != nullptr) {
    bool found = false;
    for (auto& message : dumps) {
      const pb::FieldDescriptor* field = message->GetDescriptor()->FindFieldByName(*resource);
      if (field == nullptr) continue;
      if (!field->is_repeated() || field->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE) {
        return text(400, field->name() + " is not a repeated field. Use ?mask=" + field->name() +
                             " to get only this field");
      }
      const pb::Reflection* reflection = message->GetReflection();
      for (int i = 0; i < reflection->FieldSize(*message, field); ++i) {
        pb::Message* element = reflection->MutableRepeatedMessage(message.get(), field, i);
        if (mask_text != nullptr && !trimResource(mask, *element)) {
          return text(400, "FieldMask " + *mask_text + " could not be successfully used.");
        }
        dump.add_configs()->PackFrom(*element);
      }
      found = true;
      break;
    }
    if (!found) return text(404, *resource + " not found in config dump");
  } else {
    for (auto& message : dumps) {
      // A mask names fields of one dump type; the others are left out rather than failing.
      if (mask_text != nullptr && !checkAndTrim(mask, *message)) continue;
      dump.add_configs()->PackFrom(*message);
    }
    if (mask_text != nullptr && dump.configs().empty()) {
      return text(400, "FieldMask " + *mask_text + " could not be successfully applied to any configs.");
    }
  }

  pb::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  std::string out;
  auto status = pb::util::MessageToJsonString(dump, &out, options);
  if (!status.ok()) return text(500, "config_dump: " + std::string(status.message()) + "\n");
  return json(200, std::move(out));
}

}  // namespace skiff::server::admin
