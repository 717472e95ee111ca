// RFC 6902 JSON Patch: the difference between a pod before and after injection, as the webhook returns it.
#pragma once

#include "skiff/inject/value.h"

namespace skiff::inject {

// Operations (add/remove/replace) that turn `from` into `to`. Objects are diffed key by key; a list that only
// grew at its end gets adds, any other changed list is replaced whole.
Value jsonPatchDiff(const Value& from, const Value& to);

// Applies add/remove/replace operations (enough to check our own patches). False with a message on failure.
bool applyJsonPatch(const Value& patch, Value* doc, std::string* error);

}  // namespace skiff::inject
