// The code that runs in the cloned child: it becomes PID 1 of the sandbox's PID namespace,
// builds the filesystem, drops every privilege, starts the user's program as PID 2, reaps
// orphans, forwards signals and reports the program's wait status.
//
// Contract: this runs right after clone(2) in a copy of a possibly multi-threaded process, so
// it must not allocate, take locks or use anything that relies on the calling thread's glibc
// state (no malloc, no stdio, no pthread, no raise/abort, no glibc fork()). Everything it needs
// was prepared in the ChildPlan by the parent.
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/mount.h>
#include <linux/seccomp.h>
#include <linux/securebits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "sandbox/child_plan.h"
#include "sandbox/loopback.h"
#include "util/files.h"

namespace polyrun::sandbox {

namespace {

// Fixed descriptor numbers inside the child.
constexpr int kStatusFd = 3;
constexpr int kSyncFd = 4;
constexpr int kFramesFd = 5;         // the init's copy of the optional frames pipe
constexpr int kProgramFramesFd = 3;  // where the program finds it

void CopyStr(char* dst, size_t cap, const char* a, const char* b = nullptr) {
  size_t i = 0;
  for (const char* s : {a, b}) {
    if (s == nullptr) continue;
    while (*s != '\0' && i + 1 < cap) dst[i++] = *s++;
  }
  dst[i] = '\0';
}

[[noreturn]] void Die(const char* what, const char* path, int err,
                      InitReport::Kind kind = InitReport::kSetupFailed) {
  InitReport report;
  report.kind = kind;
  report.err = err;
  CopyStr(report.what, sizeof report.what, what, path);
  WriteAll(kStatusFd, &report, sizeof report);
  ::_exit(127);
}

long SysMountSetattr(const char* path, unsigned flags, uint64_t set) {
  mount_attr attr{};
  attr.attr_set = set;
  return ::syscall(SYS_mount_setattr, AT_FDCWD, path, flags, &attr, sizeof attr);
}

void RunStep(const SetupStep& s) {
  const char* t = s.target.c_str();
  switch (s.kind) {
    case SetupStep::kMkdir:
      if (::mkdir(t, s.mode) != 0 && errno != EEXIST) Die("mkdir ", t, errno);
      return;
    case SetupStep::kTmpfs:
      if (::mount("tmpfs", t, "tmpfs", s.flags, s.data.c_str()) != 0) Die("mount tmpfs ", t, errno);
      return;
    case SetupStep::kBind:
      if (::mount(s.source.c_str(), t, nullptr, MS_BIND | MS_REC, nullptr) != 0) {
        Die("bind mount ", t, errno);
      }
      if (SysMountSetattr(t, AT_RECURSIVE,
                          MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV) != 0) {
        Die("mount_setattr read-only ", t, errno);
      }
      return;
    case SetupStep::kDeviceBind:
      if (::mount(s.source.c_str(), t, nullptr, MS_BIND, nullptr) != 0)
        Die("bind device ", t, errno);
      if (SysMountSetattr(t, 0, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC) != 0) {
        Die("mount_setattr device ", t, errno);
      }
      return;
    case SetupStep::kProc:
      if (::mount("proc", t, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
        Die("mount proc ", t, errno);
      }
      return;
    case SetupStep::kSymlink:
      if (::symlink(s.source.c_str(), t) != 0) Die("symlink ", t, errno);
      return;
    case SetupStep::kTouch:
    case SetupStep::kFile: {
      int fd = ::open(t, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, s.mode);
      if (fd < 0) Die("create ", t, errno);
      if (s.kind == SetupStep::kFile && !WriteAll(fd, s.content, s.size)) Die("write ", t, errno);
      ::close(fd);
      return;
    }
    case SetupStep::kReadOnly:
      if (SysMountSetattr(t, 0, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV) != 0) {
        Die("mount_setattr read-only ", t, errno);
      }
      return;
  }
}

// What a fork server keeps (in the sandbox's user namespace only): enough to build each run's
// namespaces and mounts, and CAP_SETPCAP so that each run can drop all of them for good.
constexpr int kForkServerCaps[] = {CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_SETPCAP};

bool ForkServerCap(int cap) {
  for (int kept : kForkServerCaps) {
    if (cap == kept) return true;
  }
  return false;
}

void DropPrivileges(const ChildPlan& plan) {
  // Lock the uid 0 special cases off for good before giving up CAP_SETPCAP. A fork server's
  // runs lock the rest themselves (languages/python/zygote.py).
  unsigned long bits =
      SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP | SECBIT_NO_SETUID_FIXUP_LOCKED;
  if (!plan.fork_server) {
    bits |=
        SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
  }
  if (::prctl(PR_SET_SECUREBITS, bits) != 0) Die("prctl PR_SET_SECUREBITS", nullptr, errno);
  for (int cap = 0; cap <= 63; ++cap) {
    if (plan.fork_server && ForkServerCap(cap)) continue;
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) {
      Die("prctl PR_CAPBSET_DROP", nullptr, errno);
    }
  }
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) {
    Die("prctl PR_CAP_AMBIENT_CLEAR_ALL", nullptr, errno);
  }
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (plan.fork_server) {
    // Permitted, effective and inheritable: an ambient capability must be in both of the last.
    for (int cap : kForkServerCaps) {
      data[0].permitted |= 1u << cap;  // all three are below 32
      data[0].effective |= 1u << cap;
      data[0].inheritable |= 1u << cap;
    }
  }
  if (::syscall(SYS_capset, &header, data) != 0) Die("capset", nullptr, errno);
  if (plan.fork_server) {
    for (int cap : kForkServerCaps) {
      if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) != 0) {
        Die("prctl PR_CAP_AMBIENT_RAISE", nullptr, errno);
      }
    }
  }
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    Die("prctl PR_SET_NO_NEW_PRIVS", nullptr, errno);
  // Not dumpable: the program (same uid) cannot open /proc/1/mem or ptrace-attach to us.
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) Die("prctl PR_SET_DUMPABLE", nullptr, errno);
  if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &plan.seccomp, 0, 0) != 0) {
    Die("prctl PR_SET_SECCOMP", nullptr, errno);
  }
}

