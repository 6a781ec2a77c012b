// polyrun-zygote-factory (docs/performance.md, "Zygotes"): makes each forked run's namespaces
// and its init, so that the fork server (an interpreter of tens of MB, whose every fork copies
// its page tables and then its pages as they are written) forks only the run's program.
//
// The server starts it once, in the server's own sandbox: it runs as the server's user, with the
// server's capabilities (in the server's user namespace only) and seccomp profile, with fd 3 a
// SOCK_SEQPACKET socket to the server. It never sees a run's data: only a status socket and two
// sizes pass through it.
//
// Protocol on fd 3, one request at a time:
//   request: a FactoryRequest (the sizes of /work and /tmp), carrying one descriptor: the run's
//            status socket to the host;
//   answer:  "G" carrying the run's namespaces (kRunNamespaceFiles), once they and their init, G,
//            are complete; or
//            "F" when they could not be made (why went to the status socket as an InitReport,
//            as any init's setup failure does).
// Per request it forks C, which enters a network namespace made here ahead of need, makes a user
// namespace of its own (the server's uid and gid mapped to themselves) and, owned by it, mount,
// PID, IPC and UTS namespaces; mounts fresh /work, /tmp and /dev/shm; forks G; waits until G is
// up and answers. G is PID 1 of the new PID namespace: it mounts /proc, makes itself non-dumpable,
// sends its own pidfd to the host on the status socket ("P"), closes every descriptor, then only
// reaps orphans and forwards signals until the host kills it. The server forks the program (H)
// into G's namespaces (setns); H is PID 2 there, the first process born in them, because G
// forks nothing.
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iterator>

#include "sandbox/child_plan.h"
#include "sandbox/loopback.h"

namespace polyrun::sandbox {
namespace {

constexpr int kServerFd = 3;
// Network namespaces kept made: making one takes 0.3-1 ms with a long tail, too long for a run.
constexpr int kReadyNetns = 4;
// H, in G's PID namespace (see the top of this file).
constexpr pid_t kProgramPid = 2;
// What C answers "G" with, in this order: the run's namespaces, opened by C itself. G is not
// dumpable, and entering a process's namespaces through it (its pidfd or /proc/PID/ns) takes
// the right to ptrace it, which the server does not have.
constexpr const char* kRunNamespaceFiles[] = {"net", "user", "mnt",
                                              "ipc", "uts",  "pid_for_children"};
constexpr size_t kRunNamespaces = std::size(kRunNamespaceFiles);

// As languages/python/zygote.py packs it: struct.pack("<QQ", work, tmp).
struct FactoryRequest {
  uint64_t work_bytes;
  uint64_t tmp_bytes;
};

// One byte, `tag`, carrying `fds` (at most kRunNamespaces).
bool SendTagged(int sock, char tag, const int* fds, size_t count) {
  iovec iov{&tag, 1};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kRunNamespaces)] = {};
  if (count > 0) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * count);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * count);
    std::memcpy(CMSG_DATA(c), fds, sizeof(int) * count);
  }
  ssize_t n;
  do {
    n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  return n == 1;
}

// The run could not be set up: the host hears why on the run's status socket.
[[noreturn]] void SetupFailed(int status, const char* what, int err) {
  InitReport report;
  report.kind = InitReport::kSetupFailed;
  report.err = err;
  std::snprintf(report.what, sizeof report.what, "zygote: %s", what);
  [[maybe_unused]] const ssize_t n = ::send(status, &report, sizeof report, MSG_NOSIGNAL);
  ::_exit(1);
}

bool WriteFile(const char* path, const char* text) {
  const int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const auto len = static_cast<ssize_t>(std::strlen(text));
  const bool ok = ::write(fd, text, static_cast<size_t>(len)) == len;
  const int err = errno;
  ::close(fd);
  errno = err;
  return ok;
}

void MountTmpfs(int status, const char* target, uint64_t size, const char* opts,
                unsigned long flags) {
  char data[128];
  std::snprintf(data, sizeof data, "size=%llu,%s", static_cast<unsigned long long>(size), opts);
  if (::mount("tmpfs", target, "tmpfs", flags, data) != 0) {
    char what[64];
    std::snprintf(what, sizeof what, "mount tmpfs %s", target);
    SetupFailed(status, what, errno);
  }
}

