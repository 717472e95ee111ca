// The one DataSource reader: files, inline strings/bytes and environment variables, with errors naming the
// field.
#include "skiff/config/data_source.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace skiff::config {

namespace {

using envoy::config::core::v3::DataSource;

[[noreturn]] void fail(const std::string& field, const std::string& what) {
  throw std::invalid_argument(field + ": " + what);
}

std::string readFile(const std::string& name, const std::string& field) {
  if (name.empty()) fail(field, "empty file name");
  struct stat st {};
  if (::stat(name.c_str(), &st) != 0) fail(field, "cannot read '" + name + "': " + std::strerror(errno));
  if (S_ISDIR(st.st_mode)) fail(field, "cannot read '" + name + "': it is a directory");
  std::ifstream in(name, std::ios::binary);
  if (!in) fail(field, "cannot read '" + name + "': " + std::strerror(errno));
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) fail(field, "cannot read '" + name + "': read error");
  return std::move(out).str();
}

}  // namespace

std::string readDataSource(const DataSource& source, const std::string& field, IfUnset if_unset) {
  switch (source.specifier_case()) {
    case DataSource::kFilename:
      return readFile(source.filename(), field + ".filename");
    case DataSource::kInlineString:
      return source.inline_string();
    case DataSource::kInlineBytes:
      return source.inline_bytes();
    case DataSource::kEnvironmentVariable: {
      const std::string& name = source.environment_variable();
      if (name.empty()) fail(field + ".environment_variable", "empty variable name");
      const char* value = std::getenv(name.c_str());
      if (value == nullptr) fail(field + ".environment_variable", "'" + name + "' is not set");
      return value;
    }
    case DataSource::SPECIFIER_NOT_SET:
      break;
  }
  if (if_unset == IfUnset::kError) {
    fail(field, "no filename, inline_string, inline_bytes or environment_variable given");
  }
  return {};
}

std::string dataSourceOrigin(const DataSource& source) {
  switch (source.specifier_case()) {
    case DataSource::kFilename:
      return source.filename();
    case DataSource::kInlineString:
    case DataSource::kInlineBytes:
      return "<inline>";
    case DataSource::kEnvironmentVariable:
      return "$" + source.environment_variable();
    case DataSource::SPECIFIER_NOT_SET:
      break;
  }
  return {};
}

}  // namespace skiff::config
