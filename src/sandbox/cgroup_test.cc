// Cgroup controllers against a fake cgroup filesystem: plain directories and files stand in
// for the kernel's control files, so both v1 and v2 logic run anywhere.
#include "sandbox/cgroup.h"

#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "sandbox/cgroup_common.h"

namespace polyrun::sandbox {
namespace {

namespace fs = std::filesystem;

class FakeCgroupFs : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("polyrun-cgfake-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
    cgroup_internal::SetRunDirHookForTesting(&MakeControlFiles);
  }
  void TearDown() override {
    cgroup_internal::SetRunDirHookForTesting(nullptr);
    fs::remove_all(root_);
  }

  // What the kernel does on mkdir in a cgroup hierarchy: the new directory has control files.
  static void MakeControlFiles(const std::string& dir) {
    for (const char* f : {"cgroup.procs", "memory.limit_in_bytes", "pids.max", "memory.max",
                          "memory.swap.max", "memory.oom.group"}) {
      std::ofstream(fs::path(dir) / f);
    }
  }

  static void Put(const fs::path& p, const std::string& content) {
    fs::create_directories(p.parent_path());
    std::ofstream(p) << content;
  }
  // A v1 manager on parents with the files MakeCgroupV1 checks for.
  Result<std::unique_ptr<CgroupManager>> FakeV1() {
    Put(root_ / "memory/memory.limit_in_bytes", "");
    Put(root_ / "pids/pids.max", "");
    Put(root_ / "cpuacct/cpuacct.usage", "");
    return MakeCgroupV1((root_ / "memory").string(), (root_ / "pids").string(),
                        (root_ / "cpuacct").string());
  }
  static std::string Get(const fs::path& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  fs::path root_;
};

TEST(CgroupParse, KeyedValuesAndSelfPaths) {
  EXPECT_EQ(ParseKeyedValue("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", "oom_kill"), 3u);
  EXPECT_EQ(ParseKeyedValue("usage_usec 1234\nuser_usec 1000\n", "usage_usec"), 1234u);
  EXPECT_EQ(ParseKeyedValue("populated 1\n", "missing"), 0u);
  const std::string self =
      "9:name=systemd:/\n8:pids:/a\n4:memory:/process_api/x\n2:cpu,cpuacct:/b\n0::/u\n";
  EXPECT_EQ(CgroupPathFor(self, "memory"), "/process_api/x");
  EXPECT_EQ(CgroupPathFor(self, "cpuacct"), "/b");
  EXPECT_EQ(CgroupPathFor(self, "pids"), "/a");
  EXPECT_EQ(CgroupPathFor(self, ""), "/u");
  EXPECT_EQ(CgroupPathFor(self, "blkio"), "");
}

TEST_F(FakeCgroupFs, V1WritesLimitsReadsThemBackAndReportsUsage) {
  auto mgr = FakeV1();
  ASSERT_TRUE(mgr) << mgr.error().message();
  auto cg = (*mgr)->Create("run1", {256ull << 20, 64});
  ASSERT_TRUE(cg) << cg.error().message();
  EXPECT_EQ(Get(root_ / "memory/run1/memory.limit_in_bytes"), std::to_string(256ull << 20));
  EXPECT_EQ(Get(root_ / "pids/run1/pids.max"), "64");

  Put(root_ / "cpuacct/run1/cpuacct.usage", "1500000\n");
  Put(root_ / "memory/run1/memory.max_usage_in_bytes", "4096\n");
  Put(root_ / "memory/run1/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
  auto u = (*cg)->Usage();
  ASSERT_TRUE(u) << u.error().message();
  EXPECT_EQ(u->cpu_ns, 1500000u);
  EXPECT_EQ(u->memory_peak_bytes, 4096u);
  EXPECT_EQ(u->oom_kills, 2u);
  EXPECT_TRUE((*cg)->AddProcess(12345));
  EXPECT_EQ(Get(root_ / "memory/run1/cgroup.procs"), "12345");
  EXPECT_EQ(Get(root_ / "pids/run1/cgroup.procs"), "12345");
}

// A prebuilt sandbox's cgroup takes its run's limits (Sandbox::RunPrebuilt). The kernel's order
// for memory and memory+swap on v1 is checked on real cgroups by the prebuilt escape tests.
TEST_F(FakeCgroupFs, SetLimitsReplacesTheLimitsUpOrDown) {
  auto v1 = FakeV1();
  ASSERT_TRUE(v1) << v1.error().message();
  auto a = (*v1)->Create("run1", {256ull << 20, 64});
  ASSERT_TRUE(a) << a.error().message();
  Put(root_ / "memory/run1/memory.memsw.limit_in_bytes", std::to_string(256ull << 20));
  // Values of one length: plain files, unlike control files, keep what a shorter write leaves.
  for (const CgroupLimits limits : {CgroupLimits{512ull << 20, 99}, CgroupLimits{128 << 20, 16}}) {
    auto set = (*a)->SetLimits(limits);
    ASSERT_TRUE(set) << set.error().message();
    const std::string bytes = std::to_string(limits.memory_bytes);
    EXPECT_EQ(Get(root_ / "memory/run1/memory.limit_in_bytes"), bytes);
    EXPECT_EQ(Get(root_ / "memory/run1/memory.memsw.limit_in_bytes"), bytes);
    EXPECT_EQ(Get(root_ / "pids/run1/pids.max"), std::to_string(limits.pids));
  }

  Put(root_ / "v2/cgroup.controllers", "memory pids\n");
  Put(root_ / "v2/cgroup.subtree_control", "");
  Put(root_ / "v2/polyrun/cgroup.subtree_control", "");
  auto v2 = MakeCgroupV2((root_ / "v2").string());
  ASSERT_TRUE(v2) << v2.error().message();
  auto b = (*v2)->Create("run1", {256ull << 20, 64});
  ASSERT_TRUE(b) << b.error().message();
  ASSERT_TRUE((*b)->SetLimits({128 << 20, 16}));
  EXPECT_EQ(Get(root_ / "v2/polyrun/run1/memory.max"), std::to_string(128 << 20));
  EXPECT_EQ(Get(root_ / "v2/polyrun/run1/pids.max"), "16");
  // A limit that does not take names its file.
  fs::remove(root_ / "v2/polyrun/run1/pids.max");
  fs::create_directories(root_ / "v2/polyrun/run1/pids.max");
  auto refused = (*b)->SetLimits({128 << 20, 17});
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("pids.max"), std::string::npos)
      << refused.error().message();
}

TEST_F(FakeCgroupFs, V1RefusesAParentWithoutTheController) {
  Put(root_ / "memory/memory.limit_in_bytes", "");
  Put(root_ / "cpuacct/cpuacct.usage", "");
  auto mgr = MakeCgroupV1((root_ / "memory").string(), (root_ / "pids").string(),
                          (root_ / "cpuacct").string());
  ASSERT_FALSE(mgr);
  EXPECT_EQ(mgr.error().code, Errc::kUnsupported);
  EXPECT_NE(mgr.error().message().find("pids.max"), std::string::npos) << mgr.error().message();
}

TEST_F(FakeCgroupFs, V2EnablesControllersAndWritesLimits) {
  Put(root_ / "cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n");
  Put(root_ / "cgroup.subtree_control", "");
  Put(root_ / "polyrun/cgroup.subtree_control", "");
  auto mgr = MakeCgroupV2(root_.string());
  ASSERT_TRUE(mgr) << mgr.error().message();
  // Plain files keep only the last write; the real file accumulates controllers.
  EXPECT_EQ(Get(root_ / "cgroup.subtree_control").rfind("+pids", 0), 0u);
  auto cg = (*mgr)->Create("run1", {100 << 20, 32});
  ASSERT_TRUE(cg) << cg.error().message();
  EXPECT_EQ(Get(root_ / "polyrun/run1/memory.max"), std::to_string(100 << 20));
  EXPECT_EQ(Get(root_ / "polyrun/run1/memory.swap.max"), "0");
  EXPECT_EQ(Get(root_ / "polyrun/run1/memory.oom.group"), "1");
  EXPECT_EQ(Get(root_ / "polyrun/run1/pids.max"), "32");

  Put(root_ / "polyrun/run1/cpu.stat", "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n");
  Put(root_ / "polyrun/run1/memory.peak", "8192\n");
  Put(root_ / "polyrun/run1/memory.events", "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n");
  auto u = (*cg)->Usage();
  ASSERT_TRUE(u) << u.error().message();
  EXPECT_EQ(u->cpu_ns, 2500000u);
  EXPECT_EQ(u->memory_peak_bytes, 8192u);
  EXPECT_EQ(u->oom_kills, 1u);
  Put(root_ / "polyrun/run1/cgroup.events", "populated 0\nfrozen 0\n");
  EXPECT_TRUE((*cg)->Empty());
  Put(root_ / "polyrun/run1/cgroup.events", "populated 1\nfrozen 0\n");
  EXPECT_FALSE((*cg)->Empty());
}

TEST_F(FakeCgroupFs, V2RefusesWhenMemoryControllerIsMissing) {
  Put(root_ / "cgroup.controllers", "cpu io pids\n");
  auto mgr = MakeCgroupV2(root_.string());
  ASSERT_FALSE(mgr);
  EXPECT_EQ(mgr.error().code, Errc::kUnsupported);
  EXPECT_NE(mgr.error().message().find("memory"), std::string::npos);
}

TEST_F(FakeCgroupFs, LimitThatDoesNotReadBackIsRefused) {
  Put(root_ / "cgroup.controllers", "memory pids\n");
  Put(root_ / "cgroup.subtree_control", "");
  Put(root_ / "polyrun/cgroup.subtree_control", "");
  auto mgr = MakeCgroupV2(root_.string());
  ASSERT_TRUE(mgr);
  // A directory where the control file should be: the write fails, so Create must fail too
  // and name the file.
  cgroup_internal::SetRunDirHookForTesting(
      [](const std::string& dir) { fs::create_directories(fs::path(dir) / "memory.max"); });
  auto cg = (*mgr)->Create("run2", {1 << 20, 8});
  ASSERT_FALSE(cg);
  EXPECT_EQ(cg.error().code, Errc::kLimitUnavailable);
  EXPECT_NE(cg.error().message().find("memory.max"), std::string::npos) << cg.error().message();
}

TEST_F(FakeCgroupFs, ARunCgroupThatExistsIsRefusedAndNothingIsLeftOfTheAttempt) {
  auto mgr = FakeV1();
  ASSERT_TRUE(mgr) << mgr.error().message();
  // Left by an earlier process in one hierarchy only, with that run's limit.
  Put(root_ / "pids/run1/pids.max", "1");
  // Plain directories with files in them cannot be removed, unlike cgroups.
  cgroup_internal::SetRunDirHookForTesting(nullptr);
  auto cg = (*mgr)->Create("run1", {1 << 20, 64});
  ASSERT_FALSE(cg);
  EXPECT_EQ(cg.error().code, Errc::kConflict);
  EXPECT_EQ(cg.error().syscall, "mkdir");
  EXPECT_NE(cg.error().message().find((root_ / "pids/run1").string()), std::string::npos)
      << cg.error().message();
  EXPECT_EQ(Get(root_ / "pids/run1/pids.max"), "1");
  EXPECT_FALSE(fs::exists(root_ / "memory/run1"));  // made by the attempt, removed again
  EXPECT_FALSE(fs::exists(root_ / "cpuacct/run1"));
}

TEST_F(FakeCgroupFs, MakingAManagerRemovesTheEmptyRunCgroupsOfEndedProcessesOnly) {
  Put(root_ / "cgroup.controllers", "memory pids\n");
  Put(root_ / "cgroup.subtree_control", "");
  Put(root_ / "polyrun/cgroup.subtree_control", "");
  const pid_t ended = ::fork();
  ASSERT_GE(ended, 0);
  if (ended == 0) ::_exit(0);
  ASSERT_EQ(::waitpid(ended, nullptr, 0), ended);
  const std::string dead = "run-" + std::to_string(ended) + "-";
  for (const std::string& name :
       {dead + "1", dead + "2", "run-" + std::to_string(::getpid()) + "-7", std::string("run-1-1"),
        std::string("run-x-1"), std::string("other")}) {
    fs::create_directories(root_ / "polyrun" / name);
  }
  Put(root_ / "polyrun" / (dead + "2") / "cgroup.procs", "4242\n");  // not empty: stays

  auto mgr = MakeCgroupV2(root_.string());
  ASSERT_TRUE(mgr) << mgr.error().message();
  EXPECT_FALSE(fs::exists(root_ / "polyrun" / (dead + "1")));
  for (const std::string& name :
       {dead + "2", "run-" + std::to_string(::getpid()) + "-7", std::string("run-1-1"),
        std::string("run-x-1"), std::string("other")}) {
    EXPECT_TRUE(fs::exists(root_ / "polyrun" / name)) << name;
  }
}

// The directory runs are made in is removed by the last polyrun process that used it, when it
// holds nothing; a plain directory stands in for the cgroup one (rmdir refuses both when not
// empty).
TEST_F(FakeCgroupFs, ASharedDirIsRemovedByItsLastUserAndOnlyWhenEmpty) {
  const std::string path = (root_ / "polyrun").string();
  {
    auto first = cgroup_internal::SharedDir::Open(path);
    ASSERT_TRUE(first) << first.error().message();
    {
      auto second = cgroup_internal::SharedDir::Open(path);
      ASSERT_TRUE(second) << second.error().message();
    }
    EXPECT_TRUE(fs::is_directory(path)) << "removed while another user held it";
  }
  EXPECT_FALSE(fs::exists(path)) << "the last user left it";

  {
    auto user = cgroup_internal::SharedDir::Open(path);
    ASSERT_TRUE(user) << user.error().message();
    fs::create_directory(fs::path(path) / "run-1-1");  // a run the graveyard could not remove
  }
  EXPECT_TRUE(fs::is_directory(fs::path(path) / "run-1-1"));
}

TEST_F(FakeCgroupFs, ASharedDirStaysWhileAnotherProcessUsesIt) {
  const std::string path = (root_ / "polyrun").string();
  int ready[2], done[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(done), 0);
  const pid_t other = ::fork();
  ASSERT_GE(other, 0);
  if (other == 0) {
    ::close(ready[0]);
    ::close(done[1]);
    auto held = cgroup_internal::SharedDir::Open(path);
    char c = held ? 'y' : 'n';
    (void)::write(ready[1], &c, 1);
    (void)::read(done[0], &c, 1);  // until the test closes its end
    ::_exit(0);  // like a killed process: its lock goes, the directory stays for the next
  }
  ::close(ready[1]);
  ::close(done[0]);
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ASSERT_EQ(c, 'y');
  { auto mine = cgroup_internal::SharedDir::Open(path); }
  EXPECT_TRUE(fs::is_directory(path)) << "removed while another process held it";
  ::close(done[1]);
  ASSERT_EQ(::waitpid(other, nullptr, 0), other);
  ::close(ready[0]);
  { auto last = cgroup_internal::SharedDir::Open(path); }
  EXPECT_FALSE(fs::exists(path));
}

// A process that got its lock only after the last user removed the directory makes it again,
// rather than holding a lock on a directory nobody can see.
TEST_F(FakeCgroupFs, ASharedDirRemovedWhileWaitingForItsLockIsMadeAgain) {
  const fs::path path = root_ / "polyrun";
  fs::create_directory(path);
  struct stat old {};
  ASSERT_EQ(::stat(path.c_str(), &old), 0);
  // The last user, about to remove it, holds it exclusively.
  UniqueFd last(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(last.valid());
  ASSERT_EQ(::flock(last.get(), LOCK_EX), 0);
  Result<cgroup_internal::SharedDir> opened = std::unexpected(Error{});
  std::thread opener([&] { opened = cgroup_internal::SharedDir::Open(path.string()); });
  // Until the opener waits for the lock: /proc/locks shows a blocked request ("->") on it.
  const std::string inode = ":" + std::to_string(old.st_ino) + " ";
  bool waiting = false;
  for (int i = 0; i < 5000 && !waiting; ++i) {
    std::ifstream locks("/proc/locks");
    for (std::string line; std::getline(locks, line);) {
      waiting |= line.find("->") != std::string::npos && line.find(inode) != std::string::npos;
    }
    if (!waiting) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_TRUE(waiting) << "the opener never waited for the lock";
  ASSERT_EQ(::rmdir(path.c_str()), 0);
  last.reset();
  opener.join();
  ASSERT_TRUE(opened) << opened.error().message();
  struct stat now {};
  ASSERT_EQ(::stat(path.c_str(), &now), 0) << "held a lock on a removed directory";
  EXPECT_EQ(opened->path(), path.string());
}

// Stands in for a host where some run names are taken.
class TakenNames final : public CgroupManager {
 public:
  explicit TakenNames(int taken) : taken_(taken) {}
  Result<std::unique_ptr<Cgroup>> Create(const std::string& name, const CgroupLimits&) override {
    names.push_back(name);
    if (static_cast<int>(names.size()) <= taken_) {
      return std::unexpected(Error{Errc::kConflict, name + ": exists", "mkdir", EEXIST});
    }
    return std::unique_ptr<Cgroup>();
  }
  std::string Describe() const override { return "taken names"; }
  std::vector<std::string> names;

 private:
  int taken_;
};

TEST(CgroupManagerCreateRun, SkipsNamesThatExistAndGivesUpOnAHostThatLeaksThem) {
  TakenNames some(2);
  ASSERT_TRUE(some.CreateRun({1 << 20, 8}));
  ASSERT_EQ(some.names.size(), 3u);
  const std::string prefix = "run-" + std::to_string(::getpid()) + "-";
  for (const auto& n : some.names) EXPECT_TRUE(n.starts_with(prefix)) << n;
  EXPECT_NE(some.names[0], some.names[1]);
  EXPECT_NE(some.names[1], some.names[2]);

  TakenNames all(1000);
  auto none = all.CreateRun({1 << 20, 8});
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, Errc::kConflict);
  EXPECT_EQ(all.names.size(), 16u);
}

}  // namespace
}  // namespace polyrun::sandbox
