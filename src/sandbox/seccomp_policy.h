#pragma once

#include <linux/filter.h>

#include <string>
#include <vector>

#include "util/error.h"

namespace polyrun::sandbox {

// A compiled seccomp-BPF program, ready for prctl(PR_SET_SECCOMP) in the child without any
// allocation there.
struct SeccompProgram {
  std::vector<sock_filter> filter;
  sock_fprog fprog() const {
    return sock_fprog{static_cast<unsigned short>(filter.size()),
                      const_cast<sock_filter*>(filter.data())};
  }
};

// Builds the default-deny allow-list profile (EPERM for anything not allowed), plus
// `extra_allowed` syscall names from a language manifest. The program first kills the process
// for any architecture but x86_64 and for x32 syscall numbers. Unknown names in extra_allowed
// are an error naming them. Denied with a specific errno regardless of the allow-list:
// clone3 (ENOSYS, so libc falls back to clone), io_uring_* (ENOSYS, so runtimes fall back),
// clone/unshare with namespace flags, TIOCSTI/TIOCLINUX ioctls (judged on the low 32 bits of
// the request, which is all the kernel reads).
//
// `fork_server`: the profile of a zygote (docs/performance.md), which builds each run's
// namespaces itself: the default one plus unshare, setns, mount and capset. Every run it forks
// stacks the default profile on top.
Result<SeccompProgram> BuildSeccompProgram(const std::vector<std::string>& extra_allowed,
                                           bool fork_server = false);

// The syscalls the profile always refuses; tests probe each of these.
const std::vector<std::string>& DeniedSyscalls();

}  // namespace polyrun::sandbox