// G. Says "r" on `ready` once the namespaces are complete (or reports why not and exits).
[[noreturn]] void Init(int status, int ready) {
  if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
    SetupFailed(status, "mount /proc", errno);
  }
  // The program runs as the same uid: it must not read or write our memory through /proc.
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
    SetupFailed(status, "prctl PR_SET_DUMPABLE", errno);
  // Blocked before the host has our pidfd: a signal it forwards to us is queued, not lost (as
  // PID 1, a signal we have no handler for would be dropped unless blocked).
  sigset_t waited;
  sigemptyset(&waited);
  for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2}) {
    sigaddset(&waited, sig);
  }
  sigprocmask(SIG_BLOCK, &waited, nullptr);
  const int self = static_cast<int>(::syscall(SYS_pidfd_open, ::getpid(), 0));
  if (self < 0) SetupFailed(status, "pidfd_open", errno);
  if (!SendTagged(status, 'P', &self, 1)) ::_exit(1);
  if (::write(ready, "r", 1) != 1) ::_exit(1);
  // Nothing of the server's, the factory's or the run's stays with us: the server reports the
  // program's end, and the host's end of the status socket sees it close with the program.
  ::syscall(SYS_close_range, 0, ~0U, 0);
  for (;;) {
    siginfo_t info;
    const int sig = ::sigwaitinfo(&waited, &info);
    if (sig == SIGCHLD) {
      while (::waitpid(-1, nullptr, WNOHANG) > 0) {
      }
    } else if (sig > 0) {
      // To the program's process group, as a cold run's init does; to the program itself if
      // it has not made its group yet.
      if (::kill(-kProgramPid, sig) != 0) ::kill(kProgramPid, sig);
    }
  }
}

// C: the run's namespaces, then G. Exits 0 once it has answered "G", 1 otherwise.
[[noreturn]] void MakeRun(const FactoryRequest& req, int status, int netns) {
  // Owned by the server's user namespace: entered while still in it.
  if (::setns(netns, CLONE_NEWNET) != 0) SetupFailed(status, "setns CLONE_NEWNET", errno);
  ::close(netns);
  char map[64];
  std::snprintf(map, sizeof map, "%u %u 1", ::getuid(), ::getuid());
  char gid_map[64];
  std::snprintf(gid_map, sizeof gid_map, "%u %u 1", ::getgid(), ::getgid());
  if (::unshare(CLONE_NEWUSER) != 0) SetupFailed(status, "unshare CLONE_NEWUSER", errno);
  if (!WriteFile("/proc/self/uid_map", map)) SetupFailed(status, "write uid_map", errno);
  if (!WriteFile("/proc/self/setgroups", "deny")) SetupFailed(status, "write setgroups", errno);
  if (!WriteFile("/proc/self/gid_map", gid_map)) SetupFailed(status, "write gid_map", errno);
  // The cgroup namespace is the program's to make, once it is in the run's cgroup: its root is
  // the run's cgroup, as in a cold run.
  if (::unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS) != 0) {
    SetupFailed(status, "unshare", errno);
  }
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    SetupFailed(status, "mount --make-rprivate /", errno);
  }
  MountTmpfs(status, "/work", req.work_bytes, "nr_inodes=16384,mode=755", MS_NOSUID | MS_NODEV);
  MountTmpfs(status, "/tmp", req.tmp_bytes, "nr_inodes=16384,mode=1777", MS_NOSUID | MS_NODEV);
  MountTmpfs(status, "/dev/shm", req.tmp_bytes, "nr_inodes=1024,mode=1777",
             MS_NOSUID | MS_NODEV | MS_NOEXEC);
  // G mounts its /proc over ours, where we have no pid: our namespaces are read from here.
  const int ns_dir = ::open("/proc/self/ns", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (ns_dir < 0) SetupFailed(status, "open /proc/self/ns", errno);
  int ready[2];
  if (::pipe2(ready, O_CLOEXEC) != 0) SetupFailed(status, "pipe2", errno);
  const pid_t init = ::fork();
  if (init < 0) SetupFailed(status, "fork", errno);
  if (init == 0) {
    ::close(ready[0]);
    Init(status, ready[1]);
  }
  ::close(ready[1]);
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, init, 0));
  if (pidfd < 0) {
    ::kill(init, SIGKILL);
    SetupFailed(status, "pidfd_open", errno);
  }
  char up = 0;
  ssize_t n;
  do {
    n = ::read(ready[0], &up, 1);
  } while (n < 0 && errno == EINTR);
  // Without G's "r" (it reported why) nothing may be forked into its namespaces.
  if (n == 1 && up == 'r') {
    int ns[kRunNamespaces];
    size_t opened = 0;
    for (const char* name : kRunNamespaceFiles) {
      ns[opened] = ::openat(ns_dir, name, O_RDONLY | O_CLOEXEC);
      if (ns[opened] < 0) break;
      ++opened;
    }
    const int err = errno;
    if (opened == kRunNamespaces && SendTagged(kServerFd, 'G', ns, opened)) ::_exit(0);
    ::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
    SetupFailed(status, opened < kRunNamespaces ? "open the run's namespaces" : "sendmsg", err);
  }
  ::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
  ::_exit(1);
}

