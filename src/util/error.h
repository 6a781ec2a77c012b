#pragma once

#include <cerrno>
#include <expected>
#include <string>
#include <string_view>

namespace polyrun {

// Stable error codes. The numeric values and names are part of the public contract
// (they appear in JSON and logs); only append.
enum class Errc {
  kInvalidArgument,   // the caller's input is malformed (names the field)
  kNotFound,          // a named thing (file, language, cgroup) does not exist
  kSyscall,           // a system call failed; `syscall` and `sys_errno` say which and why
  kLimitUnavailable,  // a resource limit could not be applied or read back
  kUnsupported,       // the host lacks a mechanism (namespaces, cgroups, seccomp)
  kParse,             // a file (manifest, config) could not be parsed
  kInternal,          // a broken invariant on our side
  kTimeout,           // waited for something that did not happen in time
  kBusy,              // the thing is in use and cannot take more now (retry later)
  kConflict,          // the request clashes with something that exists (an exclusive label)
  kUnavailable,       // the service is stopping and takes nothing new
};

std::string_view ErrcName(Errc code);

// The error half of Result: a stable code, the failing syscall and errno (when one failed),
// and human context. message() renders all of it on one line.
struct Error {
  Errc code = Errc::kInternal;
  std::string context;
  std::string syscall;
  int sys_errno = 0;

  std::string message() const;
};

template <typename T>
using Result = std::expected<T, Error>;

// Helpers that build the unexpected half.
inline std::unexpected<Error> Fail(Errc code, std::string context) {
  return std::unexpected(Error{code, std::move(context), {}, 0});
}
// Captures errno at the call; call it right after the failing syscall.
inline std::unexpected<Error> SysFail(std::string syscall, std::string context, int err = errno) {
  return std::unexpected(Error{Errc::kSyscall, std::move(context), std::move(syscall), err});
}

}  // namespace polyrun
