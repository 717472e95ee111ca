// config::readDataSource: each specifier, the unset cases, and errors that name the field.
#include "skiff/config/data_source.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

namespace skiff::config {
namespace {

using envoy::config::core::v3::DataSource;

std::string errorOf(const DataSource& ds, const std::string& field, IfUnset if_unset = IfUnset::kEmpty) {
  try {
    readDataSource(ds, field, if_unset);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no error)";
}

class DataSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("skiff_ds_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& content) {
    const auto path = dir_ / name;
    std::ofstream(path, std::ios::binary) << content;
    return path.string();
  }
  std::filesystem::path dir_;
};

TEST_F(DataSourceTest, InlineStringAndBytes) {
  DataSource ds;
  ds.set_inline_string("hello");
  EXPECT_EQ(readDataSource(ds, "f"), "hello");
  EXPECT_EQ(dataSourceOrigin(ds), "<inline>");
  ds.set_inline_bytes(std::string("a\0b", 3));
  EXPECT_EQ(readDataSource(ds, "f"), std::string("a\0b", 3));
  ds.set_inline_string("");
  EXPECT_EQ(readDataSource(ds, "f", IfUnset::kError), "") << "set but empty is not unset";
}

TEST_F(DataSourceTest, FileReadWholeIncludingBinary) {
  std::string content(100000, 'x');
  content[5] = '\0';
  DataSource ds;
  ds.set_filename(write("big.bin", content));
  EXPECT_EQ(readDataSource(ds, "f"), content);
  EXPECT_EQ(dataSourceOrigin(ds), ds.filename());
  ds.set_filename(write("empty", ""));
  EXPECT_EQ(readDataSource(ds, "f"), "");
}

TEST_F(DataSourceTest, FileErrorsNameTheField) {
  DataSource ds;
  ds.set_filename((dir_ / "missing.pem").string());
  const std::string missing = errorOf(ds, "tls.certificate_chain");
  EXPECT_EQ(missing.rfind("tls.certificate_chain.filename: cannot read '", 0), 0u) << missing;
  EXPECT_NE(missing.find("missing.pem"), std::string::npos) << missing;
  EXPECT_NE(missing.find("No such file"), std::string::npos) << missing;

  ds.set_filename(dir_.string());
  const std::string directory = errorOf(ds, "x");
  EXPECT_EQ(directory.rfind("x.filename: ", 0), 0u) << directory;
  EXPECT_NE(directory.find("directory"), std::string::npos) << directory;

  ds.set_filename("");
  EXPECT_EQ(errorOf(ds, "x"), "x.filename: empty file name");
}

TEST_F(DataSourceTest, EnvironmentVariable) {
  const std::string name = "SKIFF_DS_TEST_" + std::to_string(::getpid());
  DataSource ds;
  ds.set_environment_variable(name);
  EXPECT_EQ(errorOf(ds, "lua.source_code"),
            "lua.source_code.environment_variable: '" + name + "' is not set");
  ::setenv(name.c_str(), "from env", 1);
  EXPECT_EQ(readDataSource(ds, "lua.source_code"), "from env");
  EXPECT_EQ(dataSourceOrigin(ds), "$" + name);
  ::unsetenv(name.c_str());
  ds.set_environment_variable("");
  EXPECT_EQ(errorOf(ds, "v"), "v.environment_variable: empty variable name");
}

TEST_F(DataSourceTest, Unset) {
  DataSource ds;
  EXPECT_EQ(readDataSource(ds, "f"), "");
  EXPECT_EQ(dataSourceOrigin(ds), "");
  EXPECT_EQ(errorOf(ds, "wasm.code.local", IfUnset::kError),
            "wasm.code.local: no filename, inline_string, inline_bytes or environment_variable given");
}

}  // namespace
}  // namespace skiff::config