// A new network namespace with its loopback up, or -1 (said on stderr: the server's health).
int MakeNetns(int home) {
  const char* what = "unshare CLONE_NEWNET";
  int err = 0;
  int fd = -1;
  if (::unshare(CLONE_NEWNET) != 0) {
    err = errno;
  } else {
    err = BringUpLoopback(&what);
  }
  if (err == 0) {
    fd = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      what = "open /proc/self/ns/net";
      err = errno;
    }
  }
  // Back home: no run's namespace is ever ours.
  if (::setns(home, CLONE_NEWNET) != 0 && err == 0) {
    what = "setns back";
    err = errno;
  }
  if (err != 0) {
    std::fprintf(stderr, "polyrun-zygote-factory: %s: %s\n", what, std::strerror(err));
    if (fd >= 0) ::close(fd);
    return -1;
  }
  return fd;
}

// One request: its bytes and its one descriptor (-1 if none). 0 when the server has gone.
ssize_t Receive(FactoryRequest* req, int* fd) {
  iovec iov{req, sizeof *req};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(kServerFd, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  *fd = -1;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
        c->cmsg_len == CMSG_LEN(sizeof(int))) {
      std::memcpy(fd, CMSG_DATA(c), sizeof(int));
    }
  }
  return n;
}

int Serve() {
  // A network namespace of our own to come back to: the server's belongs to the host's user
  // namespace, which we could not enter again.
  const int home =
      ::unshare(CLONE_NEWNET) == 0 ? ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC) : -1;
  if (home < 0) {
    std::perror("polyrun-zygote-factory: a network namespace of its own");
    return 1;
  }
  int ready[kReadyNetns];
  int n_ready = 0;
  for (;;) {
    // Requests first; namespaces are made while none waits.
    pollfd p{kServerFd, POLLIN, 0};
    const int polled = ::poll(&p, 1, n_ready < kReadyNetns ? 0 : -1);
    if (polled < 0 && errno == EINTR) continue;
    if (polled < 0) {
      std::perror("polyrun-zygote-factory: poll");
      return 1;
    }
    if (polled == 0) {
      const int fd = MakeNetns(home);
      if (fd < 0) return 1;
      ready[n_ready++] = fd;
      continue;
    }
    FactoryRequest req{};
    int status = -1;
    const ssize_t got = Receive(&req, &status);
    if (got == 0) return 0;  // the server is gone
    if (got != static_cast<ssize_t>(sizeof req) || status < 0) {
      std::fprintf(stderr, "polyrun-zygote-factory: a malformed request\n");
      return 1;
    }
    const int netns = n_ready > 0 ? ready[--n_ready] : MakeNetns(home);
    if (netns < 0) return 1;
    const pid_t c = ::fork();
    if (c == 0) MakeRun(req, status, netns);
    ::close(netns);
    ::close(status);
    int st = 0;
    pid_t waited = -1;
    if (c > 0) {
      do {
        waited = ::waitpid(c, &st, 0);
      } while (waited < 0 && errno == EINTR);
    }
    if (waited != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      if (!SendTagged(kServerFd, 'F', nullptr, 0)) return 1;
    }
  }
}

}  // namespace
}  // namespace polyrun::sandbox

int main() {
  return polyrun::sandbox::Serve();
}
