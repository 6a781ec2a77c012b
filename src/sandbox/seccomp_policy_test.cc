#include "sandbox/seccomp_policy.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace polyrun::sandbox
