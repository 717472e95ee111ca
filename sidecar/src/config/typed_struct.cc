// TypedStruct unwrapping: a JSON Struct plus a type URL turned into the typed message it stands for.
#include "skiff/config/typed_struct.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/util/json_util.h>

#include <memory>
#include <string>

#include "udpa/type/v1/typed_struct.pb.h"
#include "xds/type/v3/typed_struct.pb.h"

namespace skiff::config {

bool unwrapTypedStruct(const google::protobuf::Any& in, google::protobuf::Any* out) {
  google::protobuf::Struct value;
  std::string type_url;
  udpa::type::v1::TypedStruct udpa;
  xds::type::v3::TypedStruct xds;
  if (in.Is<udpa::type::v1::TypedStruct>() && in.UnpackTo(&udpa)) {
    type_url = udpa.type_url();
    value = udpa.value();
  } else if (in.Is<xds::type::v3::TypedStruct>() && in.UnpackTo(&xds)) {
    type_url = xds.type_url();
    value = xds.value();
  } else {
    return false;
  }
  const std::string name = type_url.substr(type_url.rfind('/') + 1);
  const auto* descriptor = google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(name);
  if (descriptor == nullptr) return false;
  std::unique_ptr<google::protobuf::Message> message(
      google::protobuf::MessageFactory::generated_factory()->GetPrototype(descriptor)->New());
  std::string json;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  if (!google::protobuf::util::MessageToJsonString(value, &json).ok() ||
      !google::protobuf::util::JsonStringToMessage(json, message.get(), options).ok()) {
    return false;
  }
  out->PackFrom(*message);
  return true;
}

std::string wrappedTypeUrl(const google::protobuf::Any& in) {
  udpa::type::v1::TypedStruct udpa;
  if (in.Is<udpa::type::v1::TypedStruct>() && in.UnpackTo(&udpa)) return udpa.type_url();
  xds::type::v3::TypedStruct xds;
  if (in.Is<xds::type::v3::TypedStruct>() && in.UnpackTo(&xds)) return xds.type_url();
  return in.type_url();
}

}  // namespace skiff::config
