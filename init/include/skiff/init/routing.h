// Policy routing for TPROXY mode over rtnetlink (libmnl): fwmark -> table, "local default dev lo".
#pragma once

#include <cstdint>
#include <string>

namespace skiff::init {

// Installs, for IPv4 and IPv6, "fwmark <mark> lookup <table>" and "local default dev lo table <table>".
// Re-running replaces what an earlier run installed. IPv6 is skipped when the kernel lacks it.
bool applyPolicyRouting(uint32_t mark, uint32_t table, std::string* error);

// Removes both; succeeds when they are already gone.
bool cleanupPolicyRouting(uint32_t mark, uint32_t table, std::string* error);

}  // namespace skiff::init
