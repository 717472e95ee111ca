// The process-wide table of network filter factories, filled at start-up with the HTTP ones.
#include <vector>

#include "filters/network/network_filter.h"

namespace skiff::filters::network {
namespace {
std::vector<FilterRegistration>& table() {
  static std::vector<FilterRegistration> t;
  return t;
}
}  // namespace

void registerNetworkFilter(FilterRegistration registration) {
  for (auto& r : table()) {
    if (r.type_url == registration.type_url) {
      r = std::move(registration);
      return;
    }
  }
  table().push_back(std::move(registration));
}

const FilterRegistration* findNetworkFilter(std::string_view type_url, std::string_view name) {
  for (const auto& r : table()) {
    if (!type_url.empty() ? r.type_url == type_url : r.name == name) return &r;
  }
  return nullptr;
}

}  // namespace skiff::filters::network
