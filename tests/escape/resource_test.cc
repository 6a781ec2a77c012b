// DESIGN §6.4-6.6: limits end the whole tree, nothing outlives a run, floods stay bounded.
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "escape.h"

namespace polyrun::escape {
namespace {

using engine::Status;
using std::chrono::milliseconds;

class ResourceTest : public EscapeTest {};

int64_t CompileMs(const engine::ExecutionResult& r) {
  return r.compile ? static_cast<int64_t>(r.compile->usage.wall_ms) : 0;
}

// A run the sandbox ends at its wall limit must end close to it, not hang on.
void ExpectEndedNear(const engine::ExecutionResult& r, uint64_t limit_ms) {
  EXPECT_GE(r.usage.wall_ms, limit_ms) << Describe(r);
  EXPECT_LT(r.usage.wall_ms, limit_ms + 700) << "the run overran its limit: " << Describe(r);
}

TEST_F(ResourceTest, ForkBombEndsAtTheWallLimit) {
  // CPU time is left generous so the wall clock is the limit that fires.
  milliseconds elapsed{};
  auto r =
      RunProgram("resources.c",
                 {.args = {"fork_bomb"},
                  .limits = {{"wall_time", "1500ms"}, {"cpu_time", "60s"}, {"processes", "32"}}},
                 &elapsed);
  EXPECT_EQ(r.status, Status::kTimeout) << Describe(r);
  EXPECT_EQ(r.limit, "wall_time") << Describe(r);
  ExpectEndedNear(r, 1500);
  // The compile stage's time varies by machine (minutes under TCG); the run stage must not
  // outlast its limit, whatever the compiler took.
  EXPECT_LT(elapsed.count() - CompileMs(r), 1500 + 1500)
      << "compile + run took " << elapsed.count() << " ms";
}

TEST_F(ResourceTest, ForkingStopsAtTheProcessLimit) {
  auto r = RunProgram("resources.c", {.args = {"fork_count"}, .limits = {{"processes", "16"}}});
  EXPECT_EQ(r.status, Status::kOk) << Describe(r);
  auto kv = ParsePairs(r.stdout_text);
  ASSERT_TRUE(kv.contains("forks")) << Describe(r);
  // 16 processes of the program's own (the tree's init is polyrun's and not counted): the
  // program and at most 15 children.
  EXPECT_LE(std::stoi(kv["forks"]), 15) << Describe(r);
  EXPECT_GE(std::stoi(kv["forks"]), 10) << Describe(r);
  EXPECT_EQ(kv["errno"], std::to_string(EAGAIN)) << Describe(r);
}

TEST_F(ResourceTest, ThreadBombStopsAtTheProcessLimit) {
  auto r = RunProgram("resources.c", {.args = {"thread_bomb"}, .limits = {{"processes", "16"}}});
  EXPECT_EQ(r.status, Status::kOk) << Describe(r);
  auto kv = ParsePairs(r.stdout_text);
  ASSERT_TRUE(kv.contains("threads")) << Describe(r);
  EXPECT_LE(std::stoi(kv["threads"]), 15) << Describe(r);
  EXPECT_GE(std::stoi(kv["threads"]), 10) << Describe(r);
  EXPECT_EQ(kv["errno"], std::to_string(EAGAIN)) << Describe(r);
}

// A limit of one: the program runs and cannot fork (a cold tree once failed to start it, its
// init taking the only place).
TEST_F(ResourceTest, AProcessLimitOfOneRunsTheProgramAlone) {
  auto r = RunProgram("resources.c", {.args = {"fork_count"}, .limits = {{"processes", "1"}}});
  EXPECT_EQ(r.status, Status::kOk) << Describe(r);
  auto kv = ParsePairs(r.stdout_text);
  EXPECT_EQ(kv["forks"], "0") << Describe(r);
  EXPECT_EQ(kv["errno"], std::to_string(EAGAIN)) << Describe(r);
}

TEST_F(ResourceTest, MemorySpreadOverProcessesHitsTheTreeLimit) {
  // 4 x 100 MB: no single process exceeds 128M, the tree does.
  auto r = RunProgram("resources.c", {.args = {"mem_bomb", "4", "100"},
                                      .limits = {{"memory", "128M"}, {"wall_time", "10s"}}});
  EXPECT_EQ(r.status, Status::kMemoryLimit) << Describe(r);
  EXPECT_EQ(r.limit, "memory") << Describe(r);
  EXPECT_LT(r.usage.wall_ms, 5000u) << Describe(r);
  EXPECT_LE(r.usage.memory_bytes, 128ull << 20) << Describe(r);
}

// CPU limits are judged on CPU time, not on the wall clock (which stretches under load): the
// per-process fence (RLIMIT_CPU, limit + 1 s) would only fire at 2 s of CPU, so a tree stopped
// below 1.5 s was stopped by the whole-tree accounting. The wall limit is far away.
TEST_F(ResourceTest, TightCpuLoopHitsTheCpuLimit) {
  auto r = RunProgram("resources.c",
                      {.args = {"cpu_loop"}, .limits = {{"cpu_time", "1s"}, {"wall_time", "20s"}}});
  EXPECT_EQ(r.status, Status::kTimeout) << Describe(r);
  EXPECT_EQ(r.limit, "cpu_time") << Describe(r);
  EXPECT_GE(r.usage.cpu_ms, 1000u) << Describe(r);
  EXPECT_LT(r.usage.cpu_ms, 1500u) << "killed long after its CPU limit: " << Describe(r);
}

TEST_F(ResourceTest, CpuLimitCoversTheWholeTree) {
  // Four spinning processes, none of which alone reaches the limit in time.
  auto r = RunProgram("resources.c", {.args = {"cpu_tree", "4"},
                                      .limits = {{"cpu_time", "1s"}, {"wall_time", "20s"}}});
  EXPECT_EQ(r.status, Status::kTimeout) << Describe(r);
  EXPECT_EQ(r.limit, "cpu_time") << Describe(r);
  EXPECT_GE(r.usage.cpu_ms, 1000u) << Describe(r);
  EXPECT_LT(r.usage.cpu_ms, 1500u) << Describe(r);
}

TEST_F(ResourceTest, PythonMemoryBombHitsTheLimit) {
  // Clocks for an emulated CPU (the cgroup v2 VM), where filling 128 MB takes seconds: the
  // memory limit must be what ends it.
  auto r = Run("python", "data = b'x' * (512 << 20)\nprint(len(data))\n",
               {.limits = {{"memory", "128M"}, {"wall_time", "60s"}, {"cpu_time", "60s"}}});
  EXPECT_EQ(r.status, Status::kMemoryLimit) << Describe(r);
  EXPECT_EQ(r.limit, "memory") << Describe(r);
  EXPECT_EQ(r.stdout_text, "") << Describe(r);
}

TEST_F(ResourceTest, LongSleepHitsTheWallLimit) {
  milliseconds elapsed{};
  auto r =
      RunProgram("resources.c", {.args = {"sleep"}, .limits = {{"wall_time", "1s"}}}, &elapsed);
  EXPECT_EQ(r.status, Status::kTimeout) << Describe(r);
  EXPECT_EQ(r.limit, "wall_time") << Describe(r);
  ExpectEndedNear(r, 1000);
  EXPECT_LT(r.usage.cpu_ms, 200u) << Describe(r);
  EXPECT_LT(elapsed.count() - CompileMs(r), 1000 + 1500)
      << "compile + run took " << elapsed.count() << " ms";
}

TEST_F(ResourceTest, SelfStoppedTreeDiesAtTheWallLimit) {
  auto r = RunProgram("resources.c", {.args = {"sigstop"}, .limits = {{"wall_time", "1s"}}});
  EXPECT_EQ(r.status, Status::kTimeout) << Describe(r);
  EXPECT_EQ(r.limit, "wall_time") << Describe(r);
  EXPECT_EQ(r.stdout_text, "child stopped\nstopping\n") << Describe(r);
  ExpectEndedNear(r, 1000);
  // TearDown: no stopped process of the tree is left.
}

TEST_F(ResourceTest, DaemonDoesNotOutliveTheRun) {
  // The double-forked, setsid'd, signal-ignoring daemon keeps running after the program exits;
  // the run must end right then, not at the 10 s wall limit, and take the daemon with it.
  auto r = RunProgram("resources.c", {.args = {"daemon"}, .limits = {{"wall_time", "10s"}}});
  EXPECT_EQ(r.status, Status::kOk) << Describe(r);
  EXPECT_EQ(r.stdout_text, "daemon alive, parent exits\n") << Describe(r);
  EXPECT_LT(r.usage.wall_ms, 1000u) << "the run waited for the daemon: " << Describe(r);
  // TearDown: no process with the sandbox's uid remains.
}

TEST_F(ResourceTest, GrandchildHoldingStdoutDoesNotDelayTheEnd) {
  auto r =
      RunProgram("resources.c", {.args = {"grandchild_stdout"}, .limits = {{"wall_time", "10s"}}});
  EXPECT_EQ(r.status, Status::kOk) << Describe(r);
  EXPECT_EQ(r.stdout_text, "grandchild up\nmain exits\n") << Describe(r);
  EXPECT_LT(r.usage.wall_ms, 1000u) << "the run waited on the grandchild's pipe: " << Describe(r);
}

TEST_F(ResourceTest, ShellBackgroundJobHoldingStdoutDoesNotDelayTheEnd) {
  milliseconds elapsed{};
  auto r = Run("bash", "sleep 1000 &\nsleep 1000 >&2 &\necho started\n",
               {.limits = {{"wall_time", "10s"}}}, &elapsed);
  EXPECT_EQ(r.status, Status::kOk) << Describe(r);
  EXPECT_EQ(r.stdout_text, "started\n") << Describe(r);
  EXPECT_LT(r.usage.wall_ms, 1000u) << Describe(r);
  EXPECT_LT(elapsed.count(), 1500) << Describe(r);
}

class FloodTest : public ResourceTest {
 protected:
  // Runs a flood with a 256 KiB output limit and checks polyrun's own memory stayed flat.
  engine::ExecutionResult Flood(const std::string& streams) {
    // Warm up: the first runs allocate what every run needs; measure only the flood.
    ExpectResponsive();
    const uint64_t rss_before = SelfStatusKb("VmRSS");
    const uint64_t hwm_before = SelfStatusKb("VmHWM");
    auto r = RunProgram("resources.c", {.args = {"flood", streams},
                                        .limits = {{"output", "256K"}, {"wall_time", "5s"}}});
    const uint64_t rss_after = SelfStatusKb("VmRSS");
    const uint64_t hwm_after = SelfStatusKb("VmHWM");
    EXPECT_GT(rss_before, 0u);
    RecordProperty("hwm_growth_kb", std::to_string(hwm_after - hwm_before));
    RecordProperty("rss_growth_kb", std::to_string(static_cast<int64_t>(rss_after - rss_before)));
    // The program writes without end; what polyrun keeps is bounded by the cap (a few copies
    // of 256 KiB across the sandbox outcome, the events and the result).
    EXPECT_LT(hwm_after - hwm_before, 4096u)
        << "peak RSS grew by " << (hwm_after - hwm_before) << " kB over the flood";
    EXPECT_LT(rss_after - std::min(rss_after, rss_before), 4096u)
        << "RSS grew by " << (rss_after - rss_before) << " kB over the flood";
    EXPECT_EQ(r.status, Status::kOutputLimit) << Describe(r);
    EXPECT_EQ(r.limit, "output") << Describe(r);
    EXPECT_LE(r.stdout_text.size() + r.stderr_text.size(), 256u << 10) << Describe(r);
    EXPECT_LT(r.usage.wall_ms, 2000u) << Describe(r);
    return r;
  }
};

TEST_F(FloodTest, StdoutFloodIsCutAtTheOutputLimit) {
  auto r = Flood("stdout");
  EXPECT_TRUE(r.stdout_truncated);
  EXPECT_EQ(r.stdout_text.size(), 256u << 10);
  EXPECT_EQ(r.stdout_text.find_first_not_of('A'), std::string::npos);
}

TEST_F(FloodTest, StderrFloodIsCutAtTheOutputLimit) {
  auto r = Flood("stderr");
  EXPECT_TRUE(r.stderr_truncated);
  EXPECT_EQ(r.stderr_text.size(), 256u << 10);
}

TEST_F(FloodTest, FloodOnBothStreamsIsCutAtTheOutputLimit) {
  auto r = Flood("both");
  // The limit is on both streams together: whichever stream overflowed it is marked.
  EXPECT_TRUE(r.stdout_truncated || r.stderr_truncated);
  EXPECT_EQ(r.stdout_text.size() + r.stderr_text.size(), 256u << 10);
  EXPECT_GT(r.stdout_text.size(), 0u);
  EXPECT_GT(r.stderr_text.size(), 0u);
}

TEST_F(ResourceTest, FillingTmpFailsWithEnospcAndIsForgotten) {
  const uint64_t shmem_before = MeminfoKb("Shmem");
  auto r = RunProgram("resources.c",
                      {.args = {"fill", "/tmp", "/work", "/dev/shm"},
                       .limits = {{"disk", "16M"}, {"file_size", "1G"}, {"memory", "256M"}}});
  // The tmpfs goes with the run's mount namespace, in the teardown that follows the answer.
  ASSERT_TRUE(engine().sandbox().Settle());
  const uint64_t shmem_after = MeminfoKb("Shmem");
  // The program decides its status: it handles the failed write and exits 0.
  EXPECT_EQ(r.status, Status::kOk) << Describe(r);
  for (const char* dir : {"/tmp", "/work", "/dev/shm"}) {
    auto line = r.stdout_text.find(std::string(dir) + " bytes=");
    ASSERT_NE(line, std::string::npos) << dir << ": " << Describe(r);
    auto kv = ParsePairs(r.stdout_text.substr(line, r.stdout_text.find('\n', line) - line));
    EXPECT_EQ(kv["errno"], std::to_string(ENOSPC)) << dir << ": " << Describe(r);
    const uint64_t bytes = std::stoull(kv["bytes"]);
    EXPECT_LE(bytes, 16ull << 20) << dir;
    EXPECT_GE(bytes, 15ull << 20) << dir << ": the filesystem was not filled";
  }
  // The tmpfs pages were charged to the run (its memory limit covers them) and are gone with
  // it: the host's shared memory did not keep the 48 MB.
  EXPECT_GE(r.usage.memory_bytes, 45ull << 20) << Describe(r);
  EXPECT_LT(shmem_after - std::min(shmem_after, shmem_before), 16u << 10)
      << "host Shmem grew from " << shmem_before << " kB to " << shmem_after << " kB";
}

// A run's cgroup is its own: never one that a process which ended without removing it left
// behind (a killed server, a crash), whose pid this process may now have. Such a directory can
// still hold that run's limits, or a process that escaped its kill.
TEST_F(ResourceTest, ARunNeverTakesOverACgroupAnEndedProcessLeft) {
  auto cgroups = sandbox::DetectCgroups();
  ASSERT_TRUE(cgroups) << cgroups.error().message();
  // The number the next run's name gets ("run-<pid>-<n>"): one more than a probe's.
  std::string probe_name;
  {
    auto probe = (*cgroups)->CreateRun({64 << 20, 16});
    ASSERT_TRUE(probe) << probe.error().message();
    probe_name = std::filesystem::path((*probe)->SelfMoveFiles().front()).parent_path().filename();
  }
  const std::string prefix = "run-" + std::to_string(::getpid()) + "-";
  ASSERT_TRUE(probe_name.starts_with(prefix)) << probe_name;
  const uint64_t n = std::stoull(probe_name.substr(prefix.size()));
  std::vector<std::filesystem::path> stale;
  for (uint64_t k = n + 1; k <= n + 3; ++k) {
    for (const auto& dir : PolyrunCgroupDirs()) {
      stale.push_back(std::filesystem::path(dir) / (prefix + std::to_string(k)));
      ASSERT_EQ(::mkdir(stale.back().c_str(), 0755), 0) << stale.back() << ": " << errno;
      if (std::filesystem::exists(stale.back() / "pids.max")) {
        std::ofstream(stale.back() / "pids.max") << "3";
      }
    }
  }
  auto r = Run("bash", "for i in 1 2 3 4 5 6; do sleep 0.01 & done; wait; echo ok\n");
  ASSERT_TRUE(engine().sandbox().Settle());
  std::string untouched;
  for (const auto& dir : stale) {
    std::ifstream limit(dir / "pids.max");
    std::string value;
    if (limit >> value) untouched += dir.filename().string() + ":" + value + " ";
    ::rmdir(dir.c_str());
  }
  EXPECT_EQ(r.status, Status::kOk) << Describe(r);
  EXPECT_EQ(r.stdout_text, "ok\n") << Describe(r);
  // The stale cgroups keep the limit they were left with: the run wrote its own elsewhere.
  EXPECT_EQ(untouched, prefix + std::to_string(n + 1) + ":3 " + prefix + std::to_string(n + 2) +
                           ":3 " + prefix + std::to_string(n + 3) + ":3 ")
      << "a run wrote its limits into a cgroup left by an ended process";
}

// Starting polyrun removes the empty run cgroups of processes that ended without removing them,
// and nothing of a live process.
TEST_F(ResourceTest, StartingRemovesTheRunCgroupsEndedProcessesLeftAndNoOthers) {
  int gate[2];
  ASSERT_EQ(::pipe2(gate, O_CLOEXEC), 0);
  const pid_t live = ::fork();
  ASSERT_GE(live, 0);
  if (live == 0) {
    char c;
    ::close(gate[1]);
    (void)::read(gate[0], &c, 1);  // until the test closes its end
    ::_exit(0);
  }
  ::close(gate[0]);
  const pid_t ended = ::fork();
  ASSERT_GE(ended, 0);
  if (ended == 0) ::_exit(0);
  ASSERT_EQ(::waitpid(ended, nullptr, 0), ended);
  const auto dirs = PolyrunCgroupDirs();
  for (const auto& dir : dirs) {
    for (pid_t pid : {ended, live}) {
      const auto path = std::filesystem::path(dir) / ("run-" + std::to_string(pid) + "-1");
      EXPECT_EQ(::mkdir(path.c_str(), 0755), 0) << path << ": " << errno;
    }
  }
  auto again = sandbox::DetectCgroups();
  size_t ended_left = 0, live_left = 0;
  for (const auto& dir : dirs) {
    ended_left += ::rmdir((dir + "/run-" + std::to_string(ended) + "-1").c_str()) == 0;
    live_left += ::rmdir((dir + "/run-" + std::to_string(live) + "-1").c_str()) == 0;
  }
  ::close(gate[1]);
  ASSERT_EQ(::waitpid(live, nullptr, 0), live);
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(ended_left, 0u) << "run cgroups of an ended process were left";
  EXPECT_EQ(live_left, dirs.size()) << "a live process's run cgroup was removed";
}

// Nothing of polyrun is left in a cgroup it ran in once the last polyrun process there has ended:
// a supervisor's job cgroup with a child left in it could not be removed. A cgroup of the test's
// own, beside polyrun's, stands for that job's.
TEST_F(ResourceTest, TheLastPolyrunProcessInACgroupLeavesNothingThere) {
  const auto bases = PolyrunCgroupDirs();  // held by this suite's engine
  ASSERT_FALSE(bases.empty());
  std::vector<std::filesystem::path> jobs;
  for (const auto& base : bases) {
    jobs.push_back(std::filesystem::path(base).parent_path() /
                   ("polyrun-test-job-" + std::to_string(::getpid())));
    ASSERT_EQ(::mkdir(jobs.back().c_str(), 0755), 0) << jobs.back() << ": " << errno;
  }
  auto make = [&] {
    return jobs.size() == 3 ? sandbox::MakeCgroupV1(jobs[0] / "polyrun", jobs[1] / "polyrun",
                                                    jobs[2] / "polyrun")
                            : sandbox::MakeCgroupV2(jobs[0]);
  };
  {
    auto first = make();
    ASSERT_TRUE(first) << first.error().message();
    auto second = make();
    ASSERT_TRUE(second) << second.error().message();
    {
      auto run = (*first)->CreateRun({64 << 20, 16});
      ASSERT_TRUE(run) << run.error().message();
      ASSERT_TRUE((*run)->Remove());
    }
    first->reset();
    for (const auto& job : jobs) {
      EXPECT_TRUE(std::filesystem::is_directory(job / "polyrun")) << "removed while in use";
    }
    auto run = (*second)->CreateRun({64 << 20, 16});
    EXPECT_TRUE(run) << run.error().message();
    if (run) {
      EXPECT_TRUE((*run)->Remove());
    }
  }
  for (const auto& job : jobs) {
    EXPECT_FALSE(std::filesystem::exists(job / "polyrun")) << job << ": polyrun's was left";
    EXPECT_EQ(::rmdir(job.c_str()), 0) << job << ": " << std::strerror(errno);
  }
}

}  // namespace
}  // namespace polyrun::escape
