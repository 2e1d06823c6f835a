//===- Error.h - Errors of the LLVM-free half of tilec --------------------===//
//
// The runtime side (models/core, runtime/, tile-run) reports bad input by
// throwing tilec::Error with a message naming the file, tensor, field or option
// at fault. The compiler side is built without exceptions, so every entry point
// it calls has a non-throwing variant returning tilec::Expected<T>.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <fmt/format.h>

#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

namespace tilec {

class Error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args &&...args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

/// A value or an error message, for callers compiled without exceptions.
template <typename T> class Expected {
public:
  Expected(T value) : value_(std::move(value)) {}
  static Expected failure(std::string message) {
    Expected e;
    e.error_ = std::move(message);
    return e;
  }
  explicit operator bool() const { return value_.has_value(); }
  T &operator*() { return *value_; }
  const T &operator*() const { return *value_; }
  T *operator->() { return &*value_; }
  const T *operator->() const { return &*value_; }
  const std::string &error() const { return error_; }

private:
  Expected() = default;
  std::optional<T> value_;
  std::string error_;
};

/// Runs body(begin, end) over [0, n) split across the machine's cores when the
/// work is large; each index is handled by exactly one call, so results that
/// depend only on the index stay deterministic.
void parallelFor(int64_t n, int64_t workPerIndex,
                 const std::function<void(int64_t, int64_t)> &body);

} // namespace tilec
