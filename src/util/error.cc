#include "util/error.h"

#include <cstring>

namespace polyrun {

std::string_view ErrcName(Errc code) {
  switch (code) {
    case Errc::kInvalidArgument:
      return "invalid_argument";
    case Errc::kNotFound:
      return "not_found";
    case Errc::kSyscall:
      return "syscall_failed";
    case Errc::kLimitUnavailable:
      return "limit_unavailable";
    case Errc::kUnsupported:
      return "unsupported";
    case Errc::kParse:
      return "parse_error";
    case Errc::kInternal:
      return "internal";
    case Errc::kTimeout:
      return "timeout";
    case Errc::kBusy:
      return "busy";
    case Errc::kConflict:
      return "conflict";
    case Errc::kUnavailable:
      return "unavailable";
  }
  return "internal";
}

std::string Error::message() const {
  std::string out = context;
  if (!syscall.empty()) {
    out += out.empty() ? "" : ": ";
    out += syscall;
    out += ": ";
    out += std::strerror(sys_errno);
  }
  return out;
}

}  // namespace polyrun