void SendArtifacts(const ChildPlan& plan) {
  uint64_t budget = plan.collect_max;
  char buf[16384];
  for (const char* name : plan.collect) {
    if (name == nullptr) break;
    // Inside the sandbox, so a symlink could only point at what the program can see anyway;
    // O_NOFOLLOW and the regular-file check keep the artifact an artifact.
    int fd = ::open(name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) continue;
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        static_cast<uint64_t>(st.st_size) > budget) {
      ::close(fd);
      continue;
    }
    ArtifactHeader h{static_cast<uint32_t>(std::strlen(name)), 0,
                     static_cast<uint64_t>(st.st_size)};
    budget -= h.size;
    if (!WriteAll(kStatusFd, &h, sizeof h) || !WriteAll(kStatusFd, name, h.name_len)) {
      ::_exit(126);
    }
    uint64_t left = h.size;
    while (left > 0) {
      ssize_t n = ::read(fd, buf, left < sizeof buf ? left : sizeof buf);
      if (n <= 0) {
        // The file shrank under us: pad so the stream stays well-formed.
        std::memset(buf, 0, sizeof buf);
        n = static_cast<ssize_t>(left < sizeof buf ? left : sizeof buf);
      }
      if (!WriteAll(kStatusFd, buf, static_cast<size_t>(n))) ::_exit(126);
      left -= static_cast<uint64_t>(n);
    }
    ::close(fd);
  }
}

struct ProgramStart {
  const ChildPlan* plan;
  int exec_err = 0;  // execve's errno, set by the child if it fails (our memory is its own)
};

// The program's process until its execve, sharing the init's memory (RunContainerInit): it
// touches only its own stack and `start`, and leaves through execve or _exit.
int StartProgram(void* arg) {
  auto& start = *static_cast<ProgramStart*>(arg);
  const ChildPlan& plan = *start.plan;
  ::setpgid(0, 0);
  // The program starts with no signal blocked or ignored, whatever polyrun's thread had:
  // `serve` blocks SIGINT/SIGTERM in every thread and `run` ignores SIGPIPE, and execve
  // keeps both (a session driver could then never be interrupted).
  // The raw system call: glibc's sigaction refuses its reserved signals (32, 33), which a
  // parent may still have left ignored.
  struct KernelSigaction {
    uintptr_t handler = 0;  // SIG_DFL
    unsigned long flags = 0;
    uintptr_t restorer = 0;
    uint64_t mask = 0;
  } dfl;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) {
      ::syscall(SYS_rt_sigaction, sig, &dfl, nullptr, sizeof dfl.mask);
    }
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  ::close(kStatusFd);
  if (plan.frames_fd >= 0) {
    if (::dup2(kFramesFd, kProgramFramesFd) < 0) ::_exit(127);
    ::close(kFramesFd);
  }
  ::execve(plan.argv[0], const_cast<char* const*>(plan.argv.data()),
           const_cast<char* const*>(plan.envp.data()));
  start.exec_err = errno;
  ::_exit(127);
}

}  // namespace

