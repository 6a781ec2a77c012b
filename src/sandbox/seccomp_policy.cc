#include "sandbox/seccomp_policy.h"

#include <linux/audit.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <memory>

#include "util/unique_fd.h"

namespace polyrun::sandbox {

namespace {

// Everything an ordinary program, interpreter, JIT or compiler driver needs. Deliberately
// absent: anything that changes the system, namespaces, mounts, modules, keys, BPF, perf,
// ptrace and process_vm_*, userfaultfd, io_uring, kexec, swap, clock setting, quotas, and
// obsolete interfaces with a history of bugs (uselib, sysfs, _sysctl, lookup_dcookie).
constexpr const char* kAllowed[] = {
    "accept",
    "accept4",
    "access",
    "alarm",
    "arch_prctl",
    "bind",
    "brk",
    "capget",
    "chdir",
    "chmod",
    "chown",
    "clock_getres",
    "clock_gettime",
    "clock_nanosleep",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fallocate",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchownat",
    "fcntl",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fstat",
    "fstatfs",
    "fsync",
    "ftruncate",
    "futex",
    "futex_waitv",
    "futimesat",
    "get_mempolicy",
    "get_robust_list",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "geteuid",
    "getgid",
    "getgroups",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresuid",
    "getrlimit",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "gettid",
    "gettimeofday",
    "getuid",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "ioctl",
    "kill",
    "lchown",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "lseek",
    "lstat",
    "madvise",
    "membarrier",
    "memfd_create",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mprotect",
    "mremap",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "nanosleep",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "pselect6",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recvfrom",
    "recvmmsg",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_tgsigqueueinfo",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_setaffinity",
    "sched_yield",
    "select",
    "sendfile",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "set_robust_list",
    "set_tid_address",
    "setitimer",
    "setpgid",
    "setpriority",
    "setsid",
    "setsockopt",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "socket",
    "socketpair",
    "splice",
    "stat",
    "statfs",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_settime",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_settime",
    "times",
    "tkill",
    "truncate",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimes",
    "vfork",
    "wait4",
    "waitid",
    "write",
    "writev",
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "setgroups",
    "setfsuid",
    "setfsgid",
    "shmget",
    "shmat",
    "shmdt",
    "shmctl",
    "semget",
    "semop",
    "semctl",
    "semtimedop",
    "msgget",
    "msgsnd",
    "msgrcv",
    "msgctl",
    "mq_open",
    "mq_unlink",
    "mq_timedsend",
    "mq_timedreceive",
    "mq_notify",
    "mq_getsetattr",
    "process_mrelease",
    "landlock_create_ruleset",
    "landlock_add_rule",
    "landlock_restrict_self",
    "seccomp",
};

// Refused with EPERM even if a manifest asks for them; each is probed by tests/escape.
const std::vector<std::string> kDenied = {
    "ptrace",
    "mount",
    "umount2",
    "pivot_root",
    "unshare",
    "setns",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "process_vm_readv",
    "process_vm_writev",
    "open_by_handle_at",
    "fsopen",
    "fsmount",
    "fsconfig",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "chroot",
    "acct",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "sethostname",
    "setdomainname",
    "iopl",
    "ioperm",
    "quotactl",
    "quotactl_fd",
    "lookup_dcookie",
    "uselib",
    "nfsservctl",
    "vhangup",
    "syslog",
    "kcmp",
    "fanotify_init",
    "fanotify_mark",
    "pidfd_getfd",
};

constexpr const char* kEnosys[] = {"clone3", "io_uring_setup", "io_uring_enter",
                                   "io_uring_register"};

constexpr uint64_t kNamespaceFlags = CLONE_NEWNS | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET |
                                     CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP | 0x80;
// 0x80 is CLONE_NEWTIME (5.6), absent from older headers.

using Ctx = std::unique_ptr<void, decltype(&seccomp_release)>;

Result<void> Add(scmp_filter_ctx ctx, uint32_t action, int nr, const std::string& name,
                 unsigned count = 0, const scmp_arg_cmp* args = nullptr) {
  int rc = seccomp_rule_add_array(ctx, action, nr, count, args);
  if (rc != 0) return SysFail("seccomp_rule_add", "syscall " + name, -rc);
  return {};
}

}  // namespace

const std::vector<std::string>& DeniedSyscalls() {
  return kDenied;
}

Result<SeccompProgram> BuildSeccompProgram(const std::vector<std::string>& extra_allowed,
                                           bool fork_server) {
  Ctx ctx(seccomp_init(SCMP_ACT_ERRNO(EPERM)), &seccomp_release);
  if (!ctx) return Fail(Errc::kInternal, "seccomp_init failed");
  scmp_filter_ctx c = ctx.get();
  // We set no_new_privs ourselves before loading; the attribute would only duplicate it.
  seccomp_attr_set(c, SCMP_FLTATR_CTL_NNP, 0);
  seccomp_attr_set(c, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
  // A binary search over syscall numbers instead of a linear chain. Besides each syscall's cost,
  // attaching the filter gets cheaper: the kernel (5.11+) evaluates it for every syscall number
  // to build its allow-cache, 0.5 ms per sandbox with the chain.
  if (int rc = seccomp_attr_set(c, SCMP_FLTATR_CTL_OPTIMIZE, 2); rc != 0) {
    return Fail(Errc::kInternal,
                "seccomp_attr_set SCMP_FLTATR_CTL_OPTIMIZE: " + std::string(std::strerror(-rc)));
  }

  auto is_denied = [](const std::string& name) {
    for (const auto& d : DeniedSyscalls()) {
      if (d == name) return true;
    }
    return false;
  };

  for (const char* name : kAllowed) {
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) continue;  // not on this architecture
    if (std::string(name) == "socket") continue;
    if (auto r = Add(c, SCMP_ACT_ALLOW, nr, name); !r) return std::unexpected(r.error());
  }
  for (const auto& name : extra_allowed) {
    int nr = seccomp_syscall_resolve_name(name.c_str());
    if (nr == __NR_SCMP_ERROR) {
      return Fail(Errc::kInvalidArgument, "seccomp: unknown syscall name \"" + name + "\"");
    }
    if (is_denied(name)) {
      return Fail(Errc::kInvalidArgument,
                  "seccomp: syscall \"" + name + "\" is always denied and cannot be allowed");
    }
    if (name == "clone" || name == "socket") continue;
    if (auto r = Add(c, SCMP_ACT_ALLOW, nr, name); !r) return std::unexpected(r.error());
  }
  for (const char* name : kEnosys) {
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) continue;
    if (auto r = Add(c, SCMP_ACT_ERRNO(ENOSYS), nr, name); !r) return std::unexpected(r.error());
  }

