#pragma once
// Error values for skiff-certs: every failure carries a message naming the file and the reason.
#include <optional>
#include <string>
#include <utility>

namespace skiff::certs {

// Success, or an error message.
class Status {
 public:
  Status() = default;
  static Status error(std::string message) { return Status(std::move(message)); }
  bool ok() const { return !message_.has_value(); }
  const std::string& message() const { return *message_; }

 private:
  explicit Status(std::string message) : message_(std::move(message)) {}
  std::optional<std::string> message_;
};

// A value or an error message.
template <typename T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Status status)                          // NOLINT(google-explicit-constructor)
      : status_(status.ok() ? Status::error("internal error: no value and no error") : std::move(status)) {}
  bool ok() const { return value_.has_value(); }
  const std::string& error() const { return status_.message(); }
  Status status() const { return ok() ? Status() : status_; }
  T& value() { return *value_; }
  const T& value() const { return *value_; }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace skiff::certs
