#include "sandbox/seccomp_policy.h"

#include <gtest/gtest.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "sandbox/default_seccomp.h"

namespace polyrun::sandbox {
namespace {

TEST(SeccompPolicy, BuildsAProgramWithTheArchitecturePrologue) {
  auto prog = BuildSeccompProgram({});
  ASSERT_TRUE(prog) << prog.error().message();
  ASSERT_GT(prog->filter.size(), 6u);
  // First instruction loads seccomp_data.arch (offset 4).
  EXPECT_EQ(prog->filter[0].k, 4u);
}

TEST(SeccompPolicy, ExtraSyscallsAreValidated) {
  auto unknown = BuildSeccompProgram({"not_a_syscall"});
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message().find("not_a_syscall"), std::string::npos);
  auto denied = BuildSeccompProgram({"ptrace"});
  ASSERT_FALSE(denied);
  EXPECT_NE(denied.error().message().find("always denied"), std::string::npos);
  EXPECT_TRUE(BuildSeccompProgram({"sysinfo"}));
}

TEST(SeccompPolicy, DeniedListCoversTheIssueMinimum) {
  const auto& denied = DeniedSyscalls();
  for (const char* name :
       {"ptrace", "mount", "umount2", "pivot_root", "unshare", "setns", "keyctl", "add_key", "bpf",
        "perf_event_open", "userfaultfd", "kexec_load", "init_module", "reboot", "swapon"}) {
    EXPECT_NE(std::find(denied.begin(), denied.end(), name), denied.end()) << name;
  }
}

TEST(SeccompPolicy, BuildTimeDefaultEqualsTheRuntimeBuild) {
  auto prog = BuildSeccompProgram({});
  ASSERT_TRUE(prog) << prog.error().message();
  auto built = DefaultSeccompFilter();
  ASSERT_EQ(built.size(), prog->filter.size());
  EXPECT_EQ(std::memcmp(built.data(), prog->filter.data(), built.size() * sizeof(sock_filter)), 0);
}

// Loads `prog` in a forked child and returns what `probe` (run there) exited with.
int ExitStatusUnder(const SeccompProgram& prog, int (*probe)()) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const sock_fprog f = prog.fprog();
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &f, 0, 0) != 0) {
      ::_exit(100);
    }
    ::_exit(probe());
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Each bit: a call the filter let through to the kernel, told apart from the filter's EPERM by
// an argument the kernel itself rejects with another errno.
int NamespaceCallsReachingTheKernel() {
  int reached = 0;
  if (::syscall(SYS_setns, -1, 0) != 0 && errno == EBADF) reached |= 1;
  if (::syscall(SYS_mount, nullptr, nullptr, nullptr, 0, nullptr) != 0 && errno == EFAULT) {
    reached |= 2;
  }
  if (::syscall(SYS_unshare, 0) == 0) reached |= 4;
  return reached;
}

TEST(SeccompPolicy, TheForkServerProfileAddsNamespaceCallsTheDefaultOneDenies) {
  auto fork_server = BuildSeccompProgram({}, /*fork_server=*/true);
  ASSERT_TRUE(fork_server) << fork_server.error().message();
  EXPECT_EQ(ExitStatusUnder(*fork_server, NamespaceCallsReachingTheKernel), 1 | 2 | 4);
  auto runs = BuildSeccompProgram({});
  ASSERT_TRUE(runs) << runs.error().message();
  EXPECT_EQ(ExitStatusUnder(*runs, NamespaceCallsReachingTheKernel), 0);
}

}  // namespace
}  // namespace polyrun::sandbox
