// Errors as values. A Status is an errno value (0 = ok) and a message for
// humans; Result<T> is a T or a non-ok Status. Both are [[nodiscard]], so an
// ignored error is a compiler warning (an error in CI).
//
// Thread-safety: plain values; distinct objects may be used concurrently.
#pragma once

#include <cassert>
#include <cerrno>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include <fmt/format.h>

namespace frugalfs {

class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status Ok() { return Status(); }
  // code is an errno value (EIO, ENOENT, ENOSPC, EINVAL, ...); must not be 0.
  static Status Error(int code, std::string message);

  bool ok() const { return code_ == 0; }
  int code() const { return code_; }
  const std::string& message() const { return message_; }
  // "message: strerror(code)", for logs and command-line errors.
  std::string ToString() const;
  // The same error with "prefix: " put before its message.
  Status WithContext(std::string_view prefix) const;
  // Explicitly discards the status (for best-effort cleanup paths).
  void IgnoreError() const {}

 private:
  Status(int code, std::string message) : code_(code), message_(std::move(message)) {}
  int code_ = 0;
  std::string message_;
};

// Status::Error with a fmt format string.
template <typename... Args>
Status Errorf(int code, fmt::format_string<Args...> format, Args&&... args) {
  return Status::Error(code, fmt::format(format, std::forward<Args>(args)...));
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT: implicit by design
    assert(!std::get<Status>(v_).ok() && "a Result needs a value or an error");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  // Ok when a value is held.
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(v_); }

  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace frugalfs

// Returns the status of expr from the enclosing function if it is an error.
#define FRUGAL_TRY(expr)                          \
  do {                                            \
    ::frugalfs::Status frugal_try_s_ = (expr);    \
    if (!frugal_try_s_.ok()) return frugal_try_s_; \
  } while (0)

#define FRUGAL_CONCAT_INNER_(a, b) a##b
#define FRUGAL_CONCAT_(a, b) FRUGAL_CONCAT_INNER_(a, b)
// auto x = ...; from a Result, or returns its error from the enclosing function.
#define FRUGAL_ASSIGN_OR_RETURN(lhs, expr) \
  FRUGAL_ASSIGN_OR_RETURN_IMPL_(FRUGAL_CONCAT_(frugal_result_, __LINE__), lhs, expr)
#define FRUGAL_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return tmp.status();                 \
  lhs = std::move(tmp).value()