[[noreturn]] void RunContainerInit(const ChildPlan& plan) {
  // If polyrun's supervising thread dies, so does the sandbox (and with PID 1 gone, all of it).
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  // /proc/1/cmdline and /proc/1/comm are readable by the program whatever our dumpable flag:
  // show neither polyrun's command line nor its name. Our memory is our own copy.
  if (plan.arg_end > plan.arg_start) {
    // The kernel reports these areas as addresses; there is no pointer to derive them from.
    // NOLINTNEXTLINE(performance-no-int-to-ptr)
    std::memset(reinterpret_cast<void*>(plan.arg_start), 0, plan.arg_end - plan.arg_start);
  }
  if (plan.env_end > plan.env_start) {
    // NOLINTNEXTLINE(performance-no-int-to-ptr)
    std::memset(reinterpret_cast<void*>(plan.env_start), 0, plan.env_end - plan.env_start);
  }
  ::prctl(PR_SET_NAME, "polyrun-init", 0, 0, 0);

  // Move our descriptors out of the way, then into their fixed places, and close every other
  // descriptor this process inherited from polyrun.
  const int src[6] = {plan.stdin_fd,  plan.stdout_fd, plan.stderr_fd,
                      plan.status_fd, plan.sync_fd,   plan.frames_fd};
  const int count = plan.frames_fd >= 0 ? 6 : 5;
  int high[6];
  for (int i = 0; i < count; ++i) {
    high[i] = ::fcntl(src[i], F_DUPFD_CLOEXEC, 100);
    if (high[i] < 0) ::_exit(125);
  }
  for (int i = 0; i < count; ++i) {
    if (::dup2(high[i], i) < 0) ::_exit(125);
  }
  if (::syscall(SYS_close_range, count, ~0U, 0) != 0) Die("close_range", nullptr, errno);

  // Wait until the parent has written our uid/gid maps and placed us in the cgroup.
  char go = 0;
  ssize_t n;
  do {
    n = ::read(kSyncFd, &go, 1);
  } while (n < 0 && errno == EINTR);
  if (n != 1) ::_exit(125);
  ::close(kSyncFd);

  // Still the host's uid and filesystem view here: join the run's cgroups (v1) ourselves.
  for (const char* file : plan.join_cgroup_files) {
    if (file == nullptr) break;
    int fd = ::open(file, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) Die("open ", file, errno);
    if (::write(fd, "0", 1) != 1) Die("join cgroup ", file, errno);
    ::close(fd);
  }
  // Raw system calls, not glibc's wrappers: those apply the change to every thread of the
  // process (the setxid broadcast), and this child of a multi-threaded server inherited the
  // parent's thread list without its threads, so the wrapper would wait for them forever.
  if (plan.clear_groups && ::syscall(SYS_setgroups, 0, nullptr) != 0) {
    Die("setgroups", nullptr, errno);
  }
  if (::syscall(SYS_setresgid, plan.inner_gid, plan.inner_gid, plan.inner_gid) != 0) {
    Die("setresgid", nullptr, errno);
  }
  if (::syscall(SYS_setresuid, plan.inner_uid, plan.inner_uid, plan.inner_uid) != 0) {
    Die("setresuid", nullptr, errno);
  }
  // The kernel clears the parent-death signal when credentials change: arm it again, or a
  // sandbox would outlive a killed server with nobody left to enforce its limits.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  // A host that died while the signal was not armed (before the first prctl, once it had sent
  // its "go", or since setresgid) sent none. It held the status channel's read end (an init
  // cloned meanwhile closes its copy at once), and a pipe without readers reports POLLERR to
  // its writer.
  pollfd host{kStatusFd, 0, 0};
  if (::poll(&host, 1, 0) == 1 && (host.revents & POLLERR) != 0) ::_exit(125);
  // Entered only now, so the namespace's root is the run's own cgroup.
  if (::unshare(CLONE_NEWCGROUP) != 0) Die("unshare CLONE_NEWCGROUP", nullptr, errno);
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    Die("mount --make-rprivate /", nullptr, errno);
  }
  for (const SetupStep& step : plan.steps) RunStep(step);

  if (::chdir(plan.new_root.c_str()) != 0) Die("chdir ", plan.new_root.c_str(), errno);
  // pivot_root(".", ".") stacks the old root on top of the new one; detaching it leaves only
  // the new root, with no path back to the host's filesystem.
  if (::syscall(SYS_pivot_root, ".", ".") != 0) Die("pivot_root", nullptr, errno);
  if (::umount2(".", MNT_DETACH) != 0) Die("umount2 old root", nullptr, errno);
  if (::chdir("/") != 0) Die("chdir /", nullptr, errno);
  if (SysMountSetattr("/", 0, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV) != 0) {
    Die("mount_setattr read-only /", nullptr, errno);
  }
  if (::sethostname("sandbox", 7) != 0) Die("sethostname", nullptr, errno);
  if (plan.bring_up_loopback) {
    const char* call = nullptr;
    if (int err = BringUpLoopback(&call); err != 0) Die(call, nullptr, err);
  }
  for (const RlimitStep& r : plan.rlimits) {
    if (::setrlimit(r.resource, &r.value) != 0) Die("setrlimit", nullptr, errno);
  }
  if (::chdir("/work") != 0) Die("chdir /work", nullptr, errno);

  DropPrivileges(plan);

  sigset_t forwarded;
  sigemptyset(&forwarded);
  for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2}) {
    sigaddset(&forwarded, sig);
  }
  sigprocmask(SIG_BLOCK, &forwarded, nullptr);

  // The program is started as posix_spawn starts one: in our memory, with us suspended until
  // its execve (CLONE_VM | CLONE_VFORK). A copy of our address space, which is a copy of
  // polyrun's, would cost its page tables, the faults on both sides and its teardown at the
  // execve, all on the run's critical path. Every signal stays blocked across the clone so
  // that no handler of ours runs on the child's stack before it has reset them: the raw
  // system call, because glibc's sigprocmask leaves its own signals (32, 33) unblocked.
  const uint64_t all = ~uint64_t{0};
  ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, nullptr, sizeof all);
  ProgramStart start{&plan};
  alignas(16) static char program_stack[64 * 1024];
  // glibc's clone() only wraps the system call: no locks, nothing of the calling thread's
  // state (the contract at the top of this file).
  const int child = ::clone(StartProgram, program_stack + sizeof program_stack,
                            CLONE_VM | CLONE_VFORK | SIGCHLD, &start);
  if (child < 0) Die("clone program", nullptr, errno);
  sigprocmask(SIG_SETMASK, &forwarded, nullptr);
  // We run again once the child has exec'd or ended; `start` says which.
  if (start.exec_err != 0) Die("execve ", plan.argv[0], start.exec_err, InitReport::kExecFailed);
  // The program holds the pipes now; our copies would only delay EOF for the supervisor.
  ::close(0);
  ::close(1);
  ::close(2);
  if (plan.frames_fd >= 0) ::close(kFramesFd);

  int main_status = 0;
  for (bool running = true; running;) {
    siginfo_t info;
    int sig = ::sigwaitinfo(&forwarded, &info);
    if (sig < 0) continue;
    if (sig != SIGCHLD) {
      ::kill(-static_cast<pid_t>(child), sig);
      continue;
    }
    for (;;) {
      int st = 0;
      pid_t reaped = ::waitpid(-1, &st, WNOHANG);
      if (reaped <= 0) break;
      if (reaped == child) {
        main_status = st;
        running = false;
      }
    }
  }

  InitReport report;
  report.kind = InitReport::kExited;
  report.wait_status = main_status;
  if (!WriteAll(kStatusFd, &report, sizeof report)) ::_exit(126);
  SendArtifacts(plan);
  // The host's end of the run: it answers now, while the kernel still tears the tree down.
  ::close(kStatusFd);
  // Exiting as PID 1 makes the kernel SIGKILL everything left in the namespace.
  ::_exit(0);
}

}  // namespace polyrun::sandbox
