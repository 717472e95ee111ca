// Programs and reads back our nftables tables over netlink (libnftnl + libmnl), no nft binary.
#pragma once

#include <string>
#include <vector>

#include "skiff/init/ruleset.h"

namespace skiff::init {

// Replaces our tables with `ruleset` in one batch: all or nothing. False + *error on failure.
bool applyRuleset(const Ruleset& ruleset, std::string* error);

// Removes every table in ownedTables(); succeeds when none exists.
bool cleanupRuleset(std::string* error);

// Compares the live rules of our tables with `ruleset`. Returns false on a netlink error; otherwise
// fills *drift with one line per difference (empty = in sync).
bool checkRuleset(const Ruleset& ruleset, std::vector<std::string>* drift, std::string* error);

}  // namespace skiff::init
