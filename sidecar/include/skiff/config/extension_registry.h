#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace skiff::config {

// What kind of extension point an extension plugs into.
enum class Category {
  kNetworkFilter,
  kHttpFilter,
  kListenerFilter,
  kAccessLogger,
  kTransportSocket,
  kCluster,
  kOther,
};

std::string_view categoryName(Category category);

struct Extension {
  Category category;
  std::string name;      // well-known name, e.g. "envoy.filters.http.router"
  std::string type_url;  // full type URL, e.g. "type.googleapis.com/envoy...Router"
};

// Process-wide table of implemented extensions. The core's own extensions are registered
// on first use; filter code adds more at start-up. Registering the same type URL again in the
// same category replaces the entry's name; in another category it adds an entry (a type may be
// both an HTTP and a network filter, as Istio's stats.PluginConfig is).
void registerExtension(Category category, std::string_view name, std::string_view type_url);

// Matches on the type name after the last '/', so "type.googleapis.com/x.Y" and "x.Y" are equal.
// The returned pointer stays valid for the life of the process.
const Extension* findByTypeUrl(std::string_view type_url);
// The entry of `type_url` in `category`, or nullptr.
const Extension* findByTypeUrl(std::string_view type_url, Category category);
const Extension* findByName(std::string_view name);

// Everything registered so far (a copy; for `--mode validate` and admin output).
std::vector<Extension> registeredExtensions();

// "type.googleapis.com/a.b.C" -> "a.b.C".
std::string_view typeNameOfUrl(std::string_view type_url);

}  // namespace skiff::config
