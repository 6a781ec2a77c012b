// The sandbox's internals shared by sandbox.cc and zygote.cc: a started tree and the helpers
// both build one with. Not part of the library's interface.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "sandbox/cgroup.h"
#include "sandbox/seccomp_policy.h"
#include "util/error.h"
#include "util/unique_fd.h"

namespace polyrun::sandbox {

struct Pipe {
  UniqueFd read, write;
};

inline Result<Pipe> MakePipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return SysFail("pipe2", "sandbox pipe");
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

inline void SetNonBlocking(int fd) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
}

// Seccomp programs are immutable; each distinct profile is built once.
Result<std::shared_ptr<const SeccompProgram>> CachedSeccomp(const std::vector<std::string>& extra,
                                                            bool fork_server = false);

// A started tree between Prepare and Supervise. Destroying one that was never supervised kills
// the tree, reaps its init and removes its cgroup.
struct StartedTree {
  pid_t pid = -1;  // the init's, as the host sees it (-1: a zygote's run, not our child)
  UniqueFd pid_fd;
  std::unique_ptr<Cgroup> cgroup;
  CgroupLimits cgroup_limits;  // those the cgroup has now
  UniqueFd stdin_w, out_r, err_r, st_r, fr_r;
  std::chrono::steady_clock::time_point start;
  size_t status_cap = 0;
  bool exec_stub = false;  // built by Sandbox::Prebuild: its program is polyrun-exec

  StartedTree() = default;
  StartedTree(const StartedTree&) = delete;
  StartedTree& operator=(const StartedTree&) = delete;
  ~StartedTree() {
    if (!pid_fd.valid()) return;
    ::syscall(SYS_pidfd_send_signal, pid_fd.get(), SIGKILL, nullptr, 0);
    siginfo_t info{};
    ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pid_fd.get()), &info, WEXITED);
    if (cgroup) [[maybe_unused]]
      auto removed = cgroup->Remove();
  }
};

}  // namespace polyrun::sandbox
