// DESIGN §6.3: the seccomp policy, probed from inside a real run, one syscall per test.
#include <signal.h>

#include <cerrno>

#include "escape.h"

namespace polyrun::escape {
namespace {

using engine::Status;

class SyscallTest : public EscapeTest {
 protected:
  // Runs one probe of syscalls.c and returns the errno it reported; the probe must report
  // failure (-1) and the run must otherwise be an ordinary success.
  int ProbeErrno(const std::string& probe) {
    auto r = RunProgram("syscalls.c", {.args = {probe}});
    EXPECT_EQ(r.status, Status::kOk) << Describe(r);
    auto kv = ParsePairs(r.stdout_text);
    EXPECT_TRUE(kv.contains(probe)) << Describe(r);
    if (!kv.contains(probe)) return -1;
    EXPECT_EQ(kv[probe], "-1") << probe << " succeeded inside the sandbox: " << Describe(r);
    return std::stoi(kv["errno"]);
  }
};

// Each syscall the policy names as denied. The arguments are chosen (see syscalls.c) so that
// where possible the kernel itself would have answered differently: success for ptrace,
// unshare, keyctl, add_key, userfaultfd and clone(CLONE_NEWUSER); EFAULT/EINVAL/EBADF for
// mount, umount2, setns, perf_event_open, io_uring_setup and clone3.
TEST_F(SyscallTest, PtraceDenied) {
  EXPECT_EQ(ProbeErrno("ptrace"), EPERM);
}
TEST_F(SyscallTest, MountDenied) {
  EXPECT_EQ(ProbeErrno("mount"), EPERM);
}
TEST_F(SyscallTest, Umount2Denied) {
  EXPECT_EQ(ProbeErrno("umount2"), EPERM);
}
TEST_F(SyscallTest, PivotRootDenied) {
  EXPECT_EQ(ProbeErrno("pivot_root"), EPERM);
}
TEST_F(SyscallTest, UnshareDenied) {
  EXPECT_EQ(ProbeErrno("unshare"), EPERM);
}
TEST_F(SyscallTest, SetnsDenied) {
  EXPECT_EQ(ProbeErrno("setns"), EPERM);
}
TEST_F(SyscallTest, KeyctlDenied) {
  EXPECT_EQ(ProbeErrno("keyctl"), EPERM);
}
TEST_F(SyscallTest, AddKeyDenied) {
  EXPECT_EQ(ProbeErrno("add_key"), EPERM);
}
TEST_F(SyscallTest, BpfDenied) {
  EXPECT_EQ(ProbeErrno("bpf"), EPERM);
}
TEST_F(SyscallTest, PerfEventOpenDenied) {
  EXPECT_EQ(ProbeErrno("perf_event_open"), EPERM);
}
TEST_F(SyscallTest, IoUringSetupIsEnosys) {
  EXPECT_EQ(ProbeErrno("io_uring_setup"), ENOSYS);
}
TEST_F(SyscallTest, UserfaultfdDenied) {
  EXPECT_EQ(ProbeErrno("userfaultfd"), EPERM);
}
TEST_F(SyscallTest, KexecLoadDenied) {
  EXPECT_EQ(ProbeErrno("kexec_load"), EPERM);
}
TEST_F(SyscallTest, InitModuleDenied) {
  EXPECT_EQ(ProbeErrno("init_module"), EPERM);
}
TEST_F(SyscallTest, RebootDenied) {
  EXPECT_EQ(ProbeErrno("reboot"), EPERM);
}
TEST_F(SyscallTest, SwaponDenied) {
  EXPECT_EQ(ProbeErrno("swapon"), EPERM);
}
TEST_F(SyscallTest, Clone3IsEnosys) {
  EXPECT_EQ(ProbeErrno("clone3"), ENOSYS);
}
TEST_F(SyscallTest, CloneNewUserDenied) {
  EXPECT_EQ(ProbeErrno("clone_newuser"), EPERM);
}

// Controls: the same paths with harmless arguments work, so the denials above are the
// policy's and not a broken probe.
TEST_F(SyscallTest, PlainCloneAndAllowedIoctlWork) {
  auto fork = RunProgram("syscalls.c", {.args = {"clone_plain"}});
  EXPECT_EQ(fork.status, Status::kOk) << Describe(fork);
  EXPECT_EQ(fork.stdout_text, "clone_plain=0 errno=0\n") << Describe(fork);
  auto ioctl = RunProgram("syscalls.c", {.args = {"ioctl_control"}});
  EXPECT_EQ(ioctl.status, Status::kOk) << Describe(ioctl);
  EXPECT_EQ(ioctl.stdout_text, "ioctl_control=0 errno=0\n") << Describe(ioctl);
}

// TIOCSTI (terminal input injection) is refused by the filter; on the stdin pipe the kernel
// itself would say ENOTTY, so EPERM proves the filter answered.
TEST_F(SyscallTest, TiocstiDenied) {
  EXPECT_EQ(ProbeErrno("tiocsti"), EPERM);
}

// The kernel truncates the ioctl request to 32 bits, so TIOCSTI with high bits set is TIOCSTI.
TEST_F(SyscallTest, TiocstiWithHighBitsDenied) {
  EXPECT_EQ(ProbeErrno("tiocsti_high"), EPERM);
}

TEST_F(SyscallTest, TioclinuxWithHighBitsDenied) {
  EXPECT_EQ(ProbeErrno("tioclinux_high"), EPERM);
}

// Only unix, IPv4 and IPv6 sockets: vsock (not confined by the network namespace; on a VM it
// reaches the hypervisor's services), netlink and packet sockets are refused.
TEST_F(SyscallTest, VsockSocketDenied) {
  EXPECT_EQ(ProbeErrno("socket_vsock"), EPERM);
}
TEST_F(SyscallTest, NetlinkSocketDenied) {
  EXPECT_EQ(ProbeErrno("socket_netlink"), EPERM);
}
TEST_F(SyscallTest, PacketSocketDenied) {
  EXPECT_EQ(ProbeErrno("socket_packet"), EPERM);
}

// The i386 entry point (int $0x80) reports another audit arch: the process is killed.
TEST_F(SyscallTest, I386AbiKillsTheProcess) {
  auto r = RunProgram("syscalls.c", {.args = {"i386"}});
  EXPECT_EQ(r.status, Status::kRuntimeError) << Describe(r);
  EXPECT_EQ(r.signal, SIGSYS) << Describe(r);
  EXPECT_EQ(r.stdout_text, "before\n") << "the probe must die in the syscall: " << Describe(r);
}

// x32 syscall numbers (bit 30) share the x86_64 audit arch; the filter kills on them.
TEST_F(SyscallTest, X32AbiKillsTheProcess) {
  auto r = RunProgram("syscalls.c", {.args = {"x32"}});
  EXPECT_EQ(r.status, Status::kRuntimeError) << Describe(r);
  EXPECT_EQ(r.signal, SIGSYS) << Describe(r);
  EXPECT_EQ(r.stdout_text, "before\n") << "the probe must die in the syscall: " << Describe(r);
}

}  // namespace
}  // namespace polyrun::escape
