#include "sandbox/host_check.h"

#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "sandbox/cgroup.h"
#include "util/files.h"
#include "util/strings.h"

namespace polyrun::sandbox {

namespace {

// Clones a child into the namespaces in `flags`; it exits at once. Returns 0 or errno.
int ProbeClone(unsigned long flags) {
  long pid = ::syscall(SYS_clone, flags | SIGCHLD, nullptr, nullptr, nullptr, 0);
  if (pid < 0) return errno;
  if (pid == 0) ::_exit(0);
  int status = 0;
  ::waitpid(static_cast<pid_t>(pid), &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : EINVAL;
}

}  // namespace

std::vector<HostCheck> CheckHost() {
  std::vector<HostCheck> out;
  utsname u{};
  ::uname(&u);
  out.push_back({"kernel", true, std::string(u.sysname) + " " + u.release + " " + u.machine, ""});
  out.push_back({"privileges", true,
                 ::geteuid() == 0 ? "running as root (uid 0)"
                                  : "running as uid " + std::to_string(::geteuid()),
                 ""});

  const std::pair<const char*, unsigned long> namespaces[] = {
      {"user namespace", CLONE_NEWUSER},
      {"pid namespace", CLONE_NEWUSER | CLONE_NEWPID},
      {"mount namespace", CLONE_NEWUSER | CLONE_NEWNS},
      {"network namespace", CLONE_NEWUSER | CLONE_NEWNET},
      {"ipc namespace", CLONE_NEWUSER | CLONE_NEWIPC},
      {"uts namespace", CLONE_NEWUSER | CLONE_NEWUTS},
      {"cgroup namespace", CLONE_NEWUSER | CLONE_NEWCGROUP},
  };
  for (const auto& [name, flags] : namespaces) {
    int err = ProbeClone(flags);
    HostCheck c{name, err == 0,
                err == 0 ? "clone(2) works" : std::string("clone(2): ") + std::strerror(err), ""};
    if (err != 0) {
      c.fix =
          "enable unprivileged user namespaces: sysctl kernel.unprivileged_userns_clone=1 "
          "and user.max_user_namespaces>0 (or run polyrun as root)";
    }
    out.push_back(std::move(c));
  }

  {
    int mode = ::prctl(PR_GET_SECCOMP, 0, 0, 0, 0);
    const scmp_version* v = seccomp_version();
    HostCheck c{"seccomp", mode >= 0, "", ""};
    c.detail = mode >= 0 ? "seccomp filters available; libseccomp " + std::to_string(v->major) +
                               "." + std::to_string(v->minor) + "." + std::to_string(v->micro)
                         : std::string("prctl(PR_GET_SECCOMP): ") + std::strerror(errno);
    if (mode < 0) c.fix = "use a kernel built with CONFIG_SECCOMP_FILTER";
    out.push_back(std::move(c));
  }

  {
    auto cg = DetectCgroups();
    HostCheck c{"cgroups", cg.has_value(), "", ""};
    if (cg) {
      c.detail = (*cg)->Describe() + "; memory, pids and CPU accounting";
    } else {
      c.detail = cg.error().message();
      c.fix =
          "mount cgroup2 with the memory and pids controllers (or v1 memory, pids, cpuacct) "
          "and run polyrun as root or in a delegated cgroup";
    }
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace polyrun::sandbox
