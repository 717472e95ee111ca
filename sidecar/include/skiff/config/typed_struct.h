#pragma once

#include <google/protobuf/any.pb.h>

#include <string>

namespace skiff::config {

// A udpa/xds TypedStruct (how istiod and other control planes wrap filter configs as JSON) as an Any of the
// type it names. False when `in` is not a TypedStruct or this build lacks the named type.
bool unwrapTypedStruct(const google::protobuf::Any& in, google::protobuf::Any* out);

// The type URL a TypedStruct names, or `in`'s own type URL when it is not one: for error messages.
std::string wrappedTypeUrl(const google::protobuf::Any& in);

}  // namespace skiff::config