  // clone: threads and plain forks only; never a new namespace.
  {
    scmp_arg_cmp arg = SCMP_A0_64(SCMP_CMP_MASKED_EQ, kNamespaceFlags, 0);
    if (auto r = Add(c, SCMP_ACT_ALLOW, SCMP_SYS(clone), "clone", 1, &arg); !r) {
      return std::unexpected(r.error());
    }
  }
  if (fork_server) {
    // Each run's namespaces are made in the server's own user namespace, and every run stacks
    // the default profile (no unshare, setns or mount at all) on top of this one.
    for (const char* name : {"unshare", "setns", "mount", "capset"}) {
      if (auto r = Add(c, SCMP_ACT_ALLOW, seccomp_syscall_resolve_name(name), name); !r) {
        return std::unexpected(r.error());
      }
    }
  }
  // socket: anything but raw packet sockets and netlink families that reach kernel config.
  {
    scmp_arg_cmp args[3] = {SCMP_A0_32(SCMP_CMP_EQ, AF_UNIX), SCMP_A0_32(SCMP_CMP_EQ, AF_INET),
                            SCMP_A0_32(SCMP_CMP_EQ, AF_INET6)};
    for (auto& arg : args) {
      if (auto r = Add(c, SCMP_ACT_ALLOW, SCMP_SYS(socket), "socket", 1, &arg); !r) {
        return std::unexpected(r.error());
      }
    }
  }
  // personality: only queries and the flags runtimes really set.
  // PER_LINUX, PER_LINUX32, UNAME26 and the query value, as Docker's default profile allows.
  for (uint32_t p : {0x0u, 0x0008u, 0x20000u, 0x20008u, 0xffffffffu}) {
    scmp_arg_cmp arg = SCMP_A0_32(SCMP_CMP_EQ, p);
    if (auto r = Add(c, SCMP_ACT_ALLOW, SCMP_SYS(personality), "personality", 1, &arg); !r) {
      return std::unexpected(r.error());
    }
  }

  UniqueFd mem(::memfd_create("polyrun-seccomp", MFD_CLOEXEC));
  if (!mem.valid()) return SysFail("memfd_create", "seccomp export");
  if (int rc = seccomp_export_bpf(c, mem.get()); rc != 0) {
    return SysFail("seccomp_export_bpf", "seccomp export", -rc);
  }
  off_t size = ::lseek(mem.get(), 0, SEEK_END);
  if (size <= 0 || size % sizeof(sock_filter) != 0) {
    return Fail(Errc::kInternal, "seccomp export produced " + std::to_string(size) + " bytes");
  }
  std::vector<sock_filter> body(static_cast<size_t>(size) / sizeof(sock_filter));
  if (::pread(mem.get(), body.data(), static_cast<size_t>(size), 0) != size) {
    return SysFail("pread", "seccomp export");
  }

  // Our own prologue, independent of libseccomp's code generation: kill on any other
  // architecture (i386 via int 0x80 reports AUDIT_ARCH_I386) and on x32 numbers (x32 shares
  // AUDIT_ARCH_X86_64 and sets bit 30 of the syscall number). Then refuse ioctl TIOCSTI and
  // TIOCLINUX judged on the low 32 bits of the request only, as the kernel reads it
  // (ioctl(0, TIOCSTI | 1UL << 32) is TIOCSTI to the kernel; found by tests/escape).
  // libseccomp's body reloads everything it compares, so clobbering A here is fine.
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "low word of args[1] at its offset");
  const sock_filter prologue[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, 0, 4),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args[1])),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TIOCSTI, 1, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TIOCLINUX, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
  };
  SeccompProgram prog;
  prog.filter.assign(std::begin(prologue), std::end(prologue));
  prog.filter.insert(prog.filter.end(), body.begin(), body.end());
  if (prog.filter.size() > BPF_MAXINSNS) {
    return Fail(Errc::kInternal, "seccomp program too long: " + std::to_string(prog.filter.size()));
  }
  return prog;
}

}  // namespace polyrun::sandbox
