// The graveyard against real child processes and a cgroup that only records what is done to it.
#include "sandbox/graveyard.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

namespace polyrun::sandbox {
namespace {

// Records Remove() calls; fails them when asked to.
class RecordingCgroup : public Cgroup {
 public:
  RecordingCgroup(std::atomic<int>& removed, bool fail) : removed_(removed), fail_(fail) {}
  Result<void> AddProcess(pid_t) override { return {}; }
  std::vector<std::string> SelfMoveFiles() const override { return {}; }
  Result<void> SetLimits(const CgroupLimits&) override { return {}; }
  Result<CgroupUsage> Usage() override { return CgroupUsage{}; }
  void KillAll() override {}
  bool Empty() override { return true; }
  Result<void> Remove() override {
    removed_.fetch_add(1);
    if (fail_) return Fail(Errc::kInternal, "cgroup: recorded failure");
    return {};
  }

 private:
  std::atomic<int>& removed_;
  bool fail_;
};

// A child that lives until `release` closes: (pid, pidfd).
std::pair<pid_t, UniqueFd> ChildUntilClosed(UniqueFd& release) {
  int fds[2];
  EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[1]);
    char c = 0;
    while (::read(fds[0], &c, 1) < 0 && errno == EINTR) {
    }
    ::_exit(0);
  }
  ::close(fds[0]);
  release.reset(fds[1]);
  return {pid, UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)))};
}

TEST(Graveyard, SettleWaitsForTheInitAndRemovesTheCgroupAfterIt) {
  std::atomic<int> removed{0};
  Graveyard graveyard;
  UniqueFd release;
  auto [pid, pidfd] = ChildUntilClosed(release);
  ASSERT_TRUE(pidfd.valid());
  graveyard.Bury(std::move(pidfd), /*reap=*/true,
                 std::make_unique<RecordingCgroup>(removed, false));
  EXPECT_EQ(removed.load(), 0) << "removed while its init still lived";
  release.reset();  // the init ends
  ASSERT_TRUE(graveyard.Settle());
  EXPECT_EQ(removed.load(), 1);
  // Reaped by the graveyard: nothing is left for us to wait for.
  EXPECT_EQ(::waitpid(pid, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

TEST(Graveyard, AnInitThatIsNotOursIsWaitedForNotReaped) {
  std::atomic<int> removed{0};
  Graveyard graveyard;
  UniqueFd release;
  auto [pid, pidfd] = ChildUntilClosed(release);
  ASSERT_TRUE(pidfd.valid());
  graveyard.Bury(std::move(pidfd), /*reap=*/false,
                 std::make_unique<RecordingCgroup>(removed, false));
  release.reset();
  ASSERT_TRUE(graveyard.Settle());
  EXPECT_EQ(removed.load(), 1);
  int status = -1;
  EXPECT_EQ(::waitpid(pid, &status, 0), pid) << "the graveyard reaped a process it must not";
  EXPECT_TRUE(WIFEXITED(status));
}

TEST(Graveyard, SettleReportsAFailedRemovalOnce) {
  std::atomic<int> removed{0};
  Graveyard graveyard;
  graveyard.Bury(UniqueFd(), true, std::make_unique<RecordingCgroup>(removed, true));
  graveyard.Bury(UniqueFd(), true, std::make_unique<RecordingCgroup>(removed, false));
  auto first = graveyard.Settle();
  ASSERT_FALSE(first);
  EXPECT_NE(first.error().message().find("recorded failure"), std::string::npos);
  EXPECT_EQ(removed.load(), 2);
  EXPECT_TRUE(graveyard.Settle());
  EXPECT_EQ(graveyard.failures(), 1u) << "counted for the metrics, for good";
}

TEST(Graveyard, DestroyingItFinishesEveryBurial) {
  std::atomic<int> removed{0};
  {
    Graveyard graveyard;
    for (size_t i = 0; i < Graveyard::kMaxPending; ++i) {
      graveyard.Bury(UniqueFd(), true, std::make_unique<RecordingCgroup>(removed, false));
    }
  }
  EXPECT_EQ(removed.load(), static_cast<int>(Graveyard::kMaxPending));
}

}  // namespace
}  // namespace polyrun::sandbox
